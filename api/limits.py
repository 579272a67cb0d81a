"""The request body limit, enforced before anything parses the body.

Every accepted request becomes one Temporal signal or update, and the Temporal server refuses a payload
over 2 MB (its default blob size limit) with an error a client can only retry for ever. A body over
MAX_BODY_BYTES is refused here with 413 naming the limit; together with the field limits in api/schemas.py
no accepted request comes near Temporal's.
"""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

MAX_BODY_BYTES = 1024 * 1024
# Uploads streamed to disk, never into one signal, with a limit of their own (api/routers/imports.py).
STREAMED_PATHS = frozenset({"/v1/imports"})


async def _answer(send: Send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def too_large_detail(limit: int) -> str:
    return f"the request body is larger than the limit of {limit} bytes; send fewer events or shorter values"


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, limit: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in STREAMED_PATHS:
            await self.app(scope, receive, send)
            return
        declared = next((v for k, v in scope["headers"] if k == b"content-length"), None)
        if declared is not None:
            if not declared.isdigit():
                await _answer(send, 400, "the Content-Length header is not a number")
                return
            if int(declared) > self.limit:
                await _answer(send, 413, too_large_detail(self.limit))
                return
        # Read the whole body (at most the limit) first: a chunked upload is counted as it arrives.
        chunks: list[bytes] = []
        size, more = 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                await self.app(scope, _replay([], message, receive), send)
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                await _answer(send, 413, too_large_detail(self.limit))
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        await self.app(scope, _replay(chunks, None, receive), send)


def _replay(chunks: list[bytes], pending: Message | None, receive: Receive) -> Receive:
    """A receive that hands the buffered body over in one message, then defers to the server's."""
    queue: list[Message] = [{"type": "http.request", "body": b"".join(chunks), "more_body": False}]
    if pending is not None:
        queue = [pending]

    async def replayed() -> Message:
        return queue.pop(0) if queue else await receive()

    return replayed
