"""Shared fixtures: a real SMTP server, a migrated store with a sales team, test settings."""

from __future__ import annotations

import asyncio
import dataclasses
import email
import email.policy
import os
import secrets
import shutil
import socket
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import Message
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import create_engine
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.pool import NullPool
from temporalio.testing import ActivityEnvironment

from settings import ROOT, Settings
from store import repo
from store.db import make_engine, make_sessionmaker, normalize_url, run_migrations

TEST_API_KEY = "test-admin-key"
TEST_ID_KEY = "test-id-key"
TEST_MASTER_KEY = "test-master-key"
TEST_UNSUBSCRIBE_KEY = "test-unsubscribe-key"


def venv_binary(name: str) -> str:
    """A console script of an installed package: next to this interpreter first, then on PATH."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    assert found, f"{name} is not installed (pip install -e '.[dev]')"
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def activity_environment(**info: Any) -> ActivityEnvironment:
    """An ActivityEnvironment whose attempt starts now with a 60 s start-to-close timeout (the SDK's default
    info dates from 1970 with a 1 s schedule-to-close: an activity minding its deadline would see it long past)."""
    env = ActivityEnvironment()
    started = datetime.now(UTC)
    realistic: dict[str, Any] = {
        "scheduled_time": started,
        "current_attempt_scheduled_time": started,
        "started_time": started,
        "start_to_close_timeout": timedelta(seconds=60),
        "schedule_to_close_timeout": None,
    }
    env.info = dataclasses.replace(env.info, **(realistic | info))
    return env


@dataclass
class Inbox:
    """Messages the SMTP server really received."""

    messages: list[Message] = field(default_factory=list)

    async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def]
        msg = email.message_from_bytes(envelope.original_content or envelope.content, policy=email.policy.default)
        msg["X-Envelope-To"] = ", ".join(envelope.rcpt_tos)
        self.messages.append(msg)
        return "250 OK"

    def to(self, address: str) -> list[Message]:
        return [m for m in self.messages if address in m["X-Envelope-To"]]

    def kinds(self) -> list[tuple[str, str]]:
        return [(m["X-Leadflow-Kind"], m["X-Envelope-To"]) for m in self.messages]

    async def wait_for(self, predicate, seconds: float = 20.0) -> list[Message]:  # type: ignore[no-untyped-def]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while loop.time() < deadline:
            found = [m for m in self.messages if predicate(m)]
            if found:
                return found
            await asyncio.sleep(0.05)
        raise AssertionError(f"no matching email within {seconds}s; received: {self.kinds()}")


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, int]]:
    inbox, port = Inbox(), free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()


PG_ENV = "LEADFLOW_TEST_POSTGRES_URL"


@contextmanager
def postgres_database(base_url: str) -> Iterator[str]:
    """A throwaway database on the server of ``base_url``; dropped (even if in use) on exit."""
    admin = create_engine(normalize_url(base_url, async_driver=False), isolation_level="AUTOCOMMIT", poolclass=NullPool)
    name = f"leadflow_test_{secrets.token_hex(6)}"
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        yield make_url(base_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


@pytest.fixture
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """SQLite by default; ``@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)`` for a
    throwaway PostgreSQL database (skipped cleanly where LEADFLOW_TEST_POSTGRES_URL is not set)."""
    if getattr(request, "param", "sqlite") == "sqlite":
        yield f"sqlite:///{tmp_path / 'leadflow.db'}"
        return
    base = os.environ.get(PG_ENV)
    if not base:
        pytest.skip(f"{PG_ENV} is not set (e.g. postgresql://postgres@127.0.0.1:5432/test)")
    with postgres_database(base) as url:
        yield url


@pytest.fixture
def settings(tmp_path: Path, smtp: tuple[Inbox, int], database_url: str) -> Settings:
    return Settings(
        data_dir=tmp_path,
        database_url=database_url,
        smtp_port=smtp[1],
        api_key=TEST_API_KEY,
        # Unique per test: lead (workflow) ids never collide across tests sharing one Temporal server.
        id_key=f"{TEST_ID_KEY}-{secrets.token_hex(4)}",
        master_key=TEST_MASTER_KEY,
        unsubscribe_key=TEST_UNSUBSCRIBE_KEY,
        templates_dir=ROOT / "templates",
        playbook_path=ROOT / "playbooks" / "default.yaml",
        projection_delay_seconds=1,
    )


DEMO_TEAMS = [
    repo.TeamIn(
        "inside-sales",
        "Inside Sales",
        "Mina Manager",
        "mina.manager@example.com",
        [
            repo.RepIn("rep-aiko", "Aiko Sato", "aiko@example.com"),
            repo.RepIn("rep-ben", "Ben Carter", "ben@example.com"),
        ],
    ),
    repo.TeamIn(
        "japan",
        "Japan",
        "Kenji Manager",
        "kenji.manager@example.com",
        [repo.RepIn("rep-yui", "Yui Ito", "yui@example.com")],
    ),
]


@pytest.fixture
async def sessions(settings: Settings) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    await asyncio.to_thread(run_migrations, settings.resolved_database_url())
    engine = make_engine(settings.resolved_database_url())
    maker = make_sessionmaker(engine)
    async with maker() as session:
        for team in DEMO_TEAMS:
            await repo.upsert_team(session, team)
    yield maker
    await engine.dispose()
