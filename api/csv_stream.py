"""CSV answers streamed row by row: an export of every lead never sits whole in memory.

Cells a spreadsheet would run as formulas (=, +, -, @, tab, CR) get a leading ``'`` (names, companies and
UTM values come from forms anyone can fill in).
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator, Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from fastapi.responses import StreamingResponse

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
CSV_CONTENT: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/csv": {"schema": {"type": "string"}}}, "description": "CSV, streamed"}
}


def cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, list | tuple):
        value = " ".join(str(v) for v in value)
    text = str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


async def csv_lines(rows: AsyncIterator[dict[str, Any]], columns: Sequence[str]) -> AsyncIterator[str]:
    """The header, then one line per row (columns not in a row are empty)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(columns)
    async for row in rows:
        writer.writerow([cell(row.get(column)) for column in columns])
        if buffer.tell() > 64 * 1024:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


def streamed_csv(rows: AsyncIterator[dict[str, Any]], columns: Sequence[str], filename: str) -> StreamingResponse:
    return StreamingResponse(
        csv_lines(rows, columns),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )
