"""What every report endpoint shares: the period query (month or from/to, split by month or not) and
the CSV answer, so a dashboard reads any report the same way."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from fastapi import HTTPException, Query, status
from fastapi.responses import Response
from pydantic import BeforeValidator

from rules.report_facts import Period, month, months_between, span

_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
MAX_DAYS = 3700
# Calendar arithmetic (the month before, the day after) must stay inside what datetime holds.
MIN_YEAR, MAX_YEAR = 1900, 9998  # ten years and a bit: enough for any dashboard, bounded for the store


def _iso_day(value: Any) -> Any:
    # A query value is text; pydantic would read "0" as seconds since 1970. Only YYYY-MM-DD is a day here.
    if isinstance(value, str) and not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        raise ValueError("write the day as YYYY-MM-DD")
    return value


# A day in a query string, YYYY-MM-DD exactly.
QueryDay = Annotated[date, BeforeValidator(_iso_day)]


@dataclass(frozen=True)
class PeriodQuery:
    month: str | None
    start: date | None
    end: date | None
    interval: Literal["all", "month"]

    def periods(self, today: date) -> list[Period]:
        """The periods asked for: no start means the 1st of the end's month, no end means today (this
        month so far when nothing is said)."""
        try:
            if self.month is not None:
                if self.start is not None or self.end is not None:
                    raise ValueError("give month, or from and to, not both")
                return [month(self.month)]
            end = self.end or max(today, self.start or today)
            start = self.start or end.replace(day=1)
            if start.year < MIN_YEAR or end.year > MAX_YEAR:
                raise ValueError(f"reports cover the years {MIN_YEAR} to {MAX_YEAR}")
            whole = span(start, end)
        except ValueError as exc:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from None
        if whole.days > MAX_DAYS:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, f"a report covers at most {MAX_DAYS} days")
        return months_between(start, end) if self.interval == "month" else [whole]


def period_query(
    month: Annotated[
        str | None, Query(pattern=r"^\d{4}-\d{2}$", description="one calendar month, YYYY-MM (instead of from/to)")
    ] = None,
    start: Annotated[
        QueryDay | None, Query(alias="from", description="first day, YYYY-MM-DD (default: the 1st of to's month)")
    ] = None,
    end: Annotated[QueryDay | None, Query(alias="to", description="last day, inclusive (default: today)")] = None,
    interval: Annotated[
        Literal["all", "month"], Query(description="all: one row set for the range; month: one per calendar month")
    ] = "all",
) -> PeriodQuery:
    return PeriodQuery(month, start, end, interval)


def today() -> date:
    return datetime.now(UTC).date()


def wants_csv(path: str, format: str) -> bool:
    return format == "csv" or path.endswith(".csv")


def _cell(value: Any) -> Any:
    if isinstance(value, str) and value[:1] in _FORMULA_STARTS:
        # Source and campaign names come from UTM tags anyone can type: never let a spreadsheet run them.
        return "'" + value
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, datetime | date):
        return value.isoformat()
    return "" if value is None else value


def csv_response(rows: Sequence[dict[str, Any]], filename: str) -> Response:
    """Rows as CSV, columns in the order they first appear (the JSON keys)."""
    columns: list[str] = []
    for row in rows:
        columns += [key for key in row if key not in columns]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({key: _cell(value) for key, value in row.items()})
    return Response(
        buffer.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )
