"""``leadflow rewrap-keys``: finish a master key rotation by re-wrapping every data key with the new key.

Data keys never change (the histories sealed with them stay readable); only their wrapping does.
Safe to run while the worker and API serve traffic, and to run again after an interruption.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from privacy.keys import MasterKeys
from store import privacy


async def rewrap_all(sessions: async_sessionmaker[AsyncSession], masters: MasterKeys) -> int:
    """Re-wrap every live data key not yet wrapped by the current master key; returns how many changed.

    Raises KeyUnavailable when a key is wrapped by a master key ``masters`` does not hold.
    """
    changed = 0
    current = masters.current.key_id
    while True:
        async with sessions() as session:
            batch = await privacy.keys_wrapped_by_other_masters(session, current)
        if not batch:
            return changed
        for stored in batch:
            wrapped = masters.wrap(masters.unwrap(stored), stored.lead_id, stored.key_id)
            async with sessions() as session:
                changed += await privacy.rewrap_lead_key(
                    session,
                    lead_id=stored.lead_id,
                    old_master_key_id=stored.master_key_id,
                    master_key_id=current,
                    wrapped_key=wrapped,
                )
