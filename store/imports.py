"""Store side of CSV imports: the import's row (options, resume point, counts), the first line that named
each lead, and the report of rejected, merged and corrected rows. The importer is the one writer."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from store.models import ImportIssue, ImportLead, ImportRun, Lead
from store.repo import _insert, _insert_ignoring, _row_dict, _writing

COUNTERS = ("rows_read", "created", "merged_existing", "merged_duplicate", "rejected", "warnings")


@dataclass(frozen=True)
class FirstSeen:
    line: int
    existed: bool  # the lead was in the store before this import named it


def _now() -> datetime:
    return datetime.now(UTC)


async def get_import(session: AsyncSession, import_id: str) -> dict[str, Any] | None:
    row = (await session.execute(select(ImportRun).where(ImportRun.id == import_id))).scalar_one_or_none()
    if row is None:
        return None
    return {column.name: getattr(row, column.name) for column in ImportRun.__table__.columns}


async def create_import(session: AsyncSession, values: Mapping[str, Any]) -> bool:
    """Insert a new import (status pending); False when one with this id exists already."""
    now = _now()
    row = {"status": "pending", "column_map": {}, "lines_done": 1, "bytes_done": 0, "created_at": now,
           "updated_at": now} | {counter: 0 for counter in COUNTERS} | dict(values)  # fmt: skip
    async with _writing(session):
        # RETURNING, not rowcount: psycopg reports -1 for INSERT ... ON CONFLICT DO NOTHING, so on PostgreSQL a
        # second call for the same id looked as if it had created the import.
        result = await session.execute(
            _insert(session, ImportRun).values(row).on_conflict_do_nothing().returning(ImportRun.id)
        )
        return result.first() is not None


async def set_status(session: AsyncSession, import_id: str, status: str, error: str | None = None) -> None:
    now = _now()
    values: dict[str, Any] = {"status": status, "error": error, "updated_at": now}
    if status == "done":
        values["finished_at"] = now
    async with _writing(session):
        await session.execute(update(ImportRun).where(ImportRun.id == import_id).values(values))


async def first_seen(session: AsyncSession, import_id: str, lines: Mapping[str, int]) -> dict[str, FirstSeen]:
    """For each lead id (with the first line of this chunk that names it): the first line of the whole file
    that named it. New ids are recorded, with whether the store already had the lead, before delivery."""
    ids = list(lines)
    known = await _first_seen_rows(session, import_id, ids)
    new = [lead_id for lead_id in ids if lead_id not in known]
    if new:
        existing = set((await session.execute(select(Lead.id).where(Lead.id.in_(new)))).scalars())
        rows = [{"import_id": import_id, "lead_id": lead_id, "first_line": lines[lead_id],
                 "existed": lead_id in existing} for lead_id in new]  # fmt: skip
        async with _writing(session):
            await _insert_ignoring(session, ImportLead, rows, ["import_id", "lead_id"])
        known |= await _first_seen_rows(session, import_id, new)
    return known


async def _first_seen_rows(session: AsyncSession, import_id: str, ids: Sequence[str]) -> dict[str, FirstSeen]:
    if not ids:
        return {}
    stmt = select(ImportLead.lead_id, ImportLead.first_line, ImportLead.existed).where(
        ImportLead.import_id == import_id, ImportLead.lead_id.in_(ids)
    )
    return {row.lead_id: FirstSeen(row.first_line, row.existed) for row in await session.execute(stmt)}


async def finish_chunk(
    session: AsyncSession,
    import_id: str,
    *,
    lines_done: int,
    bytes_done: int,
    issues: Sequence[dict[str, Any]],
    counts: Mapping[str, int],
) -> None:
    """One transaction: the chunk's report lines, its counts and the new resume point. Guarded by the old
    resume point, so a chunk processed twice (a second runner) is counted once."""
    async with _writing(session):
        await _insert_ignoring(
            session, ImportIssue, [dict(issue, import_id=import_id) for issue in issues], ["import_id", "line"]
        )
        values: dict[str, Any] = {
            counter: getattr(ImportRun, counter) + counts.get(counter, 0) for counter in COUNTERS
        } | {"lines_done": lines_done, "bytes_done": bytes_done, "updated_at": _now()}
        await session.execute(
            update(ImportRun).where(ImportRun.id == import_id, ImportRun.lines_done < lines_done).values(values)
        )


async def list_issues(
    session: AsyncSession, import_id: str, *, after_line: int = 0, limit: int = 1000
) -> list[dict[str, Any]]:
    stmt = (
        select(ImportIssue.line, ImportIssue.outcome, ImportIssue.reason, ImportIssue.email, ImportIssue.lead_id)
        .where(ImportIssue.import_id == import_id, ImportIssue.line > after_line)
        .order_by(ImportIssue.line)
        .limit(limit)
    )
    return [_row_dict(row) for row in await session.execute(stmt)]
