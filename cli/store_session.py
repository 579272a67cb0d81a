"""The store for a CLI command: migrated, opened from the same settings as the server, closed after."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from settings import Settings
from store.db import make_engine, make_sessionmaker, run_migrations


@asynccontextmanager
async def store_sessions(settings: Settings | None = None) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    settings = settings or Settings()
    await asyncio.to_thread(run_migrations, settings.resolved_database_url())
    engine = make_engine(settings.resolved_database_url())
    try:
        yield make_sessionmaker(engine)
    finally:
        await engine.dispose()
