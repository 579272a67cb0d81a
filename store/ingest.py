"""Store side of the ingest doors: tracking write keys, form and webhook configurations, visitor links.

Kept apart from repo.py (the read model of leads): the API owns the first two (admin endpoints and the
CLI write them); visitor links are written only by the visitor workflow's activity.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from store.access import hash_token
from store.db import rowcount
from store.models import InboundSource, VisitorLink, WriteKey
from store.repo import _insert, _writing

WRITE_KEY_PREFIX = "lfw_"


@dataclass(frozen=True)
class WriteKeyInfo:
    id: str
    name: str
    created_at: datetime
    revoked_at: datetime | None


def _info(row: WriteKey) -> WriteKeyInfo:
    return WriteKeyInfo(row.id, row.name, row.created_at, row.revoked_at)


async def create_write_key(session: AsyncSession, name: str) -> tuple[WriteKeyInfo, str]:
    """A new key; the clear key is returned here once and never stored."""
    key = WRITE_KEY_PREFIX + secrets.token_urlsafe(24)
    row = WriteKey(id=f"wk_{secrets.token_hex(4)}", name=name, key_hash=hash_token(key), created_at=datetime.now(UTC))
    async with _writing(session):
        session.add(row)
    return _info(row), key


async def list_write_keys(session: AsyncSession) -> list[WriteKeyInfo]:
    rows = (await session.execute(select(WriteKey).order_by(WriteKey.created_at))).scalars()
    return [_info(r) for r in rows]


async def revoke_write_key(session: AsyncSession, key_id: str) -> bool:
    async with _writing(session):
        result = await session.execute(
            update(WriteKey)
            .where(WriteKey.id == key_id, WriteKey.revoked_at.is_(None))
            .values(revoked_at=datetime.now(UTC))
        )
    return bool(rowcount(result))


async def write_key_valid(session: AsyncSession, key: str) -> bool:
    found = await session.scalar(
        select(WriteKey.id).where(WriteKey.key_hash == hash_token(key), WriteKey.revoked_at.is_(None))
    )
    return found is not None


# ---------------------------------------------------------------- forms and webhook senders


async def put_source(
    session: AsyncSession, kind: str, source_id: str, config: dict[str, Any], *, new_secret: bool
) -> str | None:
    """Create or replace a form/webhook configuration; returns the secret nonce (new one if asked)."""
    now = datetime.now(UTC)
    existing = await session.get(InboundSource, (kind, source_id))
    nonce = secrets.token_hex(16) if new_secret or (existing is None and kind == "webhook") else None
    async with _writing(session):
        if existing is None:
            session.add(
                InboundSource(
                    kind=kind, id=source_id, config=config, secret_nonce=nonce, created_at=now, updated_at=now
                )
            )
        else:
            existing.config, existing.updated_at = config, now
            if nonce is not None:
                existing.secret_nonce = nonce
            nonce = existing.secret_nonce
    return nonce


async def get_source(session: AsyncSession, kind: str, source_id: str) -> InboundSource | None:
    return await session.get(InboundSource, (kind, source_id))


async def list_sources(session: AsyncSession, kind: str) -> list[InboundSource]:
    rows = await session.execute(select(InboundSource).where(InboundSource.kind == kind).order_by(InboundSource.id))
    return list(rows.scalars())


async def delete_source(session: AsyncSession, kind: str, source_id: str) -> bool:
    async with _writing(session):
        result = await session.execute(
            delete(InboundSource).where(InboundSource.kind == kind, InboundSource.id == source_id)
        )
    return bool(rowcount(result))


# ---------------------------------------------------------------- visitors stitched onto leads


async def link_visitor(session: AsyncSession, visitor_id: str, lead_id: str, at: datetime) -> None:
    """Idempotent: the latest identify wins (a shared computer re-identified as someone else)."""
    stmt = _insert(session, VisitorLink).values(visitor_id=visitor_id, lead_id=lead_id, linked_at=at)
    stmt = stmt.on_conflict_do_update(index_elements=["visitor_id"], set_={"lead_id": lead_id, "linked_at": at})
    async with _writing(session):
        await session.execute(stmt)


async def linked_leads(session: AsyncSession, visitor_ids: list[str]) -> dict[str, str]:
    if not visitor_ids:
        return {}
    rows = await session.execute(
        select(VisitorLink.visitor_id, VisitorLink.lead_id).where(VisitorLink.visitor_id.in_(visitor_ids))
    )
    return {visitor: lead for visitor, lead in rows.all()}


async def lead_visitors(session: AsyncSession, lead_id: str) -> list[str]:
    """The visitor ids stitched onto ``lead_id``."""
    rows = await session.execute(select(VisitorLink.visitor_id).where(VisitorLink.lead_id == lead_id))
    return sorted(rows.scalars())


async def forget_lead_visitors(session: AsyncSession, lead_id: str) -> None:
    """Erasure: the lead's visitor ids no longer lead anywhere."""
    async with _writing(session):
        await session.execute(delete(VisitorLink).where(VisitorLink.lead_id == lead_id))
