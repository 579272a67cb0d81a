"""The sales hand-off over the API: accept or reject an assignment, set the stage, record won, lost or
disqualified, reassign, pause and resume nurture. Each is the lead workflow's ``sales_change`` update: the
caller gets the lead's new view, or 409 (the lead's state forbids it now) / 422 (the change is wrong for the
playbook) with a message. Who made the change is the caller as authenticated (key, login), never the body.

Reps reach their own leads, managers their teams' (api/lead_scope.py, installed on the router)."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, status
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from api.deps import AppState, Caller, State
from api.errors import BODY_ERRORS, TEMPORAL_ERRORS, V1_ERRORS, documented
from api.lead_scope import lead_in_scope
from api.roles import allow
from api.routers.leads import LeadId, update_lead
from rules.access import Principal, Role
from rules.model import Actor, SalesChange
from store import assignments
from workflows.lead import LeadWorkflow
from workflows.payloads import LeadView

router = APIRouter(
    prefix="/v1/leads",
    tags=["sales"],
    dependencies=[allow(Role.rep, Role.manager), Depends(lead_in_scope)],
    responses=V1_ERRORS | BODY_ERRORS | TEMPORAL_ERRORS | documented(409),
)
Reason = Annotated[str, StringConstraints(strip_whitespace=True, pattern=r"^[a-z][a-z0-9_]{0,39}$")]
Note = Annotated[str, StringConstraints(strip_whitespace=True, max_length=2000)]
Key = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$")]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class NoteIn(_In):
    note: Note | None = None


class ReasonIn(_In):
    reason: Reason = Field(description="one of the playbook's reasons (sales.*_reasons); other needs a note")
    note: Note | None = None


class StageIn(_In):
    stage: Key = Field(description="a funnel stage of the playbook (e.g. opportunity, customer)")
    note: Note | None = None


class WonIn(_In):
    amount: Decimal = Field(gt=0, max_digits=14, decimal_places=2, description="the deal's amount")
    currency: Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")] = Field(description="ISO 4217, e.g. USD, JPY")
    close_date: date | None = Field(default=None, description="when the deal closed; default today")
    product: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)] | None = None
    note: Note | None = None


class ReassignIn(_In):
    rep_id: Key | None = Field(default=None, description="the rep who takes the lead (their team's if no team)")
    team: Key | None = Field(default=None, description="the team whose routing strategy picks the rep")
    note: Note | None = None

    @model_validator(mode="after")
    def _someone(self) -> ReassignIn:
        if self.rep_id is None and self.team is None:
            raise ValueError("give rep_id or team: who takes the lead")
        return self


class PauseIn(_In):
    reason: Note | None = None


def actor(caller: Principal) -> Actor:
    return Actor(caller.kind, caller.id, caller.role.value, caller.name, caller.rep_id)


async def change_lead(state: AppState, lead_id: str, change: SalesChange) -> LeadView:
    """Run the lead's ``sales_change`` update; its refusals answer 409 or 422."""
    return await update_lead(
        state,
        lead_id,
        LeadWorkflow.sales_change,
        change,
        refused=status.HTTP_422_UNPROCESSABLE_CONTENT,
        refused_by_type={"SalesConflict": status.HTTP_409_CONFLICT},
    )


def _change(caller: Principal, action: str, **fields: Any) -> SalesChange:
    now = datetime.now(UTC)
    return SalesChange(f"sales-{uuid.uuid4().hex}", action, actor(caller), now, **fields)  # type: ignore[arg-type]


@router.post("/{lead_id}/accept", response_model=LeadView)
async def accept_lead(lead_id: LeadId, state: State, caller: Caller, body: NoteIn | None = None) -> LeadView:
    """The rep takes the lead (SAL): its acceptance SLA, if any, stops."""
    return await change_lead(state, lead_id, _change(caller, "accept", note=body.note if body else None))


@router.post("/{lead_id}/reject", response_model=LeadView)
async def reject_lead(lead_id: LeadId, body: ReasonIn, state: State, caller: Caller) -> LeadView:
    """The rep turns the lead down with a reason; the playbook sends it back (sales.on_reject: recycle,
    disqualify, or reroute to another rep of the team, excluding this one)."""
    return await change_lead(state, lead_id, _change(caller, "reject", reason=body.reason, note=body.note))


@router.post("/{lead_id}/stage", response_model=LeadView)
async def set_stage(lead_id: LeadId, body: StageIn, state: State, caller: Caller) -> LeadView:
    """Move the lead to a funnel stage (opportunity, customer...); a closed lead set back is open again."""
    return await change_lead(state, lead_id, _change(caller, "stage", stage=body.stage, note=body.note))


@router.post("/{lead_id}/won", response_model=LeadView)
async def mark_won(lead_id: LeadId, body: WonIn, state: State, caller: Caller) -> LeadView:
    """The deal is won: amount, currency, close date, product. The lead moves to the playbook's won stage."""
    change = _change(
        caller, "won", amount=body.amount, currency=body.currency, close_date=body.close_date or date.today(),
        product=body.product, note=body.note,
    )  # fmt: skip
    return await change_lead(state, lead_id, change)


@router.post("/{lead_id}/lost", response_model=LeadView)
async def mark_lost(lead_id: LeadId, body: ReasonIn, state: State, caller: Caller) -> LeadView:
    """The deal is lost, for a reason of the playbook's sales.lost_reasons."""
    return await change_lead(state, lead_id, _change(caller, "lost", reason=body.reason, note=body.note))


@router.post("/{lead_id}/disqualify", response_model=LeadView)
async def disqualify_lead(lead_id: LeadId, body: ReasonIn, state: State, caller: Caller) -> LeadView:
    """Not a lead sales will work, for a reason of the playbook's sales.disqualify_reasons."""
    return await change_lead(state, lead_id, _change(caller, "disqualify", reason=body.reason, note=body.note))


@router.post("/{lead_id}/reassign", response_model=LeadView, dependencies=[allow(Role.manager)])
async def reassign_lead(lead_id: LeadId, body: ReassignIn, state: State, caller: Caller) -> LeadView:
    """Give the lead to a rep (of their team) or to a team (its strategy picks the rep), with a note. A named
    rep who is away or at capacity is skipped for the team's strategy, and the assignment says so."""
    team = body.team
    async with state.sessions() as session:
        if body.rep_id is not None:
            found = await assignments.rep_team(session, body.rep_id)
            if found is None or not found[1]:
                raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, f"rep_id: no active rep {body.rep_id}")
            if team is not None and team != found[0]:
                raise HTTPException(
                    status.HTTP_422_UNPROCESSABLE_CONTENT, f"team: {body.rep_id} is in team {found[0]}, not {team}"
                )
            team = found[0]
        elif team is not None and not await assignments.team_exists(session, team):
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, f"team: no team {team}")
    change = _change(caller, "reassign", rep_id=body.rep_id, team=team, note=body.note)
    return await change_lead(state, lead_id, change)


@router.post("/{lead_id}/nurture/pause", response_model=LeadView)
async def pause_nurture(lead_id: LeadId, state: State, caller: Caller, body: PauseIn | None = None) -> LeadView:
    """Hold the lead's journeys where they are (no nurture mail) until resumed."""
    return await change_lead(state, lead_id, _change(caller, "pause_nurture", reason=body.reason if body else None))


@router.post("/{lead_id}/nurture/resume", response_model=LeadView)
async def resume_nurture(lead_id: LeadId, state: State, caller: Caller, body: NoteIn | None = None) -> LeadView:
    """Let the lead's journeys go on from where they were paused."""
    return await change_lead(state, lead_id, _change(caller, "resume_nurture", note=body.note if body else None))
