"""Migration 0007 (sources and money) goes down to 0006 and back up on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from alembic import command
from sqlalchemy import create_engine, inspect
from sqlalchemy.pool import NullPool

from store.db import alembic_config, normalize_url, run_migrations
from tests.reports_dataset import BACKENDS


def _columns(url: str, table: str) -> set[str]:
    engine = create_engine(normalize_url(url, async_driver=False), poolclass=NullPool)
    try:
        inspector = inspect(engine)
        return {c["name"] for c in inspector.get_columns(table)} if inspector.has_table(table) else set()
    finally:
        engine.dispose()


@pytest.mark.parametrize("database_url", BACKENDS, indirect=True)
def test_down_to_0006_and_up_again(database_url: str) -> None:
    run_migrations(database_url)
    assert {"original_source", "won_amount", "won_at", "lost_reason"} <= _columns(database_url, "leads")
    assert {"channel", "source", "medium", "campaign", "content", "term"} <= _columns(database_url, "touchpoints")
    command.downgrade(alembic_config(database_url), "0006")
    assert _columns(database_url, "source_costs") == set()
    assert "won_amount" not in _columns(database_url, "leads") and "medium" not in _columns(database_url, "touchpoints")
    run_migrations(database_url)
    assert "amount" in _columns(database_url, "source_costs")
