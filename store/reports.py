"""Read-only aggregates for managers: the funnel by stage and where leads come from."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from store.models import FollowUpRow, Lead


async def funnel(session: AsyncSession) -> dict[str, int]:
    rows = await session.execute(select(Lead.stage, func.count()).group_by(Lead.stage))
    return {stage: count for stage, count in rows.all()}


async def sources(session: AsyncSession) -> list[dict[str, Any]]:
    """Leads per source with how many reached SQL or later (stage conversion by source)."""
    qualified = func.sum(func.cast(Lead.stage.in_(("sql", "opportunity", "customer")), type_=Lead.score.type))
    stmt = (
        select(func.coalesce(Lead.source, "unknown"), func.count(), qualified)
        .group_by(func.coalesce(Lead.source, "unknown"))
        .order_by(func.count().desc())
    )
    return [{"source": s, "leads": n, "sql_or_later": int(q or 0)} for s, n, q in (await session.execute(stmt)).all()]


async def followup_counts(session: AsyncSession) -> dict[str, int]:
    rows = await session.execute(select(FollowUpRow.status, func.count()).group_by(FollowUpRow.status))
    return {status: count for status, count in rows.all()}
