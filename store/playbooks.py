"""Published playbook versions: immutable, stored with their hash and author."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from store.models import PlaybookVersion


def _row(v: PlaybookVersion, with_document: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {
        "version": v.version,
        "hash": v.hash,
        "author": v.author,
        "note": v.note,
        "created_at": v.created_at,
    }
    if with_document:
        out["document"] = v.document
    return out


async def publish(
    session: AsyncSession, *, document: str, hash: str, author: str | None, note: str | None
) -> tuple[dict[str, Any], bool]:
    """Store a validated playbook as the next version; publishing the same content again returns the
    existing version (``created`` is False)."""
    existing = await session.scalar(select(PlaybookVersion).where(PlaybookVersion.hash == hash))
    if existing is not None:
        return _row(existing), False
    row = PlaybookVersion(
        hash=hash, author=author, note=note, document=document, created_at=datetime.now(UTC), published=True
    )
    session.add(row)
    try:
        await session.commit()
    except IntegrityError:  # the same content published concurrently
        await session.rollback()
        existing = await session.scalar(select(PlaybookVersion).where(PlaybookVersion.hash == hash))
        assert existing is not None
        return _row(existing), False
    return _row(row), True


async def list_versions(session: AsyncSession) -> list[dict[str, Any]]:
    rows = await session.scalars(select(PlaybookVersion).order_by(PlaybookVersion.version.desc()))
    return [_row(v) for v in rows]


async def get(session: AsyncSession, version: int) -> dict[str, Any] | None:
    row = await session.get(PlaybookVersion, version)
    return _row(row, with_document=True) if row else None


async def latest_number(session: AsyncSession) -> int | None:
    return await session.scalar(select(func.max(PlaybookVersion.version)).where(PlaybookVersion.published))
