"""Sales teams and their reps (routing targets)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path

from api.deps import Authorized, Session
from api.schemas import TeamBody
from store import repo

router = APIRouter(prefix="/v1/teams", tags=["teams"], dependencies=[Authorized])
TeamKey = Annotated[str, Path(pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$")]


@router.get("")
async def list_teams(session: Session) -> dict[str, Any]:
    return {"items": await repo.list_teams(session)}


@router.put("/{team_key}")
async def put_team(team_key: TeamKey, body: TeamBody, session: Session) -> dict[str, Any]:
    """Create or replace a team; reps left out become inactive (their history stays)."""
    reps = [repo.RepIn(r.id, r.name, str(r.email), r.active, r.capacity, r.weight) for r in body.reps]
    await repo.upsert_team(
        session,
        repo.TeamIn(
            team_key, body.name, body.manager_name, str(body.manager_email) if body.manager_email else None, reps
        ),
    )
    teams = await repo.list_teams(session)
    return next(t for t in teams if t["key"] == team_key)
