"""The suppression list: addresses and whole domains no email may go to, and why.

One list (the ``suppressions`` table the erasure work created), matched by a keyed hash so an erased
person's address need not be kept: ``address_hash`` is the hash of the address, or of ``@domain`` for a
domain entry. Where an operator must read, export or lift an entry (unsubscribed, hard_bounce, complaint,
manual) the plain address or domain is kept beside it; an erased person's entry holds the hash alone.
The send activity checks the list right before every send (activities/suppression.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal, get_args

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from privacy.addresses import address_hash, normalize_address
from store.db import rowcount
from store.models import Suppression
from store.repo import _insert, _writing

SuppressionReason = Literal["unsubscribed", "hard_bounce", "complaint", "manual", "erased"]
SuppressionScope = Literal["address", "domain"]
REASONS: tuple[str, ...] = get_args(SuppressionReason)
ERASED = "erased"


@dataclass(frozen=True)
class SuppressionEntry:
    id: int
    scope: SuppressionScope
    # The address or domain; None for an erased person (kept as a keyed hash only).
    address: str | None
    reason: SuppressionReason
    created_at: datetime
    note: str | None = None
    lead_id: str | None = None


def normalize_domain(domain: str) -> str:
    """``@Bücher.Example`` -> ``xn--bcher-kva.example``: one spelling per domain, as mail is sent."""
    name = domain.strip().lstrip("@").rstrip(".").lower()
    return name.encode("idna").decode("ascii") if not name.isascii() else name


def domain_of(address: str) -> str:
    return normalize_domain(address.rpartition("@")[2])


def hashes_for(address: str, key: str) -> list[str]:
    """What matches ``address`` on the list: its own entry, then its domain's."""
    return [address_hash(address, key), address_hash("@" + domain_of(address), key)]


def _entry(row: Suppression) -> SuppressionEntry:
    return SuppressionEntry(
        row.id,
        row.scope,  # type: ignore[arg-type]  # the column holds only SuppressionScope values
        row.address,
        row.reason,  # type: ignore[arg-type]  # likewise SuppressionReason
        row.created_at,
        row.note,
        row.lead_id,  # type: ignore[arg-type]
    )


async def add(
    session: AsyncSession,
    *,
    value: str,
    scope: SuppressionScope,
    reason: SuppressionReason,
    key: str,
    now: datetime,
    note: str | None = None,
    lead_id: str | None = None,
) -> tuple[SuppressionEntry, bool]:
    """Suppress an address or a domain; (the entry, whether it is new). An existing entry keeps its reason."""
    plain = normalize_domain(value) if scope == "domain" else normalize_address(value)
    hashed = address_hash("@" + plain if scope == "domain" else plain, key)
    async with _writing(session):
        result = await session.execute(
            _insert(session, Suppression)
            .values(
                address_hash=hashed,
                reason=reason,
                created_at=now,
                scope=scope,
                address=None if reason == ERASED else plain,
                note=note,
                lead_id=lead_id,
            )
            .on_conflict_do_nothing(index_elements=["address_hash"])
            .returning(Suppression.id)
        )
        created = result.scalar_one_or_none() is not None  # rowcount is not reliable here on every driver
    row = (await session.execute(select(Suppression).where(Suppression.address_hash == hashed))).scalar_one()
    return _entry(row), created


async def matching(session: AsyncSession, hashes: list[str]) -> SuppressionEntry | None:
    """The entry that stops mail to one of ``hashes`` (an address's own entry first), or None."""
    rows = (await session.execute(select(Suppression).where(Suppression.address_hash.in_(hashes)))).scalars().all()
    by_hash = {row.address_hash: row for row in rows}
    found = next((by_hash[h] for h in hashes if h in by_hash), None)
    return _entry(found) if found is not None else None


async def list_entries(
    session: AsyncSession,
    *,
    reason: str | None = None,
    scope: str | None = None,
    contains: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> tuple[list[SuppressionEntry], int]:
    """Entries newest first, and how many match in all."""
    where = []
    if reason is not None:
        where.append(Suppression.reason == reason)
    if scope is not None:
        where.append(Suppression.scope == scope)
    if contains:
        where.append(Suppression.address.contains(contains.strip().lower(), autoescape=True))
    total = (await session.execute(select(func.count()).select_from(Suppression).where(*where))).scalar_one()
    stmt = (
        select(Suppression)
        .where(*where)
        .order_by(Suppression.created_at.desc(), Suppression.id.desc())
        .limit(limit)
        .offset(offset)
    )
    return [_entry(row) for row in (await session.execute(stmt)).scalars()], total


async def get(session: AsyncSession, entry_id: int) -> SuppressionEntry | None:
    row = (await session.execute(select(Suppression).where(Suppression.id == entry_id))).scalar_one_or_none()
    return _entry(row) if row is not None else None


async def remove(session: AsyncSession, entry_id: int) -> bool:
    async with _writing(session):
        result = await session.execute(delete(Suppression).where(Suppression.id == entry_id))
    return rowcount(result) == 1
