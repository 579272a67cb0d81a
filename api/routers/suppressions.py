"""The suppression list for operators: list, add and export as CSV (marketers), lift (admin only: it resumes
mail to someone who unsubscribed, bounced or complained).

Entries added here are ``manual`` by default; ``unsubscribed``, ``hard_bounce`` and ``complaint`` may be
given when importing another system's list. ``erased`` entries come only from erasing a lead and cannot be
lifted: the person asked to be forgotten, and nobody can tell which address the hash stood for.
"""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Path, Query, Response, status
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, model_validator

from api.deps import Session, State
from api.errors import BODY_ERRORS, V1_ERRORS, ErrorOut, documented
from api.roles import allow
from rules.access import Role
from rules.addresses import address_problem
from store import suppressions
from store.suppressions import SuppressionEntry, SuppressionReason, SuppressionScope, normalize_domain

router = APIRouter(
    prefix="/v1/suppressions", tags=["suppressions"], dependencies=[allow(Role.marketer)], responses=V1_ERRORS
)
ERASED_CONFLICT: dict[int | str, dict[str, Any]] = {
    409: {"model": ErrorOut, "description": "an erased person's entry cannot be lifted"}
}
# A domain in A-labels (normalize_domain turns bücher.example into xn--bcher-kva.example first).
DOMAIN = re.compile(r"([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z0-9-]{2,63}")
CSV_COLUMNS = ("id", "scope", "address", "reason", "note", "lead_id", "created_at")
# A spreadsheet runs a cell starting with these as a formula (CSV injection): such cells get a leading '.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


class SuppressionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    address: str | None = Field(default=None, max_length=320, description="an email address")
    domain: str | None = Field(default=None, max_length=253, description="a whole domain (example.com)")
    reason: Literal["manual", "unsubscribed", "hard_bounce", "complaint"] = "manual"
    note: str | None = Field(default=None, max_length=500)

    @model_validator(mode="after")
    def _one_target(self) -> SuppressionIn:
        if (self.address is None) == (self.domain is None):
            raise ValueError("give either address or domain")
        if self.address is not None and (problem := address_problem(self.address, smtputf8=True)):
            raise ValueError(f"address: {problem}")
        if self.domain is not None:
            try:
                self.domain = normalize_domain(self.domain)
            except UnicodeError as exc:
                raise ValueError(f"domain: not a domain name ({exc})") from exc
            if not DOMAIN.fullmatch(self.domain):
                raise ValueError("domain: not a domain name (like example.com)")
        return self


class SuppressionPage(BaseModel):
    items: list[SuppressionEntry]
    total: int
    limit: int
    offset: int


Reason = Annotated[SuppressionReason | None, Query(description="only entries with this reason")]
Scope = Annotated[SuppressionScope | None, Query(description="address or domain")]
Contains = Annotated[str | None, Query(max_length=320, description="address or domain containing this text")]


@router.get("", response_model=SuppressionPage)
async def list_suppressions(
    session: Session,
    reason: Reason = None,
    scope: Scope = None,
    q: Contains = None,
    limit: int = Query(default=100, ge=1, le=1000),
    offset: int = Query(default=0, ge=0, le=1_000_000_000),
) -> SuppressionPage:
    """Newest first. Erased people show as entries without an address (a keyed hash only)."""
    items, total = await suppressions.list_entries(
        session, reason=reason, scope=scope, contains=q, limit=limit, offset=offset
    )
    return SuppressionPage(items=items, total=total, limit=limit, offset=offset)


@router.post(
    "",
    response_model=SuppressionEntry,
    status_code=status.HTTP_201_CREATED,
    responses=BODY_ERRORS | {200: {"model": SuppressionEntry, "description": "already on the list"}},
)
async def add_suppression(body: SuppressionIn, state: State, session: Session) -> Any:
    """Suppress an address or a whole domain at once (every send checks the list). An address or domain
    already on the list answers 200 with its entry, reason unchanged."""
    scope: SuppressionScope = "domain" if body.domain is not None else "address"
    value = body.domain if body.domain is not None else body.address
    assert value is not None
    entry, created = await suppressions.add(
        session,
        value=value,
        scope=scope,
        reason=body.reason,
        key=state.id_key,
        now=datetime.now(UTC),
        note=body.note,
    )
    return entry if created else JSONResponse(jsonable_encoder(entry), status.HTTP_200_OK)


@router.delete(
    "/{entry_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=documented(404) | ERASED_CONFLICT,
    dependencies=[allow(Role.admin)],
)
async def remove_suppression(entry_id: Annotated[int, Path(ge=1, le=2**63 - 1)], session: Session) -> Response:
    """Lift an entry: mail to that address or domain may go again (consent still decides nurture)."""
    entry = await suppressions.get(session, entry_id)
    if entry is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no suppression entry {entry_id}")
    if entry.reason == suppressions.ERASED:
        raise HTTPException(status.HTTP_409_CONFLICT, "an erased person stays suppressed: their entry cannot be lifted")
    await suppressions.remove(session, entry_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


def _cell(value: object) -> str:
    text = "" if value is None else value.isoformat() if isinstance(value, datetime) else str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


@router.get(".csv", response_class=Response, responses={200: {"content": {"text/csv": {}}}})
async def export_suppressions(session: Session, reason: Reason = None, scope: Scope = None) -> Response:
    """The whole list (or one reason/scope) as CSV, for another sending system or an audit."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    offset, page = 0, 1000
    while True:
        items, _ = await suppressions.list_entries(session, reason=reason, scope=scope, limit=page, offset=offset)
        writer.writerows([_cell(getattr(item, column)) for column in CSV_COLUMNS] for item in items)
        if len(items) < page:
            break
        offset += page
    return Response(
        out.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="suppressions.csv"'},
    )
