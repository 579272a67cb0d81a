"""The last check before an email leaves: a suppressed address is never mailed.

Called by the send activity right before SMTP, so even a journey that was already waiting when the
address was suppressed (erased; later unsubscribed, bounced, complained) cannot mail it.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.exceptions import ApplicationError

from privacy.addresses import address_hash
from store import privacy

SUPPRESSED = "Suppressed"


async def refuse_if_suppressed(sessions: async_sessionmaker[AsyncSession], address: str, hash_key: str) -> None:
    """Raise a non-retryable ``Suppressed`` ApplicationError when ``address`` is on the suppression list."""
    async with sessions() as session:
        reason = await privacy.suppression_reason(session, address_hash(address, hash_key))
    if reason is not None:
        # The message names the reason, never the address: it ends up in the workflow's history.
        raise ApplicationError(
            f"the recipient is on the suppression list ({reason})", type=SUPPRESSED, non_retryable=True
        )
