"""Erasing a person (right to erasure) once their lead's workflow has ended.

Each step idempotent so an interrupted erasure is finished by asking again: destroy the lead's data key
(its Temporal histories become unreadable: crypto-shredding), and those of the anonymous visitors stitched
to it once their workflows are ended (their held events are the person's browsing); put the address on
the suppression list as a keyed hash (a re-import or a new form cannot mail them); anonymise the store
(reports keep counting the lead; nothing identifies the person).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from privacy.addresses import address_hash
from privacy.keys import KeyRing
from store import assignments, ingest, privacy
from store.followup_rows import cancel_open_followups

ERASED = "erased"


@dataclass
class ErasureOutcome:
    lead_id: str
    key_destroyed: bool
    suppressed: bool
    anonymised: dict[str, int] = field(default_factory=dict)
    # Open assignments closed: an erased lead holds no rep's capacity.
    assignments_closed: int = 0
    # Open follow-ups cancelled: nobody owes an erased lead a call (rules/followups.py).
    followups_cancelled: int = 0
    # Stitched visitors whose workflows were ended and data keys destroyed.
    visitors_shredded: int = 0


async def erase_person(
    sessions: async_sessionmaker[AsyncSession],
    keys: KeyRing | None,
    lead_id: str,
    email: str | None,
    hash_key: str,
    end_visitor: Callable[[str], Awaitable[None]] | None = None,
) -> ErasureOutcome:
    """Shred, suppress, anonymise. Call only after the lead's workflow has ended (it writes the store).

    ``end_visitor`` ends a visitor's workflow (terminates it; a finished one is fine): the keys of the
    visitors stitched to the lead are destroyed only with it, since a visitor still running could not even
    end once its key is gone."""
    now = datetime.now(UTC)
    async with sessions() as session:
        destroyed = await privacy.destroy_lead_key(session, lead_id, now)
    if keys is not None:
        keys.forget(lead_id)
    visitors: list[str] = []
    if end_visitor is not None:
        async with sessions() as session:
            visitors = await ingest.lead_visitors(session, lead_id)
        for visitor_id in visitors:
            await end_visitor(visitor_id)
            async with sessions() as session:
                await privacy.destroy_lead_key(session, visitor_id, now)
            if keys is not None:
                keys.forget(visitor_id)
    if email:
        async with sessions() as session:
            await privacy.suppress(session, address_hash(email, hash_key), ERASED, now)
    async with sessions() as session:
        anonymised = await privacy.anonymise_lead(session, lead_id)
    async with sessions() as session:  # the person's anonymous ids lead nowhere any more
        await ingest.forget_lead_visitors(session, lead_id)
    async with sessions() as session:
        released = await assignments.release_lead(session, lead_id)
    async with sessions() as session:  # nobody owes an erased lead a call: off the overdue list and the digest
        cancelled = await cancel_open_followups(session, lead_id, now, keep=None)
        await session.commit()
    return ErasureOutcome(lead_id, destroyed, bool(email), anonymised, released, cancelled, len(visitors))
