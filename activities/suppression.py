"""The last check before an email leaves: a suppressed address is never mailed.

Called by the send activity right before SMTP, so even a journey that was already waiting when the
address was suppressed (erased; later unsubscribed, bounced, complained) cannot mail it.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.exceptions import ApplicationError

from store import suppressions

SUPPRESSED = "Suppressed"


async def refuse_if_suppressed(sessions: async_sessionmaker[AsyncSession], address: str, hash_key: str) -> None:
    """Raise a non-retryable ``Suppressed`` ApplicationError when ``address`` or its domain is suppressed."""
    async with sessions() as session:
        entry = await suppressions.matching(session, suppressions.hashes_for(address, hash_key))
    if entry is not None:
        # The message names the reason, never the address: it ends up in the workflow's history.
        what = "the recipient's domain is" if entry.scope == "domain" else "the recipient is"
        raise ApplicationError(f"{what} on the suppression list ({entry.reason})", type=SUPPRESSED, non_retryable=True)
