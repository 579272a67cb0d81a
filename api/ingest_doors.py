"""Delivery shared by the ingest doors (Segment tracking, forms, webhooks): lead posts validated like
``POST /v1/leads``, and signals to lead and visitor workflows, one target at a time failing alone.

Accepted means a signal reached Temporal: nothing here writes the store on the side.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from temporalio.service import RPCError, RPCStatusCode

from api.deps import AppState
from api.identity import current_lead
from api.intake import lead_start
from api.schemas import LeadIn, refuse_unsendable
from privacy.keys import LeadErased
from rules.model import ConsentRecord, LeadUpserted, TrackedEvent
from workflows.lead import LeadWorkflow
from workflows.visitor import VisitorStart, VisitorWorkflow

TARGETS_IN_PARALLEL = 16


class Undeliverable(Exception):
    """This one target (a lead or a visitor) cannot take input; the others are unaffected."""


def lead_body(body: dict[str, Any], state: AppState) -> tuple[LeadIn | None, list[str]]:
    """``body`` validated as ``POST /v1/leads`` would; fields that fail are dropped (and named) rather than
    losing the whole post, unless the email itself is unusable (then ``None``)."""
    problems: list[str] = []
    for _ in range(3):
        try:
            lead = LeadIn.model_validate(body)
            refuse_unsendable({("email",): lead.email}, smtp_utf8=state.settings.smtp_utf8)
            return lead, problems
        except (ValidationError, RequestValidationError) as exc:
            errors = exc.errors()
            bad = {str(e["loc"][0] if e["loc"] and e["loc"][0] != "body" else e["loc"][1]) for e in errors}
            problems += [f"{'.'.join(str(p) for p in e['loc'] if p != 'body')}: {e['msg']}" for e in errors]
            if "email" in bad or not bad & set(body):
                return None, problems
            body = {k: v for k, v in body.items() if k not in bad}
    return None, problems


def visitor_id_for(handle: str, key: str) -> str:
    """A keyed hash of an anonymous handle: Temporal ids never show a userId or anonymousId."""
    return "visitor-" + hmac.new(key.encode(), handle.encode(), hashlib.sha256).hexdigest()[:32]


async def upsert(
    state: AppState, lead_id: str, attributes: dict[str, Any], consent: ConsentRecord | None, *, origin: str
) -> None:
    """Create or update the lead; ``origin`` (e.g. "form:whitepaper", "segment:identify") is kept as each
    attribute's provenance (rules/profile.py), so the lead view says where every value came from."""
    lead_id = await current_lead(state, lead_id)  # an address a lead took on, or a merged duplicate's
    start = await lead_start(state, lead_id)
    async with state.temporal_call() as client:
        await client.start_workflow(
            LeadWorkflow.run,
            start,
            id=lead_id,
            task_queue=state.settings.task_queue,
            start_signal="upsert",
            start_signal_args=[LeadUpserted(attributes, consent, origin=origin)],
        )


async def events_to_visitor(state: AppState, visitor_id: str, events: list[TrackedEvent]) -> None:
    await _visitor_signal(state, visitor_id, "events", events)


async def stitch_visitor(state: AppState, visitor_id: str, lead_id: str) -> None:
    await _visitor_signal(state, visitor_id, "stitch", lead_id)


async def _visitor_signal(state: AppState, visitor_id: str, signal: str, arg: Any) -> None:
    retention = state.settings.visitor_retention_days * 86400
    async with state.temporal_call() as client:
        await client.start_workflow(
            VisitorWorkflow.run,
            VisitorStart(visitor_id, retention),
            id=visitor_id,
            task_queue=state.settings.task_queue,
            start_signal=signal,
            start_signal_args=[arg],
        )


async def end_visitor(state: AppState, visitor_id: str) -> None:
    """Erasure: end a stitched visitor's workflow before its data key is destroyed (one that has ended
    already, or never ran, is fine). Its later anonymous events are then refused as an erased person's."""
    async with state.temporal_call() as client:
        try:
            await client.get_workflow_handle(visitor_id).terminate(reason="the person was erased")
        except RPCError as exc:
            if exc.status != RPCStatusCode.NOT_FOUND:
                raise


async def deliver_each(deliveries: dict[str, Callable[[], Awaitable[None]]]) -> dict[str, str]:
    """Run each target's delivery (bounded parallelism); returns target -> why it failed, for the targets
    that cannot take input (an erased lead, a lead that is gone). Outages raise: the caller answers 503
    and the client retries (event ids make the retry safe)."""
    limit = asyncio.Semaphore(TARGETS_IN_PARALLEL)
    failed: dict[str, str] = {}

    async def one(target: str, deliver: Callable[[], Awaitable[None]]) -> None:
        async with limit:
            try:
                await deliver()
            except LeadErased:
                failed[target] = "this person was erased: leadflow takes nothing more about them"
            except RPCError as exc:
                if exc.status != RPCStatusCode.NOT_FOUND:
                    raise
                failed[target] = "the lead this visitor was stitched to no longer exists"

    await asyncio.gather(*(one(t, d) for t, d in deliveries.items()))
    return failed
