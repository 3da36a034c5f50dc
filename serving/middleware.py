"""Request-body limits as pure ASGI middleware: an oversized body gets 413 before any parsing, and a
body that does not arrive in time gets 408 and the connection closes."""

from __future__ import annotations

import asyncio
import json


async def _reply(send, status: int, detail: str, close: bool = False) -> None:
    body = json.dumps({"detail": detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if close:  # uvicorn closes the connection after a response that says so
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class BodyLimitMiddleware:
    """Reject bodies over `max_bytes` with 413, by declared Content-Length or by bytes actually sent,
    and bodies not complete within `timeout_s` of the headers with 408 (the connection is closed, so a
    client that declares more bytes than it sends holds nothing).

    The body is read here (it is small by construction) and replayed to the app, so a chunked
    upload that grows past the limit is refused before the app sees any of it.
    """

    def __init__(self, app, max_bytes: int, timeout_s: float = 10.0):
        self.app = app
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        declared = [value for name, value in scope["headers"] if name == b"content-length"]
        if declared:
            try:
                length = int(declared[0])
            except ValueError:
                await _reply(send, 400, "Content-Length is not a number")
                return
            if length > self.max_bytes:
                await _reply(send, 413, f"request body of {length} bytes exceeds the limit of {self.max_bytes} bytes")
                return
        chunks, size = [], 0
        try:
            # One deadline for the whole body: a client trickling a byte at a time gets no more time.
            async with asyncio.timeout(self.timeout_s):
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        return
                    chunk = message.get("body", b"")
                    size += len(chunk)
                    if size > self.max_bytes:
                        await _reply(send, 413, f"request body exceeds the limit of {self.max_bytes} bytes")
                        return
                    chunks.append(chunk)
                    if not message.get("more_body", False):
                        break
        except TimeoutError:
            await _reply(send, 408, f"the request body did not arrive within {self.timeout_s:g} s", close=True)
            return
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)
