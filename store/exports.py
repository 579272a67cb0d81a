"""Row sources for the CSV exports (API and CLI): every lead or follow-up in a scope, a page per short
session, so an export of a large store neither holds a transaction open nor builds a list in memory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from store import repo
from store.models import FollowUpRow, Lead
from store.scope import Scope

PAGE = 1000
LEAD_COLUMNS = (
    "id", "email", "first_name", "last_name", "company", "title", "company_size", "industry", "country",
    "stage", "score", "grade", "owner_rep_id", "owner_team", "sla_status", "sla_due_at", "original_source",
    "latest_source", "source_category", "utm_source", "utm_medium", "utm_campaign", "won_amount", "won_currency",
    "won_at", "lost_reason", "playbook_version", "created_at", "updated_at",
)  # fmt: skip
FOLLOWUP_COLUMNS = (
    "key", "lead_id", "company", "email", "first_name", "last_name", "rep_id", "rep_name", "team_key", "kind",
    "policy_id", "status", "started_at", "due_at", "overdue_by_seconds", "reminded_at", "escalated_at", "met_at",
)  # fmt: skip


def _leads_query(scope: Scope, stage: str | None, since: datetime | None) -> Any:
    query = select(*(getattr(Lead, c) for c in LEAD_COLUMNS))
    query = query.where(*scope.leads())
    if stage is not None:
        query = query.where(Lead.stage == stage)
    if since is not None:
        query = query.where(Lead.created_at >= since)
    return query


async def count_leads(
    session: AsyncSession, scope: Scope, stage: str | None = None, since: datetime | None = None
) -> int:
    inner = _leads_query(scope, stage, since).subquery()
    return await session.scalar(select(func.count()).select_from(inner)) or 0


async def iter_leads(
    sessions: async_sessionmaker[AsyncSession], scope: Scope, stage: str | None = None, since: datetime | None = None
) -> AsyncIterator[dict[str, Any]]:
    after = ""
    while True:
        async with sessions() as session:
            rows = (
                await session.execute(
                    _leads_query(scope, stage, since).where(Lead.id > after).order_by(Lead.id).limit(PAGE)
                )
            ).all()
        for row in rows:
            yield dict(row._mapping)
        if len(rows) < PAGE:
            return
        after = rows[-1].id


async def iter_followups(
    sessions: async_sessionmaker[AsyncSession], scope: Scope, status: str | None = None
) -> AsyncIterator[dict[str, Any]]:
    """Follow-ups by due time, as the queue shows them (offset pages: the queue's order is by due time)."""
    offset = 0
    while True:
        async with sessions() as session:
            rows = await repo.list_followups(session, status=status, limit=PAGE, offset=offset, scope=scope)
        for row in rows:
            yield row
        if len(rows) < PAGE:
            return
        offset += PAGE


async def count_followups(session: AsyncSession, scope: Scope, status: str | None = None) -> int:
    query = select(func.count()).select_from(FollowUpRow)
    if status is not None:
        query = query.where(FollowUpRow.status == status)
    query = query.where(*scope.followups())
    return await session.scalar(query) or 0
