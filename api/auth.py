"""Who is calling, decided at the door: runs before FastAPI reads or validates a body, so an anonymous
caller learns nothing about the API but that it needs a key (401, never a 422 with field names).

A caller is an API key (the configured admin key, LEADFLOW_API_KEY, or a stored key with a role: store/
access.py) or a browser's session cookie (api/sessions.py). The principal goes into the ASGI scope for
``api.roles.enforce_declared_roles`` (which roles a route admits) and for the audit log (who wrote).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import logging
import time
from datetime import UTC, datetime
from http.cookies import SimpleCookie

from starlette.types import ASGIApp, Receive, Scope, Send

from api.roles import BASIC, CSRF, PRINCIPAL, REFUSAL, UNSAFE_METHODS
from rules.access import ADMIN_KEY_PRINCIPAL, Principal
from store import access

PROTECTED_PREFIX = "/v1/"
SESSION_COOKIE = "leadflow_session"
CSRF_HEADER = b"x-csrf-token"
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
# A stored key's lookup is reused this long (the event path must not pay a query per request); a key
# revoked through this process's API is dropped at once, through another process within this time.
KEY_CACHE_SECONDS = 5.0
RETRY = (b"retry-after", b"2")
log = logging.getLogger("leadflow.api")


def self_authenticated(path: str) -> bool:
    return any(path == door or (door.endswith("/") and path.startswith(door)) for door in SELF_AUTHENTICATED)


def presented_key(headers: list[tuple[bytes, bytes]]) -> str | None:
    for name, value in headers:
        if name == b"x-api-key":
            return value.decode("latin-1")
        if name == b"authorization" and value[:7].lower() == b"bearer ":
            return value[7:].decode("latin-1").strip()
    return None


def basic_password(headers: list[tuple[bytes, bytes]]) -> str | None:
    """The password of HTTP Basic credentials: pages also open with any user name and an API key as password
    (scripts and the older dashboard links); people sign in on /login."""
    for name, value in headers:
        if name == b"authorization" and value[:6].lower() == b"basic ":
            try:
                decoded = base64.b64decode(value[6:].strip(), validate=True).decode("utf-8")
            except (binascii.Error, ValueError):
                return None
            return decoded.partition(":")[2] or None
    return None


def session_token(headers: list[tuple[bytes, bytes]]) -> str | None:
    for name, value in headers:
        if name == b"cookie":
            cookie: SimpleCookie = SimpleCookie()
            try:
                cookie.load(value.decode("latin-1"))
            except Exception:  # noqa: S112  - a malformed cookie header is no session
                continue
            if SESSION_COOKIE in cookie:
                return cookie[SESSION_COOKIE].value
    return None


def _header(headers: list[tuple[bytes, bytes]], wanted: bytes) -> str | None:
    return next((v.decode("latin-1") for n, v in headers if n == wanted), None)


class KeyCache:
    """Stored keys' lookups for KEY_CACHE_SECONDS, by the key's hash (never the clear key)."""

    def __init__(self) -> None:
        self._entries: dict[str, tuple[float, access.KeyLookup]] = {}

    def get(self, key_hash: str) -> access.KeyLookup | None:
        entry = self._entries.get(key_hash)
        if entry is None or time.monotonic() - entry[0] > KEY_CACHE_SECONDS:
            return None
        lookup = entry[1]
        if lookup.expires_at is not None and lookup.expires_at <= datetime.now(UTC):
            return None  # look again: the answer is now "expired"
        return lookup

    def put(self, key_hash: str, lookup: access.KeyLookup) -> None:
        if len(self._entries) > 10_000:
            self._entries.clear()
        self._entries[key_hash] = (time.monotonic(), lookup)

    def clear(self) -> None:
        self._entries.clear()


async def key_principal(scope: Scope, key: str) -> access.KeyLookup:
    """The admin key, else a stored key (cached KEY_CACHE_SECONDS): a principal, or why it opens nothing."""
    state = scope["app"].state.leadflow
    if hmac.compare_digest(key.encode(), state.api_key.encode()):
        return access.KeyLookup(ADMIN_KEY_PRINCIPAL)
    key_hash = access.hash_token(key)
    cached = state.key_cache.get(key_hash)
    if cached is not None:
        return cached
    async with state.sessions() as session:
        lookup = await access.principal_for_key(session, key, datetime.now(UTC))
    state.key_cache.put(key_hash, lookup)
    return lookup


async def _session_principal(scope: Scope, token: str) -> access.SignedIn | None:
    async with scope["app"].state.leadflow.sessions() as session:
        return await access.session_principal(session, token, datetime.now(UTC))


async def _answer(send: Send, status: int, message: str, header: tuple[bytes, bytes]) -> None:
    body = json.dumps({"detail": message}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                header,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _refuse(send: Send, message: str) -> None:
    await _answer(send, 401, message, (b"www-authenticate", b"Bearer"))


class ApiKeyMiddleware:
    """Resolves the caller; answers 401 on /v1 routes (except the self-authenticated doors) without one.
    Pages get the principal too, or none (their route sends the browser to the login page)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self_authenticated(scope["path"]):
            await self.app(scope, receive, send)
            return
        api = scope["path"].startswith(PROTECTED_PREFIX)
        headers = scope["headers"]
        key = presented_key(headers)
        if key is None and not api:
            key = basic_password(headers)
            if key is not None:
                scope[BASIC] = True
        token = session_token(headers) if key is None else None
        principal: Principal | None = None
        refusal = "send the API key in the X-API-Key header" if api else None
        try:
            if key is not None:
                lookup = await key_principal(scope, key)
            signed_in = await _session_principal(scope, token) if key is None and token is not None else None
        except Exception as exc:  # any store failure: this runs outside FastAPI's error handlers (never a 500)
            log.warning("cannot check the caller's key or session: %s", type(exc).__name__)
            await _answer(send, 503, "the store cannot be reached to check the key, retry shortly", RETRY)
            return
        if key is not None:
            principal, refusal = lookup.principal, lookup.refusal
        elif token is not None:
            if signed_in is not None:
                principal = signed_in.principal
                scope[CSRF] = signed_in.csrf_token
                # A browser's cookie rides along on any request the browser makes: an API write by session
                # must prove it comes from leadflow's own page (SameSite=Lax already stops most of that).
                if api and scope["method"] in UNSAFE_METHODS:
                    given = _header(headers, CSRF_HEADER) or ""
                    if not hmac.compare_digest(given.encode(), signed_in.csrf_token.encode()):
                        principal, refusal = None, "a write with a session cookie needs the X-CSRF-Token header"
            else:
                refusal = "the session has ended: sign in again"
        if principal is not None:
            scope[PRINCIPAL] = principal
        elif refusal is not None:
            scope[REFUSAL] = refusal
        if principal is None and api:
            await _refuse(send, refusal or "send the API key in the X-API-Key header")
            return
        await self.app(scope, receive, send)
