"""Request-body size limit as pure ASGI middleware: an oversized body gets 413 before any parsing."""

from __future__ import annotations

import json


async def _reply(send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


class BodyLimitMiddleware:
    """Reject bodies over `max_bytes` with 413, by declared Content-Length or by bytes actually sent.

    The body is read here (it is small by construction) and replayed to the app, so a chunked
    upload that grows past the limit is refused before the app sees any of it.
    """

    def __init__(self, app, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

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
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)
