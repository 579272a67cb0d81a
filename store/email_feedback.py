"""The relay's reports (bounces, complaints, deliveries) as the API receives them, and what they need from
the email ledger: which send and lead a message id belongs to, and an address's recent history.

Addresses are kept only as the keyed hash the suppression list uses, so soft bounces can be counted per
address without storing it (and an erased person's reports name nobody).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from store.models import EmailFeedbackRow, EmailRow, Touchpoint
from store.repo import _dicts, _insert, _select_all, _writing

RECENT_REPORTS = 10  # enough history to see a run of soft bounces


@dataclass(frozen=True)
class LedgerSend:
    """The ledger row a relay's message id points to."""

    key: str
    lead_id: str | None
    kind: str
    template: str
    to_addr: str


def message_id_forms(message_id: str) -> list[str]:
    """Relays quote the Message-ID with or without its angle brackets."""
    bare = message_id.strip().removeprefix("<").removesuffix(">")
    return [f"<{bare}>", bare]


async def ledger_send(session: AsyncSession, message_id: str) -> LedgerSend | None:
    stmt = select(EmailRow.key, EmailRow.lead_id, EmailRow.kind, EmailRow.template, EmailRow.to_addr).where(
        EmailRow.message_id.in_(message_id_forms(message_id))
    )
    row = (await session.execute(stmt.limit(1))).first()
    return LedgerSend(*row) if row is not None else None


async def add_feedback(session: AsyncSession, row: dict[str, Any]) -> bool | None:
    """Keep a report: None when it is new, else whether the first copy suppressed the address (a relay
    resending its webhook: the caller repeats what that copy did, since it may not have finished)."""
    async with _writing(session):
        stmt = _insert(session, EmailFeedbackRow).values(row).on_conflict_do_nothing(index_elements=["id"])
        new = (await session.execute(stmt.returning(EmailFeedbackRow.id))).first() is not None
    if new:
        return None
    query = select(EmailFeedbackRow.suppressed).where(EmailFeedbackRow.id == row["id"])
    return bool((await session.execute(query)).scalar_one())


async def mark_suppressed(session: AsyncSession, feedback_id: str) -> None:
    async with _writing(session):
        await session.execute(
            update(EmailFeedbackRow).where(EmailFeedbackRow.id == feedback_id).values(suppressed=True)
        )


async def recent_history(session: AsyncSession, address_hash: str, lead_id: str | None) -> list[str]:
    """The address's latest reports and, for its lead, opens and clicks (signs of delivery), oldest first."""
    reports = (
        select(EmailFeedbackRow.occurred_at, EmailFeedbackRow.received_at, EmailFeedbackRow.type)
        .where(EmailFeedbackRow.address_hash == address_hash)
        .order_by(EmailFeedbackRow.occurred_at.desc())
        .limit(RECENT_REPORTS)
    )
    found = [(at, received, kind) for at, received, kind in (await session.execute(reports)).all()]
    if lead_id is not None:
        engagement = (
            select(Touchpoint.occurred_at, Touchpoint.received_at, Touchpoint.type)
            .where(Touchpoint.lead_id == lead_id, Touchpoint.type.in_(("email_open", "email_click")))
            .order_by(Touchpoint.occurred_at.desc())
            .limit(RECENT_REPORTS)
        )
        found += [(at, received, kind) for at, received, kind in (await session.execute(engagement)).all()]
    return [kind for _, _, kind in sorted(found)]


async def list_feedback(session: AsyncSession, lead_id: str, limit: int = 50) -> list[dict[str, Any]]:
    """A lead's bounce and complaint reports, newest first (the address hash left out)."""
    stmt = (
        _select_all(EmailFeedbackRow, without=("address_hash",))
        .where(EmailFeedbackRow.lead_id == lead_id)
        .order_by(EmailFeedbackRow.occurred_at.desc())
        .limit(limit)
    )
    return await _dicts(session, stmt)
