"""Read-model queries behind playbook migrations: which leads run an older version, and a lead's events.

The workflows are the source of truth (each lead answers for itself at the switch); the read model only
finds the candidates, page by page in lead id order, so a migration over many leads never holds them all.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from rules.model import TrackedEvent
from store.models import Lead, LeadKey, Touchpoint

# Events replayed per lead when a migration recomputes its score (the newest this many).
MAX_EVENTS_REPLAYED = 2000


def _not_on(target_version: str):  # type: ignore[no-untyped-def]
    not_erased = ~select(LeadKey.lead_id).where(LeadKey.lead_id == Lead.id, LeadKey.erased_at.is_not(None)).exists()
    return (or_(Lead.playbook_version.is_(None), Lead.playbook_version != target_version), not_erased)


async def leads_not_on(session: AsyncSession, target_version: str, after: str | None, limit: int) -> list[str]:
    """Ids of leads (not erased) whose projected version is not ``target_version``, after ``after``."""
    stmt = select(Lead.id).where(*_not_on(target_version)).order_by(Lead.id).limit(limit)
    if after is not None:
        stmt = stmt.where(Lead.id > after)
    return list((await session.scalars(stmt)).all())


async def versions_in_flight(session: AsyncSession, target_version: str) -> dict[str, int]:
    """Playbook version -> how many leads (not erased) run it, for every version but the target."""
    rows = await session.execute(
        select(Lead.playbook_version, func.count()).where(*_not_on(target_version)).group_by(Lead.playbook_version)
    )
    return {version or "": count for version, count in rows.all()}


def _utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


async def lead_events(session: AsyncSession, lead_id: str, limit: int = MAX_EVENTS_REPLAYED) -> list[TrackedEvent]:
    """A lead's behavioural events (rep touches left out), oldest first, at most the newest ``limit``."""
    rows = await session.execute(
        select(Touchpoint.event_id, Touchpoint.type, Touchpoint.occurred_at, Touchpoint.url, Touchpoint.name)
        .add_columns(Touchpoint.properties)
        .where(Touchpoint.lead_id == lead_id, ~Touchpoint.type.startswith("touch."))
        .order_by(Touchpoint.occurred_at.desc(), Touchpoint.id.desc())
        .limit(limit)
    )
    events = [
        TrackedEvent(event_id, type_, _utc(at), url, name, properties or {})
        for event_id, type_, at, url, name, properties in rows.all()
    ]
    return events[::-1]
