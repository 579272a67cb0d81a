"""Merges and identity by lead id (issue 9 item 5): merge a duplicate into a lead, change a lead's email.

Thin: the rules of what survives live in rules/merge.py, the protocol in workflows/lead_merge.py; the store's
aliases (written by the workflows) send later traffic for old ids and addresses to the survivor."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, HTTPException, Path, Request, status
from pydantic import Field
from temporalio.client import WorkflowQueryFailedError, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from api.deps import AppState, State
from api.errors import BODY_ERRORS, TEMPORAL_ERRORS, V1_ERRORS, documented
from api.identity import current_lead, current_leads, survivor_of
from api.lead_ids import LEAD_ID_PATTERN, lead_id_for
from api.lead_scope import lead_in_scope
from api.roles import allow, principal_of
from api.schemas import LeadIn, LongText, _In, refuse_unsendable
from rules.access import Role, may_see_lead, sees_every_lead
from rules.model import LeadUpserted
from store import repo
from workflows.lead import LeadWorkflow
from workflows.merge_payloads import LeadEdit, MergeRequest
from workflows.payloads import LeadView

QUERY_TIMEOUT = timedelta(seconds=5)
# The survivor waits up to a minute for the duplicate's hand-over (workflows/lead_merge.py), plus the work.
MERGE_TIMEOUT = timedelta(seconds=75)
UPDATE_TIMEOUT = timedelta(seconds=15)
# How a workflow's refusal (ApplicationError type) reads over HTTP.
REFUSALS = {
    "UnknownLead": status.HTTP_404_NOT_FOUND,
    "UnknownDuplicate": status.HTTP_404_NOT_FOUND,
    "MergedLead": status.HTTP_409_CONFLICT,
    "MergeRefused": status.HTTP_409_CONFLICT,
    "MergePending": status.HTTP_503_SERVICE_UNAVAILABLE,
}

# Managers (their teams' leads, api/lead_scope.py) and marketers (data hygiene); admin too, as everywhere.
router = APIRouter(
    prefix="/v1/leads",
    tags=["leads"],
    dependencies=[allow(Role.manager, Role.marketer), Depends(lead_in_scope)],
    responses=V1_ERRORS,
)
LeadId = Annotated[str, Path(pattern=LEAD_ID_PATTERN, description="lead-<32 hex>, as returned by POST /v1/leads")]


class MergeIn(_In):
    duplicate_id: str = Field(
        pattern=LEAD_ID_PATTERN, description="the duplicate lead (lead-<32 hex>): it ends, pointing at this lead"
    )
    note: LongText | None = Field(default=None, description="why they are one person, for the record")


@router.post(
    "/{lead_id}:merge", response_model=LeadView, responses=BODY_ERRORS | TEMPORAL_ERRORS | documented(409, 503)
)
async def merge_leads(lead_id: LeadId, body: Annotated[MergeIn, Body()], state: State, request: Request) -> LeadView:
    """Merge the lead `duplicate_id` into this one: this lead survives with both histories (touchpoints,
    score changes, consent: an opt-out on either stays; owner: this lead's unless it has none; attributes:
    this lead's, filled from the duplicate). The duplicate ends pointing here (`merged_into`); its open
    assignment is released and its follow-ups cancelled; later events, touches and look-ups for its id or its
    email come here. Answers the merged lead. Refused with 422 (itself), 404 (unknown), 409 (already merged)
    or 410 (erased)."""
    duplicate = body.duplicate_id
    if duplicate == lead_id:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "duplicate_id: a lead cannot be merged into itself")
    aliases = await current_leads(state, [lead_id, duplicate])
    if duplicate in aliases:
        raise HTTPException(status.HTTP_409_CONFLICT, f"lead {duplicate} is already merged into {aliases[duplicate]}")
    survivor = aliases.get(lead_id, lead_id)  # a merged lead's id stands for its survivor, as everywhere
    if survivor == duplicate:
        raise HTTPException(
            status.HTTP_409_CONFLICT, f"lead {lead_id} was merged into {duplicate}: it cannot absorb its survivor"
        )
    await _duplicate_in_scope(request, state, duplicate)
    view = await _view(state, duplicate)
    if view is None or not view.exists:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"duplicate_id: no lead {duplicate}")
    if view.merged_into:
        raise HTTPException(status.HTTP_409_CONFLICT, f"lead {duplicate} is already merged into {view.merged_into}")
    return await _run(state, survivor, LeadWorkflow.merge, MergeRequest(duplicate, note=body.note), MERGE_TIMEOUT)


@router.patch(
    "/{lead_id:lead_segment}", response_model=LeadView, responses=BODY_ERRORS | TEMPORAL_ERRORS | documented(409)
)
async def edit_lead(lead_id: LeadId, body: LeadIn, state: State) -> LeadView:
    """Update a lead by its id, its email included: a person who changes address stays one lead, and the old
    address still reaches it (its lead id is this one). The new address may not belong to another lead (409:
    merge that lead into this one instead). Answers the lead's new state."""
    refuse_unsendable({("email",): body.email}, smtp_utf8=state.settings.smtp_utf8)
    lead_id = await current_lead(state, lead_id)
    address_id = lead_id_for(body.email, state.id_key)
    alias: str | None = None
    if address_id != lead_id:
        owner = await current_lead(state, address_id)
        if owner == address_id:
            existing = await _view(state, address_id)
            if existing is not None and existing.exists:
                owner = address_id
            else:
                alias, owner = address_id, lead_id
        if owner != lead_id:
            raise HTTPException(
                status.HTTP_409_CONFLICT,
                f"email: that address belongs to lead {owner}; to keep one lead, merge it into this one "
                f"(POST /v1/leads/{lead_id}:merge with duplicate_id {owner})",
            )
    consent = body.consent.record("api", datetime.now(UTC)) if body.consent else None
    upsert = LeadUpserted(body.attributes(), consent, origin="api", email_change=True)
    return await _run(state, lead_id, LeadWorkflow.edit, LeadEdit(upsert, alias), UPDATE_TIMEOUT)


async def _duplicate_in_scope(request: Request, state: State, duplicate: str) -> None:
    """A manager merges only leads of their teams: the duplicate too, not only the lead in the path."""
    principal = principal_of(request)
    if principal is None or sees_every_lead(principal):
        return
    async with state.sessions() as session:
        row = await repo.get_lead(session, duplicate)
    if row is None or not may_see_lead(principal, row.get("owner_rep_id"), row.get("owner_team")):
        raise HTTPException(status.HTTP_403_FORBIDDEN, f"duplicate_id: lead {duplicate} is not among your teams' leads")


async def _view(state: AppState, lead_id: str) -> LeadView | None:
    """The lead's live view, or None when it has no workflow (an erased lead raises LeadErased: 410)."""
    try:
        async with state.temporal_call() as client:
            view: LeadView = await client.get_workflow_handle(lead_id).query(
                LeadWorkflow.view, rpc_timeout=QUERY_TIMEOUT
            )
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return None
        raise
    except WorkflowQueryFailedError as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, f"lead {lead_id} cannot answer: {exc}") from exc
    return view


async def _run(state: AppState, lead_id: str, update: Any, arg: Any, rpc_timeout: timedelta) -> LeadView:
    """Run a lead's update; a refusal becomes the 4xx its type says (REFUSALS), an unknown lead a 404."""
    try:
        async with state.temporal_call() as client:
            view: LeadView = await client.get_workflow_handle(lead_id).execute_update(
                update, arg, rpc_timeout=rpc_timeout
            )
    except WorkflowUpdateFailedError as exc:
        cause = exc.cause
        if isinstance(cause, ApplicationError):
            code = REFUSALS.get(cause.type or "", status.HTTP_409_CONFLICT)
            headers = {"Retry-After": "30"} if code == status.HTTP_503_SERVICE_UNAVAILABLE else None
            raise HTTPException(code, cause.message, headers=headers) from exc
        raise HTTPException(status.HTTP_409_CONFLICT, str(cause)) from exc
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            survivor = await survivor_of(state, lead_id)
            detail = f"lead {lead_id} was merged into {survivor}" if survivor else f"no lead {lead_id}"
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail) from exc
        raise
    return view
