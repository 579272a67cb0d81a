"""Read-only aggregates for managers: the funnel by stage and where leads come from."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import case, func, literal_column, select
from sqlalchemy.ext.asyncio import AsyncSession

from store.models import Lead, Touchpoint


async def funnel(session: AsyncSession) -> dict[str, int]:
    rows = await session.execute(select(Lead.stage, func.count()).group_by(Lead.stage))
    return {stage: count for stage, count in rows.all()}


async def sources(session: AsyncSession, qualified_stages: Sequence[str]) -> list[dict[str, Any]]:
    """Leads per source, and how many are in ``qualified_stages`` (the playbook says which: conversion
    by source)."""
    # The constant is inlined: with a bound parameter PostgreSQL sees SELECT and GROUP BY as two expressions.
    source = func.coalesce(Lead.source, literal_column("'unknown'")).label("source")
    qualified = func.sum(case((Lead.stage.in_(list(qualified_stages)), 1), else_=0))
    stmt = select(source, func.count(), qualified).group_by(source).order_by(func.count().desc(), source)
    rows = (await session.execute(stmt)).all()
    return [{"source": s, "leads": n, "qualified": int(q or 0)} for s, n, q in rows]


async def lead_histories(session: AsyncSession, *, since: datetime, limit: int) -> list[dict[str, Any]]:
    """Leads created since ``since`` (newest first, at most ``limit``) with their touchpoints in order."""
    leads = (
        await session.execute(
            select(Lead.id, Lead.attributes, Lead.created_at)
            .where(Lead.created_at >= since)
            .order_by(Lead.created_at.desc())
            .limit(limit)
        )
    ).all()
    by_id: dict[str, dict[str, Any]] = {
        lead_id: {"lead_id": lead_id, "attributes": attributes or {}, "created_at": created_at, "touchpoints": []}
        for lead_id, attributes, created_at in leads
    }
    ids = list(by_id)
    for chunk in (ids[i : i + 500] for i in range(0, len(ids), 500)):
        rows = await session.execute(
            select(
                Touchpoint.lead_id,
                Touchpoint.event_id,
                Touchpoint.type,
                Touchpoint.url,
                Touchpoint.name,
                Touchpoint.properties,
                Touchpoint.occurred_at,
            )
            .where(Touchpoint.lead_id.in_(chunk))
            .order_by(Touchpoint.occurred_at, Touchpoint.id)
        )
        for lead_id, event_id, type_, url, name, properties, occurred_at in rows.all():
            by_id[lead_id]["touchpoints"].append(
                {
                    "event_id": event_id,
                    "type": type_,
                    "url": url,
                    "name": name,
                    "properties": properties or {},
                    "at": occurred_at,
                }
            )
    return list(by_id.values())
