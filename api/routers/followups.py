"""Managers' and reps' follow-up queue, from the read model: a rep sees their own, a manager their teams'."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse

from api.csv_stream import CSV_CONTENT, streamed_csv
from api.deps import Caller, Session, State
from api.errors import V1_ERRORS
from api.lead_scope import store_scope
from api.roles import allow
from rules.access import Role
from store import exports, repo

router = APIRouter(
    prefix="/v1/followups", tags=["follow-ups"], dependencies=[allow(Role.rep, Role.manager)], responses=V1_ERRORS
)
StatusFilter = Annotated[
    Literal["pending", "met", "overdue", "cancelled"] | None,
    Query(description="filter by SLA status (cancelled: ended unmet when the lead left its stage or owner)"),
]


@router.get("")
async def list_followups(
    session: Session,
    caller: Caller,
    status: StatusFilter = None,
    limit: int = Query(default=50, ge=1, le=500),
    offset: int = Query(default=0, ge=0, le=1_000_000_000),
    owed: bool = Query(default=False, description="only those nobody has touched yet (leaves out touched late)"),
) -> dict[str, Any]:
    scope = store_scope(caller)
    items = await repo.list_followups(session, status=status, limit=limit, offset=offset, scope=scope, owed_only=owed)
    return {"items": items, "limit": limit, "offset": offset}


@router.get(".csv", response_class=StreamingResponse, responses=CSV_CONTENT)
async def export_followups(
    state: State,
    caller: Caller,
    status: StatusFilter = None,
) -> StreamingResponse:
    """The follow-ups in the caller's scope by due time, as CSV (streamed)."""
    rows = exports.iter_followups(state.sessions, store_scope(caller), status)
    return streamed_csv(rows, exports.FOLLOWUP_COLUMNS, "followups.csv")
