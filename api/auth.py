"""API-key check at the door: runs before FastAPI reads or validates a body, so an anonymous caller
learns nothing about the API but that it needs a key (401, never a 422 with field names)."""

from __future__ import annotations

import hmac
import json

from starlette.types import ASGIApp, Receive, Scope, Send

PROTECTED_PREFIX = "/v1/"
# Doors that check their own credentials (a tracking write key, a webhook signature, or none for public
# forms): the admin key is not theirs to ask for, and a write key opens nothing else.
# Relays may sign bounce reports instead of sending the key (api/webhook_auth.py).
SELF_AUTHENTICATED = (
    "/v1/email-events",
    "/v1/segment/",
    "/v1/forms/",
    "/v1/webhooks/",
    *(f"/v1/{kind}" for kind in ("track", "page", "screen", "identify", "group", "alias", "batch")),
)


def self_authenticated(path: str) -> bool:
    return any(path == door or (door.endswith("/") and path.startswith(door)) for door in SELF_AUTHENTICATED)


def presented_key(headers: list[tuple[bytes, bytes]]) -> str | None:
    for name, value in headers:
        if name == b"x-api-key":
            return value.decode("latin-1")
        if name == b"authorization" and value[:7].lower() == b"bearer ":
            return value[7:].decode("latin-1").strip()
    return None


class ApiKeyMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or not scope["path"].startswith(PROTECTED_PREFIX)
            or self_authenticated(scope["path"])
        ):
            await self.app(scope, receive, send)
            return
        expected: str = scope["app"].state.leadflow.api_key
        given = presented_key(scope["headers"])
        if given is None or not hmac.compare_digest(given.encode(), expected.encode()):
            message = "send the API key in the X-API-Key header" if given is None else "the API key is not valid"
            body = json.dumps({"detail": message}).encode()
            await send(
                {
                    "type": "http.response.start",
                    "status": 401,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(body)).encode()),
                        (b"www-authenticate", b"Bearer"),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": body})
            return
        await self.app(scope, receive, send)
