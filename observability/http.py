"""ASGI middleware for the API: request id, latency by route template, ingest counters, one access line.

It sits outside the routers on purpose: the ingest routes report what they accepted in their response
body (``EventsAccepted``), so counting here keeps metrics out of the routers' code. Requests are labelled
by the template of their route (``/v1/leads/{lead_id}``, as the router recorded it), never by their path,
so lead ids never become label values.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from observability import logcontext, metrics

log = logging.getLogger("leadflow.access")
# Routes whose body says how many events were accepted / duplicates (api.schemas.EventsAccepted).
INGEST_ROUTES = frozenset({"/v1/events", "/v1/leads/{lead_id}/events"})
UNMATCHED = "<unmatched>"
# A caller's request id is kept only when it is short and plain (it goes into every log line).
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
_LEAD_PATH = re.compile(r"^/v1/leads/(lead-[0-9a-f]{32})(?:/|$)")


def route_of(scope: Scope) -> str:
    """The template of the route that served ``scope`` (the router records it in the scope)."""
    template = getattr(scope.get("route"), "path", None)
    if isinstance(template, str):
        return template
    # Refused before routing (401 at the key check): the ingest routes are still told apart.
    path = scope["path"]
    if path == "/v1/events":
        return path
    return "/v1/leads/{lead_id}/events" if _LEAD_PATH.match(path) and path.endswith("/events") else UNMATCHED


def _request_id(scope: Scope) -> str:
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            given = value.decode("latin-1")
            if _REQUEST_ID.match(given):
                return given
    return uuid.uuid4().hex


class ObservabilityMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _request_id(scope)
        lead_path = _LEAD_PATH.match(scope["path"])
        status = 500
        body = bytearray()

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", request_id.encode())]
            elif message["type"] == "http.response.body" and 200 <= status < 300 and _is_ingest(scope):
                body.extend(message.get("body", b""))
            await send(message)

        started = time.perf_counter()
        with logcontext.bound(request_id=request_id, lead_id=lead_path.group(1) if lead_path else None):
            try:
                await self.app(scope, receive, send_wrapper)
            finally:
                elapsed = time.perf_counter() - started
                method, route = scope["method"], route_of(scope)
                metrics.REQUEST_SECONDS.labels(method, route, str(status)).observe(elapsed)
                if method == "POST" and route in INGEST_ROUTES:
                    _count_ingest(route, status, bytes(body))
                # Template, not path: the path may hold a lead id, the query string an address.
                log.info(
                    "%s %s %d %.1fms",
                    method,
                    route,
                    status,
                    elapsed * 1000,
                    extra={"http_method": method, "route": route, "status": status, "duration_ms": elapsed * 1000},
                )


def _is_ingest(scope: Scope) -> bool:
    return scope["method"] == "POST" and route_of(scope) in INGEST_ROUTES


def _count_ingest(route: str, status: int, body: bytes) -> None:
    if 400 <= status < 500:
        metrics.EVENTS_REJECTED.labels(route, str(status)).inc()
        return
    if not 200 <= status < 300:
        return
    try:
        answer = json.loads(body)
        accepted, duplicates = int(answer["accepted"]), int(answer["duplicates"])
    except (ValueError, KeyError, TypeError):
        return
    metrics.EVENTS_ACCEPTED.labels(route).inc(accepted)
    metrics.EVENTS_DUPLICATE.labels(route).inc(duplicates)
