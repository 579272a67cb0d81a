"""Source costs (the API owns them): what each source or campaign cost per period, as JSON or CSV.

The reports divide by these (CPL, cost per SQL, CAC). A cost row is keyed by source, campaign, period and
currency, so putting the same row again replaces its amount. Its source is folded through the live
playbook's source map as leads' sources are ("LinkedIn Ads" -> linkedin), so a cost lands on its leads' row.
"""

from __future__ import annotations

import csv
import io
from dataclasses import replace
from datetime import date, timedelta
from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query, Request, status
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, model_validator

from api.deps import Session, State
from api.errors import BODY_ERRORS, V1_ERRORS, documented
from api.limits import MAX_BODY_BYTES
from api.report_params import QueryDay, csv_response
from api.roles import allow
from rules.access import Role
from rules.report_facts import CostFacts, month
from rules.sources import CompiledSources
from store import costs

router = APIRouter(tags=["costs"], dependencies=[allow(Role.marketer)], responses=V1_ERRORS)
AS_CSV: dict[int | str, dict[str, Any]] = {
    200: {"content": {"application/json": {}, "text/csv": {"schema": {"type": "string"}}}}
}

# Costs never reach Temporal, but every body passes the API's one limit (api/limits.py) first.
MAX_CSV_BYTES = MAX_BODY_BYTES
MAX_ROWS = 10_000
CSV_COLUMNS = ["source", "campaign", "category", "period", "start", "end", "amount", "currency", "note"]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]


class CostIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    source: Name = Field(description="the source, folded through the playbook's source map as leads' are")
    campaign: Annotated[str, StringConstraints(strip_whitespace=True, max_length=200)] = Field(
        default="", description="one campaign of the source; empty for the whole source"
    )
    category: Name | None = Field(default=None, description="the source's category, when no lead names it yet")
    period: str | None = Field(default=None, pattern=r"^\d{4}-\d{2}$", description="a calendar month, YYYY-MM")
    start: date | None = Field(default=None, description="first day (with end, instead of period)")
    end: date | None = Field(default=None, description="last day, inclusive")
    amount: Decimal = Field(ge=0, le=Decimal("1e13"), decimal_places=4)
    currency: str = Field(pattern=r"^[A-Z]{3}$", description="ISO 4217 code, e.g. USD, JPY")
    note: Annotated[str, StringConstraints(max_length=2000)] | None = None

    @model_validator(mode="after")
    def _one_period(self) -> CostIn:
        if self.period is not None:
            if self.start is not None or self.end is not None:
                raise ValueError("give period (YYYY-MM) or start and end, not both")
            try:
                whole = month(self.period)
            except ValueError as exc:
                raise ValueError(str(exc)) from None
            self.start, self.end = whole.start.date(), whole.end.date() - timedelta(days=1)
        if self.start is None or self.end is None:
            raise ValueError("give period (YYYY-MM), or start and end (YYYY-MM-DD)")
        if self.end < self.start:
            raise ValueError(f"end {self.end} is before start {self.start}")
        return self

    def facts(self) -> CostFacts:
        assert self.start is not None and self.end is not None  # the validator set both
        return CostFacts(
            self.source, self.category, self.campaign, self.start, self.end, self.amount, self.currency, self.note
        )


class CostsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    costs: list[CostIn] = Field(min_length=1, max_length=MAX_ROWS)


def _out(cost_id: int, cost: CostFacts) -> dict[str, Any]:
    return {
        "id": cost_id,
        "source": cost.source,
        "campaign": cost.campaign,
        "category": cost.category,
        "start": cost.start,
        "end": cost.end,
        "amount": cost.amount,
        "currency": cost.currency,
        "note": cost.note,
    }


async def _sources(state: State) -> CompiledSources:
    return (await state.current_playbook()).compiled.sources


def _folded(rows: list[CostFacts], sources: CompiledSources) -> tuple[list[CostFacts], dict[str, str]]:
    """The rows with their sources as leads' original sources name them, and what was renamed (the answer
    shows it, so a marketer sees "LinkedIn Ads" went to linkedin)."""
    folded, renamed = [], {}
    for row in rows:
        source = sources.canonical(row.source)[0]
        if source != row.source:
            renamed[row.source] = source
        folded.append(replace(row, source=source))
    return folded, renamed


async def _store(session: Session, state: State, rows: list[CostFacts]) -> dict[str, Any]:
    folded, renamed = _folded(rows, await _sources(state))
    stored = await costs.put_costs(session, folded)
    return {"stored": stored} | ({"folded": renamed} if renamed else {})


@router.put("/v1/costs", responses=BODY_ERRORS)
async def put_costs(body: CostsIn, session: Session, state: State) -> dict[str, Any]:
    """Create or replace cost rows (all or nothing). Sources are folded through the source map; `folded`
    says which were renamed."""
    return await _store(session, state, [c.facts() for c in body.costs])


def _parse_csv(text: str) -> tuple[list[CostFacts], list[dict[str, Any]]]:
    reader = csv.DictReader(io.StringIO(text))
    missing = {"source", "amount", "currency"} - set(reader.fieldnames or [])
    if missing:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            f"the CSV header lacks {', '.join(sorted(missing))}; columns: {', '.join(CSV_COLUMNS)}",
        )
    unknown = set(reader.fieldnames or []) - set(CSV_COLUMNS)
    if unknown:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            f"unknown CSV columns {', '.join(sorted(unknown))}; columns: {', '.join(CSV_COLUMNS)}",
        )
    parsed, errors = [], []
    for row in reader:
        if reader.line_num > MAX_ROWS + 1:
            raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, f"at most {MAX_ROWS} cost rows per upload")
        values = {key: value for key, value in row.items() if key is not None and value not in (None, "")}
        if None in row:
            errors.append({"line": reader.line_num, "message": "more values than header columns"})
            continue
        try:
            parsed.append(CostIn.model_validate(values).facts())
        except ValidationError as exc:
            message = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'row'}: {e['msg']}" for e in exc.errors())
            errors.append({"line": reader.line_num, "message": message})
    if not parsed and not errors:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "the CSV has a header but no cost rows")
    return parsed, errors


@router.put(
    "/v1/costs.csv",
    responses=BODY_ERRORS,
    openapi_extra={"requestBody": {"content": {"text/csv": {"schema": {"type": "string"}}}, "required": True}},
)
async def put_costs_csv(request: Request, session: Session, state: State) -> Any:
    """Upload costs as CSV (header: source, amount, currency, and period or start and end; optional campaign,
    category, note). Every bad row is listed with its line number and nothing is stored."""
    body = await request.body()
    if len(body) > MAX_CSV_BYTES:
        raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, f"at most {MAX_CSV_BYTES} bytes per upload")
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "the CSV must be UTF-8") from None
    try:
        parsed, errors = _parse_csv(text)
    except csv.Error as exc:  # a field over the csv module's limit, a NUL byte, ...
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, f"not a readable CSV: {exc}") from None
    if errors:
        summary = "; ".join(f"line {e['line']}: {e['message']}" for e in errors[:3])
        return JSONResponse(
            {"detail": f"{len(errors)} bad rows, nothing stored ({summary})", "errors": errors},
            status_code=status.HTTP_422_UNPROCESSABLE_CONTENT,
        )
    return await _store(session, state, parsed)


@router.get("/v1/costs", responses=AS_CSV)
@router.get("/v1/costs.csv", responses=AS_CSV)
async def list_costs(
    request: Request,
    session: Session,
    state: State,
    start: Annotated[QueryDay | None, Query(alias="from", description="costs overlapping this day or later")] = None,
    end: Annotated[QueryDay | None, Query(alias="to", description="costs overlapping this day or earlier")] = None,
    source: Annotated[str | None, Query(max_length=200)] = None,
    format: Annotated[str, Query(pattern="^(json|csv)$")] = "json",
) -> Any:
    if source is not None:
        source = (await _sources(state)).canonical(source)[0]
    items = [_out(i, c) for i, c in await costs.list_costs(session, start=start, end=end, source=source)]
    if format == "csv" or request.url.path.endswith(".csv"):
        return csv_response(items, "costs.csv")
    return {"items": items}


@router.delete("/v1/costs/{cost_id}", status_code=status.HTTP_204_NO_CONTENT, responses=documented(404))
async def delete_cost(cost_id: Annotated[int, Path(ge=1, le=2**62)], session: Session) -> Response:
    if not await costs.delete_cost(session, cost_id):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no cost {cost_id}")
    return Response(status_code=status.HTTP_204_NO_CONTENT)
