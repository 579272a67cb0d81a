"""ASGI middleware for the API: request id, latency by route template, ingest counters, one access line.

It sits outside the routers on purpose: the ingest routes report what they accepted in their response
body (``EventsAccepted``), so counting here keeps metrics out of the routers' code. The route is resolved
to its template (``/v1/leads/{lead_id}``) before labelling, so lead ids never become label values.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from typing import Any

from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from observability import logcontext, metrics

log = logging.getLogger("leadflow.access")
# Routes whose body says how many events were accepted / duplicates (api.schemas.EventsAccepted).
INGEST_ROUTES = frozenset({"/v1/events", "/v1/leads/{lead_id}/events"})
UNMATCHED = "<unmatched>"
# A caller's request id is kept only when it is short and plain (it goes into every log line).
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


def route_of(scope: Scope) -> tuple[str, dict[str, Any]]:
    """The template of the route that will serve ``scope`` and its path parameters."""
    app = scope.get("app")
    router = getattr(app, "router", None)
    for route in getattr(router, "routes", ()):
        match, child = route.matches(scope)
        if match == Match.FULL:
            return getattr(route, "path", UNMATCHED), child.get("path_params", {})
    return UNMATCHED, {}


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
        route, params = route_of(scope)
        request_id = _request_id(scope)
        lead_id = params.get("lead_id") if isinstance(params.get("lead_id"), str) else None
        status = 500
        body = bytearray()
        counting = route in INGEST_ROUTES and scope["method"] == "POST"

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", request_id.encode())]
            elif message["type"] == "http.response.body" and counting and 200 <= status < 300:
                body.extend(message.get("body", b""))
            await send(message)

        started = time.perf_counter()
        with logcontext.bound(request_id=request_id, lead_id=lead_id):
            try:
                await self.app(scope, receive, send_wrapper)
            finally:
                elapsed = time.perf_counter() - started
                method = scope["method"]
                metrics.REQUEST_SECONDS.labels(method, route, str(status)).observe(elapsed)
                if counting:
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
