"""``GET /v1/me``: who the caller is (key or user, role, scope), for scripts and the pages' header."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel

from api.deps import Caller
from api.errors import V1_ERRORS
from api.roles import allow
from rules.access import ROLES, Role

router = APIRouter(tags=["me"], dependencies=[allow(*ROLES)], responses=V1_ERRORS)


class MeOut(BaseModel):
    kind: str
    id: str
    name: str
    role: Role
    rep_id: str | None
    teams: list[str]


@router.get("/v1/me", response_model=MeOut)
async def me(caller: Caller) -> MeOut:
    return MeOut(
        kind=caller.kind, id=caller.id, name=caller.name, role=caller.role, rep_id=caller.rep_id,
        teams=sorted(caller.teams),
    )  # fmt: skip
