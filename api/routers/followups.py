"""Managers' follow-up queue, from the read model."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Query

from api.deps import Authorized, Session
from api.errors import V1_ERRORS
from store import repo

router = APIRouter(prefix="/v1/followups", tags=["follow-ups"], dependencies=[Authorized], responses=V1_ERRORS)


@router.get("")
async def list_followups(
    session: Session,
    status: Literal["pending", "met", "overdue"] | None = Query(default=None, description="filter by SLA status"),
    limit: int = Query(default=50, ge=1, le=500),
    offset: int = Query(default=0, ge=0, le=1_000_000_000),
) -> dict[str, Any]:
    items = await repo.list_followups(session, status=status, limit=limit, offset=offset)
    return {"items": items, "limit": limit, "offset": offset}
