"""Store side of the right to erasure: per-lead data keys, the suppression list, anonymising a lead.

Kept apart from repo.py (the read model's everyday queries) because these functions destroy data:
every one of them is idempotent, so an interrupted erasure is finished by running it again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from store.db import rowcount
from store.models import EmailFeedbackRow, EmailRow, Lead, LeadKey, Suppression, Touchpoint
from store.repo import _dialect, _ignoring_insert, _insert, _writing

# Lead columns that reports count by and that identify nobody; every other personal column is cleared.
KEPT_ATTRIBUTES = (
    "source",
    "source_category",
    "latest_source",
    "latest_source_category",
    "utm_source",
    "utm_medium",
    "utm_campaign",
    "utm_term",
    "utm_content",
    "country",
    "industry",
    "company_size",
)
# Engagement touchpoints keep the send they concern (the email report counts them); the link goes.
ENGAGEMENT_TYPES = ("email_open", "email_click")
KEPT_ENGAGEMENT_PROPERTIES = ("send_key", "template", "variant")
CLEARED_LEAD_COLUMNS = ("email", "first_name", "last_name", "company", "title")
ERASED_ADDRESS = "(erased)"


# ---------------------------------------------------------------- data keys


@dataclass(frozen=True)
class StoredKey:
    lead_id: str
    key_id: str
    master_key_id: str | None
    wrapped_key: bytes | None  # None once erased

    @property
    def erased(self) -> bool:
        return self.wrapped_key is None


def _stored(row: Any) -> StoredKey:
    return StoredKey(row.lead_id, row.key_id, row.master_key_id, row.wrapped_key)


_KEYS = cast(Table, LeadKey.__table__)
# Built once (on the path of every new lead): Core rows, the IN list expanded at execution.
_KEYS_OF = select(_KEYS.c.lead_id, _KEYS.c.key_id, _KEYS.c.master_key_id, _KEYS.c.wrapped_key).where(
    _KEYS.c.lead_id.in_(bindparam("ids", expanding=True))
)


async def get_lead_keys(session: AsyncSession, lead_ids: list[str]) -> dict[str, StoredKey]:
    """The stored keys of these leads (those that have one), in one query."""
    rows = (await session.execute(_KEYS_OF, {"ids": list(lead_ids)})).all()
    return {row.lead_id: _stored(row) for row in rows}


async def get_lead_key(session: AsyncSession, lead_id: str) -> StoredKey | None:
    return (await get_lead_keys(session, [lead_id])).get(lead_id)


async def add_lead_keys(session: AsyncSession, keys: list[StoredKey], now: datetime) -> dict[str, StoredKey]:
    """Store new leads' keys in one transaction, each unless one exists; returns the ones that won (two
    processes may race for a lead)."""
    rows = [
        {
            "lead_id": k.lead_id,
            "key_id": k.key_id,
            "master_key_id": k.master_key_id,
            "wrapped_key": k.wrapped_key,
            "created_at": now,
        }
        for k in keys
    ]
    async with _writing(session):
        await session.execute(_ignoring_insert(_dialect(session), LeadKey, ("lead_id",)), rows)
    return await get_lead_keys(session, [k.lead_id for k in keys])


async def destroy_lead_key(session: AsyncSession, lead_id: str, now: datetime) -> bool:
    """Crypto-shred: forget the wrapped key for good. False when the lead never had a key.

    A lead without a key yet gets an erased row, so a later payload for it is refused too.
    """
    async with _writing(session):
        result = await session.execute(
            update(LeadKey)
            .where(LeadKey.lead_id == lead_id, LeadKey.erased_at.is_(None))
            .values(wrapped_key=None, erased_at=now)
        )
        if rowcount(result) == 0:
            await session.execute(
                _insert(session, LeadKey)
                .values(lead_id=lead_id, key_id=f"erased-{lead_id}", wrapped_key=None, created_at=now, erased_at=now)
                .on_conflict_do_nothing(index_elements=["lead_id"])
            )
    return rowcount(result) == 1


async def keys_wrapped_by_other_masters(session: AsyncSession, master_key_id: str, limit: int = 500) -> list[StoredKey]:
    """Live keys still wrapped by another master key than ``master_key_id`` (work left for rotation)."""
    stmt = (
        select(LeadKey)
        .where(LeadKey.wrapped_key.is_not(None), LeadKey.master_key_id != master_key_id)
        .order_by(LeadKey.lead_id)
        .limit(limit)
    )
    return [_stored(row) for row in (await session.execute(stmt)).scalars()]


async def rewrap_lead_key(
    session: AsyncSession, *, lead_id: str, old_master_key_id: str | None, master_key_id: str, wrapped_key: bytes
) -> bool:
    """Replace a key's wrapping, only if nobody erased or re-wrapped it meanwhile."""
    async with _writing(session):
        result = await session.execute(
            update(LeadKey)
            .where(
                LeadKey.lead_id == lead_id,
                LeadKey.wrapped_key.is_not(None),
                LeadKey.master_key_id == old_master_key_id,
            )
            .values(master_key_id=master_key_id, wrapped_key=wrapped_key)
        )
    return rowcount(result) == 1


# ---------------------------------------------------------------- suppression


async def suppress(session: AsyncSession, address_hash: str, reason: str, now: datetime) -> None:
    """Put an address (as its keyed hash) on the suppression list; a second call keeps the first reason.

    Erasure is the exception: it overwrites an earlier entry (an unsubscribe keeps the plain address for
    operators), so nothing readable about the person stays on the list.
    """
    insert = _insert(session, Suppression).values(address_hash=address_hash, reason=reason, created_at=now)
    erased = {"reason": reason, "address": None, "note": None, "lead_id": None, "scope": "address"}
    async with _writing(session):
        await session.execute(
            insert.on_conflict_do_update(index_elements=["address_hash"], set_=erased)
            if reason == "erased"
            else insert.on_conflict_do_nothing(index_elements=["address_hash"])
        )


# ---------------------------------------------------------------- anonymising


async def lead_email(session: AsyncSession, lead_id: str) -> str | None:
    stmt = select(Lead.email).where(Lead.id == lead_id)
    return (await session.execute(stmt)).scalar_one_or_none()


async def anonymise_lead(session: AsyncSession, lead_id: str) -> dict[str, int]:
    """Strip everything personal about a lead from the store; keep what reports count.

    The leads row keeps stage, score, grade, owner, source/UTM, country, industry, size and dates;
    touchpoints keep type and times (not url, name, properties; opens and clicks keep their send key,
    template and variant); the email ledger keeps kind, template, status and times (not recipient, subject,
    error text); bounce and complaint reports lose the relay's diagnostic. Returns rows touched per table.
    """
    async with _writing(session):
        row = (await session.execute(select(Lead.attributes).where(Lead.id == lead_id))).one_or_none()
        leads = 0
        if row is not None:
            kept = {k: v for k, v in (row.attributes or {}).items() if k in KEPT_ATTRIBUTES}
            cleared: dict[str, Any] = dict.fromkeys(CLEARED_LEAD_COLUMNS)
            result = await session.execute(update(Lead).where(Lead.id == lead_id).values(attributes=kept, **cleared))
            leads = rowcount(result)
        # Opens and clicks keep which send they concern (no person in it), so the email report still counts them.
        engagement = select(Touchpoint.id, Touchpoint.properties).where(
            Touchpoint.lead_id == lead_id, Touchpoint.type.in_(ENGAGEMENT_TYPES)
        )
        for touch_id, properties in (await session.execute(engagement)).all():
            kept_properties = {k: v for k, v in (properties or {}).items() if k in KEPT_ENGAGEMENT_PROPERTIES}
            await session.execute(
                update(Touchpoint).where(Touchpoint.id == touch_id).values(properties=kept_properties)
            )
        await session.execute(
            update(Touchpoint)
            .where(Touchpoint.lead_id == lead_id, Touchpoint.type.not_in(ENGAGEMENT_TYPES))
            .values(properties={})
        )
        touchpoints = await session.execute(
            update(Touchpoint).where(Touchpoint.lead_id == lead_id).values(url=None, name=None)
        )
        emails = await session.execute(
            update(EmailRow).where(EmailRow.lead_id == lead_id).values(to_addr=ERASED_ADDRESS, subject=None, error=None)
        )
        # A relay's diagnostic often quotes the address.
        await session.execute(update(EmailFeedbackRow).where(EmailFeedbackRow.lead_id == lead_id).values(reason=None))
    return {"leads": leads, "touchpoints": rowcount(touchpoints), "emails": rowcount(emails)}
