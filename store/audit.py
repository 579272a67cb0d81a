"""The audit log in the store: one writer (api/audit.py's middleware), read by admins (GET /v1/audit).

Entries are already stripped of secrets and masked when they get here; this module only keeps and reads them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Select, Table, func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from store.access_models import AuditRow
from store.repo import _writing

EXPORT_PAGE = 1000
_AUDIT_INSERT = insert(cast(Table, AuditRow.__table__))


@dataclass(frozen=True)
class AuditEntry:
    at: datetime
    actor_kind: str
    actor_id: str
    actor_role: str
    method: str
    route: str
    target: str | None
    summary: str
    status: int
    client_ip: str | None
    details: dict[str, Any] = field(default_factory=dict)


async def record(session: AsyncSession, entry: AuditEntry) -> None:
    # A Core insert: the ORM's unit of work (an object, a flush) was most of what recording a write cost.
    async with _writing(session):
        await session.execute(_AUDIT_INSERT, asdict(entry))


@dataclass(frozen=True)
class AuditFilter:
    actor: str | None = None  # an actor id (ak_..., us_..., admin-key)
    route: str | None = None  # a substring of "METHOD /template"
    target: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    status_min: int | None = None


def _filtered(query: Select[Any], f: AuditFilter) -> Select[Any]:
    if f.actor:
        query = query.where(AuditRow.actor_id == f.actor)
    if f.route:
        query = query.where((AuditRow.method + " " + AuditRow.route).contains(f.route, autoescape=True))
    if f.target:
        query = query.where(AuditRow.target.contains(f.target, autoescape=True))
    if f.since:
        query = query.where(AuditRow.at >= f.since)
    if f.until:
        query = query.where(AuditRow.at < f.until)
    if f.status_min:
        query = query.where(AuditRow.status >= f.status_min)
    return query


COLUMNS = ("id", *AuditEntry.__dataclass_fields__)


def _as_dict(row: AuditRow) -> dict[str, Any]:
    return {name: getattr(row, name) for name in COLUMNS}


async def list_entries(session: AsyncSession, f: AuditFilter, *, limit: int, offset: int) -> tuple[int, list[dict]]:
    """Newest first, with the total that matches (for paging)."""
    total = await session.scalar(_filtered(select(func.count()).select_from(AuditRow), f)) or 0
    rows = await session.scalars(
        _filtered(select(AuditRow), f).order_by(AuditRow.id.desc()).limit(limit).offset(offset)
    )
    return total, [_as_dict(r) for r in rows]


async def iter_entries(sessions: async_sessionmaker[AsyncSession], f: AuditFilter) -> AsyncIterator[dict[str, Any]]:
    """Every matching entry, oldest first, a page per short session (an export never holds a transaction)."""
    after = 0
    while True:
        async with sessions() as session:
            rows = list(
                await session.scalars(
                    _filtered(select(AuditRow), f).where(AuditRow.id > after).order_by(AuditRow.id).limit(EXPORT_PAGE)
                )
            )
        for row in rows:
            yield _as_dict(row)
        if len(rows) < EXPORT_PAGE:
            return
        after = rows[-1].id
