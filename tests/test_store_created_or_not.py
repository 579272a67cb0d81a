"""Store writers that answer "did this call create the row?" after an INSERT ... ON CONFLICT DO NOTHING.

psycopg reports rowcount -1 for such an INSERT on PostgreSQL, so every one of them reads RETURNING; each
runs here on SQLite and on PostgreSQL (skipped without LEADFLOW_TEST_POSTGRES_URL).
"""

from __future__ import annotations

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from store import imports

BOTH = pytest.mark.parametrize("database_url", ["sqlite", "postgres"], indirect=True)


@BOTH
async def test_create_import_says_whether_it_created_the_import(sessions: async_sessionmaker[AsyncSession]) -> None:
    values = {"id": "imp-1", "filename": "leads.csv", "file_path": "/tmp/leads.csv", "bytes_total": 10, "source": "csv"}
    async with sessions() as session:
        assert await imports.create_import(session, values) is True
        assert await imports.create_import(session, values | {"filename": "other.csv"}) is False
        row = await imports.get_import(session, "imp-1")
    assert row is not None and row["filename"] == "leads.csv"  # the first one stays
