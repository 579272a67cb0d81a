"""Leads: create or merge (signal-with-start), live state (query), events (signal), touches and consent
(updates), erasure (signal, then shred and anonymise)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, status
from temporalio.client import (
    WorkflowQueryFailedError,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from activities.erasure import ErasureOutcome, erase_person
from api.deps import AppState, Caller, Session, State
from api.errors import BODY_ERRORS, TEMPORAL_ERRORS, V1_ERRORS, documented
from api.identity import current_lead, survivor_of
from api.ingest_doors import end_visitor
from api.intake import LeadBatch, deliver, lead_start, resolve_new_lead, tracked
from api.lead_ids import LEAD_ID_PATTERN, lead_id_for
from api.lead_scope import lead_in_scope, touch_rep
from api.roles import allow
from api.routers.events import summary
from api.schemas import (
    ConsentIn,
    EventResult,
    EventsAccepted,
    EventsIn,
    LeadAccepted,
    LeadIn,
    TouchIn,
    refuse_unsendable,
)
from privacy.keys import LeadErased
from rules.access import Role
from rules.model import ConsentRecorded, LeadUpserted, TouchLogged
from runtime import lead_codec
from store import email_feedback, lead_aliases, privacy, repo
from workflows.lead import LeadWorkflow
from workflows.payloads import LeadView

# The event path's internal entry points live in api/intake.py; these names stay importable from here.
QUERY_TIMEOUT = timedelta(seconds=5)
UPDATE_TIMEOUT = timedelta(seconds=15)
ERASE_STOP_SECONDS = 30.0
# Reps and managers reach only their leads (api/lead_scope.py); a route's own allow() overrides the default.
router = APIRouter(
    prefix="/v1/leads",
    tags=["leads"],
    dependencies=[allow(Role.rep, Role.manager, Role.marketer), Depends(lead_in_scope)],
    responses=V1_ERRORS,
)
LeadId = Annotated[str, Path(pattern=LEAD_ID_PATTERN, description="lead-<32 hex>, as returned by POST /v1/leads")]


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=LeadAccepted,
    responses=BODY_ERRORS | documented(410, 429),
    dependencies=[allow(Role.tracking, Role.manager, Role.marketer)],
)
async def upsert_lead(body: LeadIn, state: State) -> LeadAccepted:
    """Create a lead, or merge these attributes into the same person's lead (same email, same lead)."""
    refuse_unsendable({("email",): body.email}, smtp_utf8=state.settings.smtp_utf8)
    # The address may be one a lead took on, or a merged duplicate's: that lead is this person (api/identity.py).
    consent = body.consent.record("form", datetime.now(UTC)) if body.consent else None
    # The capacity check comes first: an API at capacity answers at once, before any store round trip.
    async with state.temporal_call() as client:
        lead_id = await resolve_new_lead(state, client, lead_id_for(body.email, state.id_key))
        start = await lead_start(state, lead_id)
        await client.start_workflow(
            LeadWorkflow.run,
            start,
            id=lead_id,
            task_queue=state.settings.task_queue,
            start_signal="upsert",
            start_signal_args=[LeadUpserted(body.attributes(), consent, origin="api")],
        )
    return LeadAccepted(lead_id=lead_id, status_url=f"/v1/leads/{lead_id}")


@router.get("/{lead_id:lead_segment}", response_model=LeadView, responses=TEMPORAL_ERRORS)
async def get_lead(lead_id: LeadId, state: State) -> LeadView:
    """The lead's live state from its workflow: stage, score, grade, owner, SLA. A lead merged into another
    answers the survivor's state (its `lead_id` says which)."""
    try:
        async with state.temporal_call() as client:
            # Bounded: with no worker polling, a query would otherwise wait for one.
            view: LeadView = await client.get_workflow_handle(lead_id).query(
                LeadWorkflow.view, rpc_timeout=QUERY_TIMEOUT
            )
    except RPCError as exc:
        survivor = await survivor_of(state, lead_id) if exc.status == RPCStatusCode.NOT_FOUND else None
        if survivor is not None:
            return await get_lead(survivor, state)
        if exc.status == RPCStatusCode.NOT_FOUND:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no lead {lead_id}") from exc
        raise
    if view.merged_into:
        return await get_lead(await current_lead(state, view.merged_into), state)
    if not view.exists:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no lead {lead_id} yet: only events were posted")
    return view


@router.get("/{lead_id}/timeline", responses=documented(404))
async def lead_timeline(lead_id: LeadId, session: Session) -> dict[str, Any]:
    """What the read model holds about the lead: touchpoints, score history, emails, bounces and complaints.
    A merged lead's id answers its survivor's timeline (which holds the duplicate's touchpoints too)."""
    lead_id = (await lead_aliases.resolve(session, [lead_id])).get(lead_id, lead_id)
    lead = await repo.get_lead(session, lead_id)
    touchpoints = await repo.list_touchpoints(session, lead_id)
    if lead is None and not touchpoints:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no lead {lead_id} in the store yet")
    return {
        "lead": lead,
        "touchpoints": touchpoints,
        "score_changes": await repo.list_score_changes(session, lead_id),
        "emails": await repo.list_emails(session, lead_id=lead_id),
        "email_feedback": await email_feedback.list_feedback(session, lead_id),
    }


@router.post(
    "/{lead_id}/events",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=EventsAccepted,
    responses=BODY_ERRORS | TEMPORAL_ERRORS,
    dependencies=[allow(Role.tracking)],
)
async def post_lead_events(lead_id: LeadId, body: EventsIn, state: State) -> EventsAccepted:
    """Behavioural events for a known lead (404 if there is none: post the lead, or use POST /v1/events).
    The answer says per event: accepted (durable), duplicate or rejected with the reason."""
    now = datetime.now(UTC)
    results: list[EventResult | None] = [None] * (len(body.events) + len(body.rejected))
    for position, reason in body.rejected.items():
        results[position] = EventResult(index=position, status="rejected", reason=reason)
    batch = LeadBatch(lead_id, tracked(lead_id, body.events, now), body.positions)
    try:
        await deliver(state, [batch], results, create=False, origin="api")  # type: ignore[arg-type]
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            raise HTTPException(
                status.HTTP_404_NOT_FOUND,
                f"no lead {lead_id}: POST /v1/leads first, "
                "or post events with an email to /v1/events to create the lead",
            ) from exc
        raise
    return summary(results)  # type: ignore[arg-type]


@router.post(
    "/{lead_id}/touches",
    response_model=LeadView,
    responses=BODY_ERRORS | TEMPORAL_ERRORS,
    dependencies=[allow(Role.rep, Role.manager)],
)
async def log_touch(lead_id: LeadId, body: TouchIn, state: State, caller: Caller) -> LeadView:
    """A rep's touch (call, email, meeting...): meets the follow-up SLA if it comes in time."""
    now = datetime.now(UTC)
    rep_id = touch_rep(caller, body.rep_id)
    touch = TouchLogged(f"touch-{uuid.uuid4().hex}", body.kind, min(body.at or now, now), rep_id, body.note)
    refused = status.HTTP_422_UNPROCESSABLE_CONTENT
    view = await update_lead(state, lead_id, LeadWorkflow.log_touch, touch, refused=refused)
    # The workflow projects the touch as a touchpoint (it is the one writer of touchpoints).
    return view


@router.post("/{lead_id}/consent", response_model=LeadView, responses=BODY_ERRORS | TEMPORAL_ERRORS)
async def record_consent(lead_id: LeadId, body: ConsentIn, state: State) -> LeadView:
    """Record email consent (opt-in or opt-out); the answer shows the consent that now decides nurture."""
    change = ConsentRecorded(body.record("api", datetime.now(UTC)))
    return await update_lead(state, lead_id, LeadWorkflow.record_consent, change, refused=status.HTTP_404_NOT_FOUND)


async def _stop_for_erasure(state: AppState, lead_id: str, email: str | None) -> tuple[bool, str | None]:
    """Signal ``erase`` and wait until the workflow has ended. Returns (it was running, the lead's email)."""
    async with state.temporal_call() as client:
        handle = client.get_workflow_handle(lead_id)
        if email is None:  # not projected yet: ask the live lead
            try:
                view: LeadView = await handle.query(LeadWorkflow.view, rpc_timeout=QUERY_TIMEOUT)
                email = view.attributes.get("email")
            except (RPCError, LeadErased, WorkflowQueryFailedError):
                pass
        try:
            await handle.signal(LeadWorkflow.erase)
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:  # never started, or ended (an erasure asked again)
                return False, email
            raise
        try:
            await asyncio.wait_for(handle.result(), ERASE_STOP_SECONDS)
        except TimeoutError as exc:
            raise HTTPException(
                status.HTTP_503_SERVICE_UNAVAILABLE,
                f"the lead's workflow did not stop within {ERASE_STOP_SECONDS:.0f} s (is a worker running?): "
                "nothing was erased yet, retry the DELETE",
                headers={"Retry-After": "5"},
            ) from exc
    return True, email


@router.delete(
    "/{lead_id:lead_segment}",
    response_model=ErasureOutcome,
    responses=TEMPORAL_ERRORS,
    dependencies=[allow(Role.admin)],
)
async def erase_lead(lead_id: LeadId, state: State, session: Session) -> ErasureOutcome:
    """Right to erasure: end the lead's workflow, destroy its data key (Temporal's histories of it become
    unreadable), suppress the address (as a keyed hash) and anonymise the store. Safe to repeat."""
    email = await privacy.lead_email(session, lead_id)
    known = await repo.get_lead(session, lead_id) is not None or bool(await privacy.get_lead_key(session, lead_id))
    running, email = await _stop_for_erasure(state, lead_id, email)
    if not (known or running or await repo.list_touchpoints(session, lead_id, limit=1)):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no lead {lead_id}")
    client = await state.temporal()
    codec = lead_codec(client)
    keys, ended = codec.keys if codec else None, partial(end_visitor, state)  # stitched visitors' keys go too
    outcome = await erase_person(state.sessions, keys, lead_id, email, state.id_key, ended)
    # Duplicates merged into this lead were the same person: their keys, addresses and rows go too (their
    # workflows ended at the merge).
    for alias in await lead_aliases.list_aliases(session, lead_id):
        if alias["reason"] == lead_aliases.MERGED:
            alias_id = str(alias["alias_id"])
            alias_email = await privacy.lead_email(session, alias_id)
            await erase_person(state.sessions, keys, alias_id, alias_email, state.id_key, ended)
    return outcome


async def update_lead(
    state: AppState,
    lead_id: str,
    update: Any,
    arg: Any,
    *,
    refused: int,
    refused_by_type: dict[str, int] | None = None,
) -> LeadView:
    """Run a workflow update that answers the lead's new view; a validator's refusal becomes ``refused`` (or
    the code ``refused_by_type`` gives its ApplicationError type). An update that times out or whose workflow
    cannot take it now (no worker, too many updates in flight) answers 503 with Retry-After."""
    try:
        async with state.temporal_call() as client:
            view: LeadView = await client.get_workflow_handle(lead_id).execute_update(
                update, arg, rpc_timeout=UPDATE_TIMEOUT
            )
    except WorkflowUpdateFailedError as exc:
        cause = exc.cause
        message = cause.message if isinstance(cause, ApplicationError) else str(cause)
        kind = cause.type if isinstance(cause, ApplicationError) else None
        raise HTTPException((refused_by_type or {}).get(kind or "", refused), message) from exc
    except WorkflowUpdateRPCTimeoutOrCancelledError as exc:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            f"the lead's workflow did not answer within {UPDATE_TIMEOUT.total_seconds():.0f} s (busy, or no worker "
            "is running): the change may still apply; read the lead, then retry",
            headers={"Retry-After": "5"},
        ) from exc
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            survivor = await survivor_of(state, lead_id)  # a merged lead's workflow has ended: its survivor's
            if survivor is not None:
                return await update_lead(state, survivor, update, arg, refused=refused, refused_by_type=refused_by_type)
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no lead {lead_id}") from exc
        if exc.status == RPCStatusCode.RESOURCE_EXHAUSTED:  # e.g. too many updates in flight on this lead
            raise HTTPException(
                status.HTTP_503_SERVICE_UNAVAILABLE,
                f"the lead's workflow is busy ({exc.message}): retry shortly",
                headers={"Retry-After": "2"},
            ) from exc
        raise
    return view
