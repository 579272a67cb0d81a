"""The audit log's one writer: every write (POST, PUT, PATCH, DELETE) through the API or the pages by a
known caller, every CSV export (``GET /v1/....csv``) and every sign-in attempt, is recorded after it is
answered: who (key id or user), what (the
route's template, its target, a summary of the change), when, from where (the client address), and the
status it got (a 403 is worth as much to an auditor as a 200).

Never a secret and never whole personal data: the summary names the fields a request sent and shows the
values of only a few fields that hold no person's data (status, role, kind...), emails masked everywhere.
The doors that check their own credentials (Segment write keys, forms, webhooks, relay reports,
unsubscribe links, tracked links) are outside it: their writes are people's events, kept per lead. So are
behavioural events a tracking key posts that were accepted (``EVENT_ROUTES``): they are the touchpoints
of the lead's timeline, thousands an hour from one website, and would bury the changes people make (and
cost a store write per batch on the hottest path, ~2-3 ms on SQLite here: bench/access_bench.py); a
refused post there (a wrong role, a bad body) is recorded like any other.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.auth import self_authenticated
from api.roles import PRINCIPAL, UNSAFE_METHODS
from rules.access import Principal, mask_email
from store import audit

log = logging.getLogger("leadflow.audit")
CAPTURE_BYTES = 64 * 1024
# Values worth showing: they name no person and hold no secret. Everything else appears by name only.
SHOWN_VALUES = frozenset(
    {
        "status", "kind", "role", "reason", "scope", "source", "stage", "type", "locale", "active", "capacity",
        "weight", "version", "rotate", "period", "currency", "days", "rep_id", "team", "teams", "expires_at",
        "expires_in_days", "away_until", "name", "username", "domain", "model", "outcome", "strategy",
    }
)  # fmt: skip
NEVER_NAMED = frozenset({"csrf_token", "password", "next"})
UNAUDITED_PREFIXES = ("/unsubscribe/", "/t/", "/health/")
TARGET_FIELDS = ("id", "lead_id", "import_id", "version", "number")
EVENT_ROUTES = frozenset({"/v1/events", "/v1/leads/{lead_id}/events"})


def _value(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ",".join(_value(v) for v in value[:10]) + ("…" if len(value) > 10 else "") + "]"
    text = mask_email(str(value))
    return text if len(text) <= 80 else text[:79] + "…"


def summarize(fields: dict[str, Any]) -> str:
    """``name=Inside Sales, manager_email, reps[2]``: what was sent, values only where they are harmless."""
    parts = []
    for name, value in fields.items():
        if name in NEVER_NAMED:
            continue
        if name in SHOWN_VALUES and not isinstance(value, dict):
            parts.append(f"{name}={_value(value)}")
        elif isinstance(value, list):
            parts.append(f"{name}[{len(value)}]")
        elif isinstance(value, dict):
            parts.append(f"{name}{{{len(value)}}}")
        else:
            parts.append(name)
    return ", ".join(parts)


def body_summary(content_type: str, body: bytes, size: int) -> str:
    if size == 0:
        return ""
    if size <= CAPTURE_BYTES and content_type.startswith("application/json"):
        try:
            parsed = json.loads(body)
        except ValueError:
            return f"unreadable JSON, {size} bytes"
        return summarize(parsed) if isinstance(parsed, dict) else f"JSON {type(parsed).__name__}, {size} bytes"
    if size <= CAPTURE_BYTES and content_type.startswith("application/x-www-form-urlencoded"):
        return summarize(dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)))
    return f"{content_type.split(';')[0] or 'body'}, {size} bytes"


def _target(scope: Scope, answer: bytes) -> str | None:
    params = scope.get("path_params") or {}
    parts = [f"{k}={mask_email(str(v))}" for k, v in params.items()]
    if not parts and answer:
        try:
            parsed = json.loads(answer)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict):
            parts = [f"{k}={parsed[k]}" for k in TARGET_FIELDS if isinstance(parsed.get(k), str | int)][:1]
    return "; ".join(parts) or None


def _audited(scope: Scope) -> bool:
    if scope["type"] != "http":
        return False
    path = scope["path"]
    if scope["method"] == "GET" and _is_export(path):
        return True  # who took which data out is an auditor's question too
    return (
        scope["method"] in UNSAFE_METHODS and not self_authenticated(path) and not path.startswith(UNAUDITED_PREFIXES)
    )


def _is_export(path: str) -> bool:
    return path.startswith("/v1/") and path.endswith(".csv")


class AuditMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not _audited(scope):
            await self.app(scope, receive, send)
            return
        captured, size, answer, status = bytearray(), 0, bytearray(), 500

        async def receive_wrapper() -> Message:
            nonlocal size
            message = await receive()
            if message["type"] == "http.request":
                chunk = message.get("body", b"")
                size += len(chunk)
                if len(captured) <= CAPTURE_BYTES:
                    captured.extend(chunk[: CAPTURE_BYTES + 1 - len(captured)])
            return message

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body" and len(answer) < 16 * 1024:
                answer.extend(message.get("body", b"")[: 16 * 1024])
            await send(message)

        try:
            await self.app(scope, receive_wrapper, send_wrapper)
        finally:
            await self._record(scope, status, bytes(captured), size, bytes(answer))

    async def _record(self, scope: Scope, status: int, body: bytes, size: int, answer: bytes) -> None:
        principal: Principal | None = scope.get(PRINCIPAL)
        sign_in = scope["path"] == "/login"
        if sign_in and status != 303:
            principal = None  # a refused sign-in is nobody's, even from a browser with an older session
        if principal is None and not sign_in:
            return  # refused at the door (401): nobody to name
        template = getattr(scope.get("route"), "path", None) or scope["path"]
        if template in EVENT_ROUTES and 200 <= status < 300:
            return  # accepted events are the lead's touchpoints (see the module's docstring)
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        summary = body_summary(headers.get("content-type", ""), body, size)
        if scope["method"] == "GET":
            query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
            summary = "export" + (f": {summarize(query)}" if query else "")
        entry = audit.AuditEntry(
            at=datetime.now(UTC),
            actor_kind=principal.kind if principal else "anonymous",
            actor_id=principal.id if principal else "-",
            actor_role=principal.role.value if principal else "-",
            method=scope["method"],
            route=template,
            target=_target(scope, answer if 200 <= status < 300 else b""),
            summary=summary if not sign_in else ("signed in" if principal else "sign-in refused") + f": {summary}",
            status=status,
            client_ip=(scope.get("client") or (None,))[0],
            details={"actor_name": mask_email(principal.name)} if principal else {},
        )
        try:
            async with scope["app"].state.leadflow.sessions() as session:
                await audit.record(session, entry)
        except Exception:  # the answer is sent: a lost entry is logged loudly, never turned into an error
            log.exception("audit entry lost: %s %s by %s", entry.method, entry.route, entry.actor_id)
