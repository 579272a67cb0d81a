"""Loads the facts the reports compute on (``rules.report_facts``) from the read model.

Reports need each lead's whole stage path and touches, not just counts, so the queries fetch compact
rows for the leads a period concerns (created in it, or moving or winning in it) and the arithmetic
happens in ``rules/``, the same on SQLite and PostgreSQL.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

from sqlalchemy import ColumnElement, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from rules.report_facts import UNKNOWN, CostFacts, FollowUpFacts, LeadFacts, TouchFacts
from rules.report_outcomes import OutcomeFacts
from store import costs
from store.models import FollowUpRow, Lead, Rep, StageChangeRow, Touchpoint


def _concerned(start: datetime, end: datetime) -> ColumnElement[bool]:
    """Leads created, moved (a stage change) or won in [start, end)."""
    moved = select(StageChangeRow.lead_id).where(StageChangeRow.at >= start, StageChangeRow.at < end)
    return or_(
        (Lead.created_at >= start) & (Lead.created_at < end),
        (Lead.won_at >= start) & (Lead.won_at < end),
        Lead.id.in_(moved),
    )


async def lead_facts(session: AsyncSession, start: datetime, end: datetime) -> list[LeadFacts]:
    """Leads created in [start, end), or that changed stage or were won then, each with its stage path
    and first touch. A lead's source is its original source (the raw ``source`` for leads projected
    before sources were tracked), else "unknown"."""
    concerned = _concerned(start, end)
    source = func.coalesce(Lead.original_source, Lead.source)
    stmt = select(
        Lead.id,
        Lead.created_at,
        source,
        Lead.source_category,
        Lead.utm_campaign,
        Lead.stage,
        Lead.won_at,
        Lead.won_amount,
        Lead.won_currency,
    ).where(concerned)
    facts: dict[str, LeadFacts] = {}
    for lead_id, created_at, lead_source, category, campaign, stage, won_at, amount, currency in (
        await session.execute(stmt)
    ).all():
        facts[lead_id] = LeadFacts(
            lead_id,
            created_at,
            (lead_source or "").strip() or UNKNOWN,
            (category or "").strip() or UNKNOWN,
            campaign,
            stage,
            [],
            won_at,
            amount,
            currency,
        )
    # The same leads as a subquery: one round trip each for their stage changes and first touches.
    chosen = select(Lead.id).where(concerned)
    changes: dict[str, list[tuple[int, datetime, str, str]]] = {lead_id: [] for lead_id in facts}
    rows = await session.execute(
        select(
            StageChangeRow.lead_id,
            StageChangeRow.seq,
            StageChangeRow.at,
            StageChangeRow.from_stage,
            StageChangeRow.to_stage,
        ).where(StageChangeRow.lead_id.in_(chosen))
    )
    for lead_id, seq, at, from_stage, to_stage in rows.all():
        if lead_id in changes:  # a lead created between the two queries is left for the next report
            changes[lead_id].append((seq, at, from_stage, to_stage))
    first_touches = await session.execute(
        select(Touchpoint.lead_id, func.min(Touchpoint.occurred_at))
        .where(Touchpoint.lead_id.in_(chosen))
        .group_by(Touchpoint.lead_id)
    )
    for lead_id, first_at in first_touches.all():
        if lead_id in facts:
            facts[lead_id].first_touch_at = first_at
    for lead_id, lead in facts.items():
        ordered = sorted(changes[lead_id])
        initial = ordered[0][2] if ordered else lead.stage
        lead.path = [(lead.created_at, initial)] + [(at, to_stage) for _, at, _, to_stage in ordered]
    return list(facts.values())


async def touch_facts(session: AsyncSession, start: datetime, end: datetime) -> list[TouchFacts]:
    """The touches that carry a source (an email open without one credits nobody) of the leads
    ``lead_facts(start, end)`` returns, in one query."""
    rows = await session.execute(
        select(Touchpoint.lead_id, Touchpoint.occurred_at, Touchpoint.source, Touchpoint.channel, Touchpoint.campaign)
        .where(Touchpoint.lead_id.in_(select(Lead.id).where(_concerned(start, end))), Touchpoint.source.is_not(None))
        .order_by(Touchpoint.lead_id, Touchpoint.occurred_at, Touchpoint.id)
    )
    categories = await source_categories(session)
    return [
        TouchFacts(lead_id, at, source, categories.get(source, UNKNOWN), channel, campaign)
        for lead_id, at, source, channel, campaign in rows.all()
        if source is not None  # the query's own filter, said again for the type checker
    ]


async def source_categories(session: AsyncSession) -> dict[str, str]:
    """Each original source's category as the leads record it (the source map decides it on the way in)."""
    rows = await session.execute(
        select(Lead.original_source, Lead.source_category)
        .where(Lead.original_source.is_not(None), Lead.source_category.is_not(None))
        .distinct()
    )
    return {source: category for source, category in rows.all() if source is not None and category is not None}


async def followup_facts(session: AsyncSession, start: datetime, end: datetime) -> list[FollowUpFacts]:
    rows = await session.execute(
        select(
            FollowUpRow.team_key,
            FollowUpRow.rep_id,
            Rep.name,
            FollowUpRow.kind,
            FollowUpRow.status,
            FollowUpRow.started_at,
            FollowUpRow.due_at,
            FollowUpRow.met_at,
            FollowUpRow.escalated_at,
        )
        .outerjoin(Rep, Rep.id == FollowUpRow.rep_id)
        .where(FollowUpRow.started_at >= start, FollowUpRow.started_at < end)
    )
    return [FollowUpFacts(*row) for row in rows.all()]


async def cost_facts(session: AsyncSession, start: datetime, end: datetime) -> list[CostFacts]:
    last_day: date = (end - timedelta(days=1)).date()
    return [cost for _, cost in await costs.list_costs(session, start=start.date(), end=last_day)]


async def outcome_facts(session: AsyncSession, start: datetime, end: datetime) -> list[OutcomeFacts]:
    """Leads sales closed between ``start`` and ``end``: won (amount, currency), lost or disqualified (reason)."""
    reason = func.coalesce(Lead.lost_reason, Lead.disqualify_reason)
    rows = await session.execute(
        select(Lead.outcome, Lead.outcome_at, Lead.owner_team, reason, Lead.won_amount, Lead.won_currency).where(
            Lead.outcome.is_not(None), Lead.outcome_at >= start, Lead.outcome_at < end
        )
    )
    return [
        OutcomeFacts(kind, at, team, why, amount, currency)
        for kind, at, team, why, amount, currency in rows.all()
        if kind is not None and at is not None  # the query asks for both: this tells the type checker
    ]
