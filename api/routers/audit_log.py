"""The audit log for admins: ``GET /v1/audit`` (filters, newest first) and ``GET /v1/audit.csv`` (streamed)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import StreamingResponse

from api.csv_stream import CSV_CONTENT, streamed_csv
from api.deps import Session, State
from api.errors import V1_ERRORS
from api.roles import allow
from api.schemas import TIME_RANGE, Time
from rules.access import Role
from store import audit

router = APIRouter(tags=["admin: audit"], dependencies=[allow(Role.admin)], responses=V1_ERRORS)


def audit_filter(
    actor: Annotated[str | None, Query(max_length=64, description="an actor id: ak_..., us_..., admin-key")] = None,
    route: Annotated[
        str | None, Query(max_length=200, description="part of 'METHOD /route', e.g. PUT /v1/teams")
    ] = None,
    target: Annotated[str | None, Query(max_length=200, description="part of the target, e.g. a lead id")] = None,
    since: Annotated[Time | None, Query(description=f"at or after ({TIME_RANGE})")] = None,
    until: Annotated[Time | None, Query(description=f"before ({TIME_RANGE})")] = None,
    status_min: Annotated[int | None, Query(ge=100, le=599, description="e.g. 400: only refused writes")] = None,
) -> audit.AuditFilter:
    return audit.AuditFilter(actor, route, target, since, until, status_min)


Filter = Annotated[audit.AuditFilter, Depends(audit_filter)]


@router.get("/v1/audit")
async def list_audit(
    session: Session,
    f: Filter,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=1_000_000_000)] = 0,
) -> dict[str, Any]:
    """Every write through the API or the pages, newest first: who, what, target, summary, status, from where."""
    total, items = await audit.list_entries(session, f, limit=limit, offset=offset)
    return {"items": items, "total": total, "limit": limit, "offset": offset}


@router.get("/v1/audit.csv", response_class=StreamingResponse, responses=CSV_CONTENT)
async def export_audit(state: State, f: Filter) -> StreamingResponse:
    """The matching entries, oldest first, as CSV (streamed)."""
    return streamed_csv(audit.iter_entries(state.sessions, f), audit.COLUMNS, "audit.csv")
