"""Lead aliases and the store side of a merge (issue 9 item 5).

An alias is another lead id of the same person: a duplicate merged into a lead, or the id of an address the
lead took on (lead ids are keyed hashes of an email, so a new address has its own id). Written only by the
lead workflows' activities (activities/lead_merge.py); read by the API on the way in, so later events,
touches and lookups for an old id or an old address reach the surviving lead. Chains are kept flat: an alias
always names a lead that is no alias itself.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import bindparam, delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from store.assignments import close_open_assignments
from store.db import rowcount
from store.followup_rows import cancel_open_followups
from store.models import LeadAlias, VisitorLink
from store.models import Touchpoint as TouchpointRow
from store.repo import _insert, _writing

MERGED = "merged"
EMAIL_CHANGE = "email_change"
MAX_HOPS = 4
# Built once: every new lead and every request that may create one looks its id up here, and building the IN
# list per call (literal coercion of each id) cost more CPU than running the query.
_ALIASES_OF = select(LeadAlias.alias_id, LeadAlias.lead_id).where(
    LeadAlias.alias_id.in_(bindparam("ids", expanding=True))
)


async def _one_hop(session: AsyncSession, lead_ids: Iterable[str]) -> dict[str, str]:
    wanted = sorted(set(lead_ids))
    if not wanted:
        return {}
    rows = await session.execute(_ALIASES_OF, {"ids": wanted})
    return {alias: lead for alias, lead in rows.all()}


async def resolve(session: AsyncSession, lead_ids: Iterable[str]) -> dict[str, str]:
    """alias -> lead for those of ``lead_ids`` that are aliases (lead ids that are no alias are left out).

    Writes keep chains flat, but two merges racing (C into B while B goes into A) can leave a short chain for
    a moment: it is followed, a bounded number of hops."""
    found = await _one_hop(session, lead_ids)
    for _ in range(MAX_HOPS):
        further = await _one_hop(session, set(found.values()))
        if not further:
            break
        found = {alias: further.get(lead, lead) for alias, lead in found.items()}
    return found


async def current_lead(session: AsyncSession, lead_id: str) -> str | None:
    """The lead ``lead_id`` is an alias of, or None when it is no alias."""
    return (await resolve(session, [lead_id])).get(lead_id)


async def list_aliases(session: AsyncSession, lead_id: str) -> list[dict[str, object]]:
    """The aliases that resolve to ``lead_id``, oldest first."""
    rows = await session.execute(
        select(LeadAlias.alias_id, LeadAlias.reason, LeadAlias.created_at)
        .where(LeadAlias.lead_id == lead_id)
        .order_by(LeadAlias.created_at, LeadAlias.alias_id)
    )
    return [dict(row._mapping) for row in rows.all()]


async def _point(session: AsyncSession, alias_id: str, lead_id: str, reason: str, now: datetime) -> None:
    # Aliases that named alias_id now name lead_id (flat chains); the alias itself is (re)written.
    await session.execute(
        update(LeadAlias)
        .where(LeadAlias.lead_id == alias_id)
        .values(lead_id=lead_id)
        .execution_options(synchronize_session=False)
    )
    stmt = _insert(session, LeadAlias).values(alias_id=alias_id, lead_id=lead_id, reason=reason, created_at=now)
    await session.execute(
        stmt.on_conflict_do_update(index_elements=["alias_id"], set_={"lead_id": lead_id, "reason": reason})
    )
    # A lead taking back an address it had (or a chain closing on itself) is no alias of itself.
    await session.execute(delete(LeadAlias).where(LeadAlias.alias_id == LeadAlias.lead_id))


async def record_alias(session: AsyncSession, *, alias_id: str, lead_id: str, reason: str, now: datetime) -> None:
    """From now on ``alias_id`` (and whatever resolved to it) resolves to ``lead_id``. Idempotent."""
    async with _writing(session):
        await _point(session, alias_id, lead_id, reason, now)


@dataclass
class MergeRelease:
    """What the store let go of for a merged duplicate (counts, for the activity's log)."""

    assignments_closed: int
    followups_cancelled: int
    touchpoints_moved: int


async def release_merged(session: AsyncSession, *, duplicate_id: str, survivor_id: str, now: datetime) -> MergeRelease:
    """One transaction, idempotent: the duplicate's open assignment closes (its rep's capacity is free again),
    its pending or overdue follow-ups are cancelled (they leave the overdue list and the digest), its
    touchpoints and stitched visitors move to the survivor (one timeline), and its id becomes an alias."""
    async with _writing(session):
        closed = await close_open_assignments(session, duplicate_id)
        # Its open follow-ups: nobody owes them any more (the survivor has its own).
        cancelled = await cancel_open_followups(session, duplicate_id, now, keep=None)
        # An event both leads hold (one post sent to both records) stays once, the survivor's.
        survivors_events = select(TouchpointRow.event_id).where(TouchpointRow.lead_id == survivor_id)
        await session.execute(
            delete(TouchpointRow)
            .where(TouchpointRow.lead_id == duplicate_id, TouchpointRow.event_id.in_(survivors_events))
            .execution_options(synchronize_session=False)
        )
        moved = await session.execute(
            update(TouchpointRow)
            .where(TouchpointRow.lead_id == duplicate_id)
            .values(lead_id=survivor_id)
            .execution_options(synchronize_session=False)
        )
        await session.execute(
            update(VisitorLink)
            .where(VisitorLink.lead_id == duplicate_id)
            .values(lead_id=survivor_id)
            .execution_options(synchronize_session=False)
        )
        await _point(session, duplicate_id, survivor_id, MERGED, now)
    return MergeRelease(closed, cancelled, rowcount(moved))
