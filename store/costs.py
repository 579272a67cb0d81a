"""Source costs: what each source (or campaign) cost per period. The API is their one writer
(PUT /v1/costs, CSV upload); the reports read them to compute CPL, cost per SQL and CAC."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from rules.report_facts import CostFacts
from store.db import rowcount
from store.models import SourceCost

_KEY = ["source", "campaign", "period_start", "period_end", "currency"]


def _row(cost: CostFacts, now: datetime) -> dict[str, Any]:
    return {
        "source": cost.source,
        "campaign": cost.campaign,
        "category": cost.category,
        "period_start": cost.start,
        "period_end": cost.end,
        "amount": cost.amount,
        "currency": cost.currency,
        "note": cost.note,
        "updated_at": now,
    }


async def put_costs(session: AsyncSession, costs: Sequence[CostFacts], *, now: datetime | None = None) -> int:
    """Create or replace costs, keyed by source, campaign, period and currency; all or nothing."""
    now = now or datetime.now(UTC)
    insert = sqlite.insert if session.get_bind().dialect.name == "sqlite" else postgresql.insert
    try:
        for start in range(0, len(costs), 500):
            stmt = insert(SourceCost).values([_row(c, now) for c in costs[start : start + 500]])
            stmt = stmt.on_conflict_do_update(
                index_elements=_KEY,
                set_={name: stmt.excluded[name] for name in ("amount", "category", "note", "updated_at")},
            )
            await session.execute(stmt)
    except BaseException:
        await session.rollback()
        raise
    await session.commit()
    return len(costs)


def _facts(row: SourceCost) -> CostFacts:
    return CostFacts(
        row.source, row.category, row.campaign, row.period_start, row.period_end, row.amount, row.currency, row.note
    )


async def list_costs(
    session: AsyncSession, *, start: date | None = None, end: date | None = None, source: str | None = None
) -> list[tuple[int, CostFacts]]:
    """Costs overlapping [start, end] (both inclusive; either may be open), oldest period first."""
    stmt = select(SourceCost).order_by(SourceCost.period_start, SourceCost.source, SourceCost.campaign)
    if start is not None:
        stmt = stmt.where(SourceCost.period_end >= start)
    if end is not None:
        stmt = stmt.where(SourceCost.period_start <= end)
    if source is not None:
        stmt = stmt.where(SourceCost.source == source)
    rows = (await session.execute(stmt)).scalars().all()
    return [(row.id, _facts(row)) for row in rows]


async def delete_cost(session: AsyncSession, cost_id: int) -> bool:
    result = await session.execute(delete(SourceCost).where(SourceCost.id == cost_id))
    await session.commit()
    return bool(rowcount(result))
