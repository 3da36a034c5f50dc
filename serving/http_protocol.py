"""uvicorn's httptools protocol with a header-read timeout.

uvicorn times out idle keep-alive connections, but not a client that starts a request and then
trickles its request line and headers (or stops): such a connection was held for as long as the
client liked. Here a timer starts when the connection opens, and again when each request begins; if
the headers are not complete within `header_timeout_s` (read from the uvicorn config), the client gets
408 and the connection closes. The body has its own deadline in `serving.middleware`.
"""

from __future__ import annotations

import asyncio
import json

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

PROTOCOL = "serving.http_protocol:HeaderTimeoutProtocol"  # the uvicorn `http=` setting that selects it
DEFAULT_HEADER_TIMEOUT_S = 10.0


class HeaderTimeoutProtocol(HttpToolsProtocol):
    def __init__(self, config, *args, **kwargs):
        super().__init__(config, *args, **kwargs)
        self.header_timeout_s = float(getattr(config, "header_timeout_s", DEFAULT_HEADER_TIMEOUT_S))
        self._header_timer: asyncio.TimerHandle | None = None

    def _arm_header_timer(self) -> None:
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(self.header_timeout_s, self._header_timeout)

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def connection_made(self, transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_timer()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm_header_timer()

    def on_headers_complete(self) -> None:
        self._cancel_header_timer()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_timer()
        super().connection_lost(exc)

    def _header_timeout(self) -> None:
        self._header_timer = None
        if self.transport.is_closing():
            return
        if self.cycle is None or self.cycle.response_complete:  # else a response is still being written
            body = json.dumps({"detail": f"the request headers did not arrive within {self.header_timeout_s:g} s"})
            self.transport.write(b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
                                 b"content-length: %d\r\nconnection: close\r\n\r\n%s"
                                 % (len(body), body.encode()))
        self.transport.close()
