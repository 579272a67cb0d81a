"""The email report: sends, unique opens and clicks, unsubscribes, bounces and complaints per template and
A/B variant (JSON, or CSV for a spreadsheet)."""

from __future__ import annotations

import csv
import io
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import Response

from api.deps import Session
from api.errors import V1_ERRORS
from api.roles import allow
from api.schemas import TIME_RANGE, Time
from rules.access import Role
from rules.engagement import REPORT_COUNTS, report_rows
from store.email_report import email_counts

router = APIRouter(
    prefix="/v1/reports", tags=["reports"], dependencies=[allow(Role.manager, Role.marketer)], responses=V1_ERRORS
)
Since = Annotated[Time | None, Query(description=f"sends at or after this time ({TIME_RANGE})")]
Until = Annotated[Time | None, Query(description=f"sends before this time ({TIME_RANGE}); none when not after since")]
Kind = Annotated[str, Query(pattern=r"^[a-z][a-z0-9_]{0,63}$", description="email kind (nurture, rep_new_lead...)")]
COLUMNS = ["template", "variant", *REPORT_COUNTS, "open_rate", "click_rate", "unsubscribe_rate", "hard_bounce_rate",
           "complaint_rate"]  # fmt: skip


async def _rows(session: Session, kind: str, since: datetime | None, until: datetime | None) -> list[dict[str, Any]]:
    return report_rows(await email_counts(session, kind=kind, since=since, until=until))


@router.get("/emails")
async def email_report(session: Session, since: Since = None, until: Until = None, kind: Kind = "nurture") -> dict:
    """Per template and variant. Unsubscribes count against the last mail the person got before leaving."""
    rows = await _rows(session, kind, since, until)
    return {"kind": kind, "since": since, "until": until, "rows": rows}


@router.get("/emails.csv", response_class=Response)
async def email_report_csv(
    session: Session, since: Since = None, until: Until = None, kind: Kind = "nurture"
) -> Response:
    """The same rows as CSV."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(await _rows(session, kind, since, until))
    headers = {"Content-Disposition": 'attachment; filename="email-report.csv"'}
    return Response(out.getvalue(), media_type="text/csv; charset=utf-8", headers=headers)
