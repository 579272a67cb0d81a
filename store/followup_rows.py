"""The read model's side of follow-ups that end unmet (rules/followups.py decides which).

A lead owes one follow-up at a time: its projection writes the current one and cancels the lead's other open
rows (one a reassignment replaced, or one a worker before this rule dropped from the state without a word);
a late snapshot's follow-up that a later one already replaced is written cancelled too.
The open set is rules.followups' one definition, as a WHERE clause for every query that lists what is owed.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ColumnElement, and_, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from rules.followups import CANCELLED, OPEN_SLA_STATUSES, superseded
from rules.model import FollowUp
from store.db import rowcount
from store.models import FollowUpRow


def open_followups() -> ColumnElement[bool]:
    """Follow-ups somebody still owes: pending or overdue, and not touched (rules.followups.is_open)."""
    return and_(FollowUpRow.status.in_(OPEN_SLA_STATUSES), FollowUpRow.met_at.is_(None))


async def cancel_open_followups(session: AsyncSession, lead_id: str, now: datetime, keep: FollowUp | None) -> int:
    """Cancel the lead's open follow-ups but ``keep`` (the one its projection writes); how many ended."""
    rows = await session.execute(select(FollowUpRow.key).where(FollowUpRow.lead_id == lead_id, open_followups()))
    keys = superseded((key for (key,) in rows.all()), keep)
    if not keys:
        return 0
    result = await session.execute(
        update(FollowUpRow)
        .where(FollowUpRow.key.in_(keys), open_followups())
        .values(status=CANCELLED, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    return rowcount(result)


async def settle_late_followup(session: AsyncSession, lead_id: str, fu: FollowUp, now: datetime) -> None:
    """A late snapshot (its projection retried after a newer one landed) cannot move a follow-up back, but what
    it saw happen stays true: its reminder and escalation times fill in where the row has none (the breach
    counts in the KPI). Its follow-up is cancelled when one that started after it is already stored: the newer
    projection could not cancel a row that did not exist yet."""
    if fu.reminded_at is not None or fu.escalated_at is not None:
        await session.execute(
            update(FollowUpRow)
            .where(FollowUpRow.key == fu.key)
            .values(
                reminded_at=func.coalesce(FollowUpRow.reminded_at, fu.reminded_at),
                escalated_at=func.coalesce(FollowUpRow.escalated_at, fu.escalated_at),
            )
            .execution_options(synchronize_session=False)
        )
    later = (
        select(FollowUpRow.key).where(FollowUpRow.lead_id == lead_id, FollowUpRow.started_at > fu.started_at).exists()
    )
    await session.execute(
        update(FollowUpRow)
        .where(FollowUpRow.key == fu.key, open_followups(), later)
        .values(status=CANCELLED, updated_at=now)
        .execution_options(synchronize_session=False)
    )
