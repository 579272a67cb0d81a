"""Sales teams and their reps (routing targets)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, status
from pydantic import BaseModel, ConfigDict, Field

from api.deps import Caller, Session, State
from api.errors import BODY_ERRORS, V1_ERRORS, documented
from api.roles import allow
from api.schemas import TIME_RANGE, TeamBody, Time, refuse_unsendable
from rules.access import Role
from store import repo

router = APIRouter(tags=["teams"], dependencies=[allow(Role.manager)], responses=V1_ERRORS)
TeamKey = Annotated[str, Path(pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$")]
RepId = Annotated[str, Path(pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$")]


class AvailabilityIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    away_until: Time | None = Field(description=f"out of office until then ({TIME_RANGE}); null: back")


@router.get("/v1/teams")
async def list_teams(session: Session) -> dict[str, Any]:
    return {"items": await repo.list_teams(session)}


@router.put("/v1/teams/{team_key}", responses=BODY_ERRORS, dependencies=[allow(Role.admin)])
async def put_team(team_key: TeamKey, body: TeamBody, session: Session, state: State) -> dict[str, Any]:
    """Create or replace a team; reps left out become inactive (their history stays)."""
    # Notifications go to these addresses: one leadflow could never send to is refused here, not at send time.
    addresses: dict[tuple[str | int, ...], str] = {("reps", n, "email"): str(r.email) for n, r in enumerate(body.reps)}
    if body.manager_email:
        addresses[("manager_email",)] = str(body.manager_email)
    refuse_unsendable(addresses, smtp_utf8=state.settings.smtp_utf8)
    reps = [repo.RepIn(r.id, r.name, str(r.email), r.active, r.capacity, r.weight, r.away_until) for r in body.reps]
    await repo.upsert_team(
        session,
        repo.TeamIn(
            team_key, body.name, body.manager_name, str(body.manager_email) if body.manager_email else None, reps
        ),
    )
    teams = await repo.list_teams(session)
    return next(t for t in teams if t["key"] == team_key)


@router.put("/v1/reps/{rep_id}/availability", responses=BODY_ERRORS | documented(404))
async def set_availability(rep_id: RepId, body: AvailabilityIn, session: Session, caller: Caller) -> dict[str, Any]:
    """Out of office: the rep gets no new leads until ``away_until``; routing picks the next rep.
    A manager sets it for the reps of their teams."""
    if caller.role is Role.manager:
        team = next((t["key"] for t in await repo.list_teams(session) for r in t["reps"] if r["id"] == rep_id), None)
        if team is not None and team not in caller.teams:
            raise HTTPException(status.HTTP_403_FORBIDDEN, f"rep {rep_id} is not in a team you manage")
    if not await repo.set_rep_availability(session, rep_id, body.away_until):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no rep {rep_id}")
    return {"rep_id": rep_id, "away_until": body.away_until}
