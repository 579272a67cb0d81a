"""Segment / RudderStack HTTP tracking API: what their server SDKs and analytics.js send, unchanged.

``POST /v1/{track,page,screen,identify,group,alias,batch}`` (and the same under ``/v1/segment/``), the
write key as HTTP Basic user (empty password) or as ``writeKey`` in the body, bodies plain or gzip. A
write key opens these routes only; the admin API key does not open them. Mapping: rules/tracking_spec.py.

Answers are 200 with one result per message (accepted, ignored or rejected with the reason), as the SDKs
expect; a body that cannot be read at all is a 400 and an outage a 503 (the SDKs retry those), each with
Segment's ``code``/``message`` error fields beside leadflow's ``detail``.
"""

from __future__ import annotations

import base64
import binascii
import json
import zlib
from collections import defaultdict
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from functools import partial
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from api import ingest_doors as intake
from api.deps import AppState, State
from api.errors import documented
from api.intake import signal_events
from api.lead_ids import lead_id_for, normalize_email
from api.limits import MAX_BODY_BYTES  # checked again after gzip inflation here
from api.roles import public
from rules.model import EventsReceived, TrackedEvent
from rules.tracking_spec import SpecError, attributes_from_traits, email_of, event_from_message, visitor_keys
from store import ingest

KINDS = ("track", "page", "screen", "identify", "group", "alias", "batch")
PREFIXES = ("/v1", "/v1/segment")
MAX_BATCH = 2500
# The provenance an identify call's traits carry in the lead's attribute_origins (rules/profile.py).
IDENTIFY_ORIGIN = "segment:identify"
router = APIRouter(
    tags=["tracking (Segment API)"],
    responses=documented(400, 401, 413, 429, 503),
    dependencies=[public("a tracking write key (store/ingest.py)")],
)


class MessageResult(BaseModel):
    messageId: str | None
    status: str  # accepted | duplicate | ignored | rejected
    reason: str | None = None


class SegmentAccepted(BaseModel):
    success: bool = True
    accepted: int
    duplicates: int = 0
    rejected: int
    results: list[MessageResult]


def _error(status: int, code: str, message: str) -> JSONResponse:
    headers = {"WWW-Authenticate": 'Basic realm="leadflow tracking"'} if status == 401 else None
    return JSONResponse({"detail": message, "code": code, "message": message}, status_code=status, headers=headers)


def _basic_user(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    if header[:6].lower() != "basic ":
        return None
    try:
        user, _, _ = base64.b64decode(header[6:].strip(), validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return user or None


async def _read_body(request: Request) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise _BodyError(413, "body_too_large", f"the body is over {MAX_BODY_BYTES} bytes: send smaller batches")
    raw = bytearray()
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_BODY_BYTES:
            raise _BodyError(413, "body_too_large", f"the body is over {MAX_BODY_BYTES} bytes: send smaller batches")
    if request.headers.get("content-encoding", "").strip().lower() != "gzip":
        return bytes(raw)
    inflate = zlib.decompressobj(wbits=31)
    try:
        body = inflate.decompress(bytes(raw), MAX_BODY_BYTES + 1)
    except zlib.error as exc:
        raise _BodyError(
            400, "invalid_gzip", f"Content-Encoding is gzip but the body is not gzip data ({exc})"
        ) from None
    if len(body) > MAX_BODY_BYTES or inflate.unconsumed_tail:
        raise _BodyError(413, "body_too_large", f"the body inflates past {MAX_BODY_BYTES} bytes: send smaller batches")
    return body


class _BodyError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _messages(kind: str, body: Any) -> list[Any]:
    if not isinstance(body, dict):
        raise _BodyError(400, "invalid_body", "the body must be a JSON object")
    if kind != "batch":
        return [body | {"type": body.get("type") or kind}]
    batch = body.get("batch")
    if not isinstance(batch, list) or not batch:
        raise _BodyError(400, "invalid_body", "a batch body needs a non-empty `batch` list of messages")
    if len(batch) > MAX_BATCH:
        raise _BodyError(413, "batch_too_large", f"at most {MAX_BATCH} messages per batch")
    shared = body.get("context") if isinstance(body.get("context"), dict) else {}
    return [m | {"context": shared | (m.get("context") or {})} if isinstance(m, dict) and shared else m for m in batch]


class _Plan:
    """What one request delivers, grouped per target, and which messages each target carries."""

    def __init__(self) -> None:
        self.upserts: dict[str, dict[str, Any]] = {}
        self.lead_events: dict[str, list[TrackedEvent]] = defaultdict(list)
        self.lead_emails: dict[str, str] = {}
        self.linked_events: dict[str, list[TrackedEvent]] = defaultdict(list)
        self.visitor_events: dict[str, list[TrackedEvent]] = defaultdict(list)
        self.stitches: dict[str, str] = {}
        self.carried: dict[str, list[int]] = defaultdict(list)  # target -> message indexes
        # Each event message in request order: its index, its event, and its target (a visitor id is
        # replaced by its lead's once the links are known).
        self.events: list[tuple[int, TrackedEvent, str]] = []


async def _plan(state: AppState, messages: list[Any], now: datetime) -> tuple[_Plan, list[MessageResult]]:
    email_from = tuple(state.settings.segment_email_from)
    plan, results = _Plan(), []
    handles: dict[int, str] = {}
    for index, msg in enumerate(messages):
        if not isinstance(msg, dict):
            results.append(MessageResult(messageId=None, status="rejected", reason="a message must be a JSON object"))
            continue
        message_id = msg.get("messageId") if isinstance(msg.get("messageId"), str) else None
        result = MessageResult(messageId=message_id, status="accepted")
        results.append(result)
        kind = msg.get("type")
        try:
            if kind in ("group", "alias"):
                result.status, result.reason = "ignored", f"{kind} calls are not used by leadflow"
            elif kind == "identify":
                _plan_identify(state, plan, msg, email_from, index, result)
            elif kind in ("track", "page", "screen"):
                event = event_from_message(msg, now)
                email = email_of(msg, email_from)
                keys = visitor_keys(msg)
                if email:
                    lead_id = lead_id_for(email, state.id_key)
                    plan.lead_events[lead_id].append(event)
                    plan.lead_emails[lead_id] = normalize_email(email)
                    plan.carried[lead_id].append(index)
                    plan.events.append((index, event, lead_id))
                elif keys:
                    handles[index] = intake.visitor_id_for(keys[0], state.id_key)
                    plan.visitor_events[handles[index]].append(event)
                    plan.events.append((index, event, handles[index]))
                else:
                    raise SpecError("no one to credit: send a userId, an anonymousId or traits.email")
            else:
                raise SpecError(f"unknown message type {kind!r}: use track, page, screen or identify")
        except SpecError as exc:
            result.status, result.reason = "rejected", str(exc)
    # Visitors already stitched to a lead: their events go straight to it, and a repeated identify is a no-op.
    async with state.sessions() as session:
        links = await ingest.linked_leads(session, sorted(set(plan.visitor_events) | set(plan.stitches)))
    for visitor_id, lead_id in list(plan.stitches.items()):
        if links.get(visitor_id) == lead_id:
            del plan.stitches[visitor_id]
    links = {visitor: lead for visitor, lead in links.items() if visitor in plan.visitor_events}
    for index, visitor_id in handles.items():
        if visitor_id in links and results[index].status == "accepted":
            plan.carried[links[visitor_id]].append(index)
        else:
            plan.carried[visitor_id].append(index)
    for visitor_id, lead_id in links.items():
        plan.linked_events[lead_id] += plan.visitor_events.pop(visitor_id)
    plan.events = [(index, event, links.get(target, target)) for index, event, target in plan.events]
    _drop_repeats(state, plan, results)
    return plan, results


def _drop_repeats(state: AppState, plan: _Plan, results: list[MessageResult]) -> None:
    """Answer "duplicate" for a message whose event its target already has from this request, or that this
    process accepted lately (``messageId`` or the derived id, as on ``/v1/events``), and deliver it no more.
    The lead's workflow still ignores a repeat this cannot tell (another process, a restart)."""
    recent, seen, repeats = state.recent_event_ids, set(), set()
    for index, event, target in plan.events:
        key = (target, event.id)
        if key in seen or key in recent:
            results[index].status, results[index].reason = "duplicate", None
            repeats.add(id(event))
        seen.add(key)
    if not repeats:
        return
    for events in (plan.lead_events, plan.linked_events, plan.visitor_events):
        for target in list(events):
            events[target] = [e for e in events[target] if id(e) not in repeats]
            if not events[target]:
                del events[target]
    plan.events = [(index, event, target) for index, event, target in plan.events if id(event) not in repeats]


def _plan_identify(
    state: AppState, plan: _Plan, msg: dict[str, Any], email_from: tuple[str, ...], index: int, result: MessageResult
) -> None:
    email = email_of(msg, email_from)
    if email is None:
        result.status = "ignored"
        result.reason = f"no email to identify anyone by (looked in: {', '.join(email_from)})"
        return
    traits: dict[str, Any] = msg["traits"] if isinstance(msg.get("traits"), dict) else {}
    lead, problems = intake.lead_body(attributes_from_traits(traits) | {"email": email}, state)
    if lead is None:
        raise SpecError("; ".join(problems) or "the email is not usable")
    if problems:
        result.reason = "traits left out: " + "; ".join(problems)
    lead_id = lead_id_for(lead.email, state.id_key)
    plan.upserts[lead_id] = plan.upserts.get(lead_id, {}) | lead.attributes()
    plan.carried[lead_id].append(index)
    for handle in visitor_keys(msg):
        visitor_id = intake.visitor_id_for(handle, state.id_key)
        plan.stitches[visitor_id] = lead_id
        plan.carried[visitor_id].append(index)


async def _deliver(state: AppState, plan: _Plan) -> dict[str, str]:
    """Lead posts first, then events, then visitors' events, then stitches (so held events go along)."""
    failed: dict[str, str] = {}
    for lead in [lead for lead in plan.linked_events if lead in plan.lead_events]:
        plan.lead_events[lead] += plan.linked_events.pop(lead)  # by email and by a stitched visitor: one signal
    lead_steps: dict[str, Callable[[], Awaitable[None]]] = {
        lead: partial(
            signal_events, state, lead, EventsReceived(events, {"email": plan.lead_emails[lead]}), create=True
        )
        for lead, events in plan.lead_events.items()
    }
    lead_steps.update(
        (lead, partial(signal_events, state, lead, EventsReceived(events), create=False))
        for lead, events in plan.linked_events.items()
    )
    steps: list[dict[str, Callable[[], Awaitable[None]]]] = [
        {
            lead: partial(intake.upsert, state, lead, attrs, None, origin=IDENTIFY_ORIGIN)
            for lead, attrs in plan.upserts.items()
        },
        lead_steps,
        {visitor: partial(intake.events_to_visitor, state, visitor, ev) for visitor, ev in plan.visitor_events.items()},
        {visitor: partial(intake.stitch_visitor, state, visitor, lead) for visitor, lead in plan.stitches.items()},
    ]
    for step in steps:
        failed |= await intake.deliver_each({t: d for t, d in step.items() if t not in failed})
    return failed


async def ingest_messages(kind: str, request: Request, state: State) -> JSONResponse:
    """Segment-compatible tracking: see the module docstring."""
    basic = _basic_user(request)
    try:
        body: Any = None
        try:
            body = json.loads(await _read_body(request))
        except (ValueError, UnicodeDecodeError) as exc:
            if basic is not None:  # a caller with credentials learns what is wrong with the body
                raise _BodyError(400, "invalid_json", f"the body is not JSON: {exc}") from None
        except _BodyError:
            if basic is not None:
                raise
        key = basic or (body.get("writeKey") if isinstance(body, dict) else None)
        if not isinstance(key, str) or not key:
            return _error(401, "unauthorized", "send a write key as the HTTP Basic user name (empty password)")
        async with state.sessions() as session:
            if not await ingest.write_key_valid(session, key):
                return _error(401, "unauthorized", "the write key is not valid (revoked, or not a write key)")
        messages = _messages(kind, body)
    except _BodyError as exc:
        return _error(exc.status, exc.code, exc.message)
    plan, results = await _plan(state, messages, datetime.now(UTC))
    failed = await _deliver(state, plan)
    for target, reason in failed.items():
        for index in plan.carried.get(target, []):
            results[index].status, results[index].reason = "rejected", reason
    state.recent_event_ids.add([(target, event.id) for _, event, target in plan.events if target not in failed])
    counts = {status: sum(r.status == status for r in results) for status in ("accepted", "duplicate", "rejected")}
    if kind != "batch" and counts["rejected"]:
        return _error(400, "invalid_message", results[0].reason or "the message was rejected")
    answer = SegmentAccepted(
        accepted=counts["accepted"], duplicates=counts["duplicate"], rejected=counts["rejected"], results=results
    )
    return JSONResponse(answer.model_dump())


def _route(kind: str) -> Callable[[Request, State], Awaitable[JSONResponse]]:
    async def endpoint(request: Request, state: State) -> JSONResponse:
        return await ingest_messages(kind, request, state)

    endpoint.__name__ = f"segment_{kind}"
    endpoint.__doc__ = f"Segment `{kind}` call (write key as HTTP Basic user; gzip bodies accepted)."
    return endpoint


for _prefix in PREFIXES:
    for _kind in KINDS:
        router.add_api_route(
            f"{_prefix}/{_kind}",
            _route(_kind),
            methods=["POST"],
            response_model=SegmentAccepted,
            name=f"segment_{_kind}{'_compat' if _prefix == '/v1/segment' else ''}",
            operation_id=f"segment_{_kind}{'_under_segment' if _prefix == '/v1/segment' else ''}",
        )
