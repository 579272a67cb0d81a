"""The one place relay reports reach the suppression list (placeholder until the erasure work lands)."""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession


def address_key(address: str, key: str) -> str:
    message = b"suppression\x00" + address.strip().lower().encode()
    return hmac.new(key.encode(), message, hashlib.sha256).hexdigest()


async def suppress_address(session: AsyncSession, address_hash: str, reason: str, now: datetime) -> None:
    raise NotImplementedError
