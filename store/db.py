"""Engines, sessions and migrations for the read model (SQLite file by default, PostgreSQL when asked)."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime
from pathlib import Path
from typing import Any, cast

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, CursorResult, Engine, Result, create_engine, event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.pool import NullPool

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

_PG_BACKENDS = {"postgresql", "postgres"}
_PG_DRIVERS = {"", "psycopg", "psycopg2", "asyncpg"}
# Arbitrary constant: every leadflow process migrating the same PostgreSQL database takes this lock.
_MIGRATION_LOCK_ID = 0x1EADF10


def _parse(url: str) -> URL:
    try:
        return make_url(url)
    except ArgumentError as exc:
        raise ValueError(f"invalid database URL {url!r}: {exc}") from None


def normalize_url(url: str, *, async_driver: bool = True) -> str:
    """Map the URL spellings people use onto the drivers leadflow ships with.

    SQLite uses aiosqlite (async) or the stdlib driver (sync); PostgreSQL always uses psycopg 3,
    which does both.
    """
    parsed = _parse(url)
    backend, _, driver = parsed.drivername.partition("+")
    if backend == "sqlite" and driver in {"", "pysqlite", "aiosqlite"}:
        drivername = "sqlite+aiosqlite" if async_driver else "sqlite"
    elif backend in _PG_BACKENDS and driver in _PG_DRIVERS:
        drivername = "postgresql+psycopg"
    else:
        raise ValueError(
            f"unsupported database URL {parsed.render_as_string(hide_password=True)!r}: "
            "use sqlite:///path/to/file.db or postgresql://user:password@host:5432/dbname"
        )
    return parsed.set(drivername=drivername).render_as_string(hide_password=False)


def _is_sqlite(url: str) -> bool:
    return _parse(url).get_backend_name() == "sqlite"


def _ensure_sqlite_dir(url: str) -> None:
    """SQLite creates the file but not its directory."""
    database = _parse(url).database
    if database and database != ":memory:" and not database.startswith("file:"):
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)


def _json_default(value: Any) -> Any:
    # Attributes and event properties come from outside; never let a date make a projection fail.
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    return str(value)


def _json_dumps(value: Any) -> str:
    return json.dumps(value, default=_json_default)


def _without_nul(value: Any) -> Any:
    """``value`` with U+0000 dropped from its text, the same object when it holds none."""
    if isinstance(value, str):
        return value.replace("\x00", "") if "\x00" in value else value
    if isinstance(value, dict):
        cleaned = {key: _without_nul(item) for key, item in value.items()}
        return value if all(cleaned[key] is item for key, item in value.items()) else cleaned
    if isinstance(value, list | tuple):
        items = [_without_nul(item) for item in value]
        if all(new is old for new, old in zip(items, value, strict=True)):
            return value
        return items if isinstance(value, list) else tuple(items)
    return value


def _drop_nul_parameters(
    _conn: Connection, _cursor: Any, statement: str, parameters: Any, _context: Any, _executemany: bool
) -> tuple[str, Any]:
    # PostgreSQL text cannot hold NUL (a DataError that no retry fixes: a lead's projection failed for good,
    # PUT /v1/teams answered 500); nothing leadflow keeps means anything by it. Dropped on both backends, so
    # they store the same. JSON values are bound as text with NUL escaped, which both take as it is.
    return statement, _without_nul(parameters)


def _guard_text(engine: Engine) -> None:
    event.listen(engine, "before_cursor_execute", _drop_nul_parameters, retval=True)


def _set_sqlite_pragmas(dbapi_connection: Any, _record: Any, *, wal_retries: int = 0) -> None:
    cursor = dbapi_connection.cursor()
    try:
        # First, so every statement below (and after) waits for locks instead of failing.
        cursor.execute("PRAGMA busy_timeout=10000")
        cursor.execute("PRAGMA journal_mode")
        # WAL is stored in the file: only the first connection to a new database switches it.
        if cursor.fetchone()[0] not in ("wal", "memory"):
            _switch_to_wal(cursor, wal_retries)
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
    finally:
        cursor.close()


def _switch_to_wal(cursor: Any, retries: int) -> None:
    """Two processes switching a brand-new file at once can deadlock; SQLite then fails one
    immediately, without using busy_timeout, so the loser retries (the winner makes it WAL)."""
    for attempt in range(retries + 1):
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError:
            if attempt == retries:
                raise
            time.sleep(0.05 * (attempt + 1))


def make_engine(url: str) -> AsyncEngine:
    """An async engine; SQLite connections get WAL and a busy timeout so concurrent writers wait. Text
    parameters lose any NUL character on the way in (see _drop_nul_parameters)."""
    url = normalize_url(url)
    if _is_sqlite(url):
        _ensure_sqlite_dir(url)
        engine = create_async_engine(url, json_serializer=_json_dumps)
        event.listen(engine.sync_engine, "connect", _set_sqlite_pragmas)
    else:
        engine = create_async_engine(url, json_serializer=_json_dumps, pool_pre_ping=True)
    _guard_text(engine.sync_engine)
    return engine


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


def _make_sync_engine(url: str) -> Engine:
    """A one-off sync engine for migrations; on SQLite each transaction is BEGIN IMMEDIATE."""
    if not _is_sqlite(url):
        return create_engine(url, poolclass=NullPool, json_serializer=_json_dumps)
    _ensure_sqlite_dir(url)
    engine = create_engine(url, poolclass=NullPool, json_serializer=_json_dumps)

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, record: Any) -> None:
        _set_sqlite_pragmas(dbapi_connection, record, wal_retries=20)
        # Let SQLAlchemy emit BEGIN itself so DDL runs inside the transaction (pysqlite would not).
        dbapi_connection.isolation_level = None

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        # Take the write lock up front: a second process starting at the same moment waits here,
        # then finds the schema at head and does nothing.
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


@contextmanager
def _migration_connection(url: str) -> Iterator[Connection]:
    engine = _make_sync_engine(url)
    try:
        with engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                # Serialise concurrent starts (API and worker) so only one creates the tables.
                conn.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _MIGRATION_LOCK_ID})
            yield conn
    finally:
        engine.dispose()


def alembic_config(url: str | None = None) -> Config:
    """An alembic Config built in code (no alembic.ini needed at runtime)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    if url is not None:
        config.attributes["url"] = normalize_url(url, async_driver=False)
    return config


def run_migrations(url: str) -> None:
    """Upgrade the schema to head. Idempotent and safe when several processes start at once.

    Blocking: from async code call it through ``asyncio.to_thread``.
    """
    sync_url = normalize_url(url, async_driver=False)
    config = alembic_config(sync_url)
    with _migration_connection(sync_url) as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "head")


def rowcount(result: Result[Any]) -> int:
    """Rows an INSERT/UPDATE/DELETE touched: its result is a CursorResult, which the typing of
    ``AsyncSession.execute`` does not say.

    Not for INSERT ... ON CONFLICT DO NOTHING: psycopg reports -1 there on PostgreSQL. Whether such an
    INSERT created its row is read from RETURNING (store/repo.py claim_email, store/imports.py)."""
    return cast("CursorResult[Any]", result).rowcount
