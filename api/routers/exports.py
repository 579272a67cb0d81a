"""Lead exports as streamed CSV: a rep gets their own leads, a manager their teams', marketers everyone's."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse

from api.csv_stream import CSV_CONTENT, streamed_csv
from api.deps import Caller, State
from api.errors import V1_ERRORS
from api.lead_scope import store_scope
from api.roles import allow
from api.schemas import TIME_RANGE, Time
from rules.access import Role
from store import exports

router = APIRouter(tags=["exports"], dependencies=[allow(Role.rep, Role.manager, Role.marketer)], responses=V1_ERRORS)


@router.get("/v1/leads.csv", response_class=StreamingResponse, responses=CSV_CONTENT)
async def export_leads(
    state: State,
    caller: Caller,
    stage: Annotated[str | None, Query(max_length=64, description="only leads at this stage")] = None,
    since: Annotated[Time | None, Query(description=f"only leads created at or after ({TIME_RANGE})")] = None,
) -> StreamingResponse:
    """Every lead in the caller's scope from the read model, by id, as CSV (streamed)."""
    rows = exports.iter_leads(state.sessions, store_scope(caller), stage, since)
    return streamed_csv(rows, exports.LEAD_COLUMNS, "leads.csv")
