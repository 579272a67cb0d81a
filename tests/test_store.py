"""store/ against real databases: a SQLite file always, PostgreSQL when LEADFLOW_TEST_POSTGRES_URL is set.

Each backend gets its own freshly migrated database for the module (PostgreSQL: a throwaway
``leadflow_test_<hex>`` database, dropped at the end); every test starts from empty tables.
"""

from __future__ import annotations

import asyncio
import os
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.pool import NullPool

from rules.model import (
    AssignRep,
    FollowUp,
    LeadSnapshot,
    Rep,
    RepAssigned,
    ScoreChange,
    SlaStatus,
    SourceTouch,
    StageChange,
    Touchpoint,
    TrackedEvent,
)
from store import assignments, repo
from store.db import alembic_config, make_engine, make_sessionmaker, normalize_url, run_migrations
from store.models import Base
from tests.conftest import postgres_database

HEAD = ScriptDirectory.from_config(alembic_config()).get_current_head()

PG_ENV = "LEADFLOW_TEST_POSTGRES_URL"
T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]

Sessions = async_sessionmaker[AsyncSession]


# ---------------------------------------------------------------- databases


@contextmanager
def empty_database(kind: str, tmp_path: Path) -> Iterator[str]:
    """A URL to a database with no tables yet (the SQLite file and its directory do not exist)."""
    if kind == "sqlite":
        yield f"sqlite:///{tmp_path / 'not-yet' / 'leadflow.db'}"
        return
    base = os.environ.get(PG_ENV)
    if not base:
        pytest.skip(f"{PG_ENV} is not set (e.g. postgresql://postgres@127.0.0.1:5432/test)")
    with postgres_database(base) as url:
        yield url


@pytest.fixture(scope="module", params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with empty_database(request.param, tmp_path_factory.mktemp("store")) as url:
        run_migrations(url)
        yield url


@pytest.fixture(scope="module")
async def engine(db_url: str) -> AsyncIterator[AsyncEngine]:
    eng = make_engine(db_url)
    yield eng
    await eng.dispose()


@pytest.fixture
async def sm(engine: AsyncEngine) -> Sessions:
    async with engine.begin() as conn:
        for table in reversed(Base.metadata.sorted_tables):
            await conn.execute(table.delete())
    return make_sessionmaker(engine)


def dialect_of(url: str) -> str:
    return make_url(url).get_backend_name()


# ---------------------------------------------------------------- builders


async def run(sm: Sessions, fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Call a repo function in its own session, as activities and the API do."""
    async with sm() as session:
        return await fn(session, *args, **kwargs)


def event(event_id: str, minutes: int = 0, **kw: Any) -> TrackedEvent:
    return TrackedEvent(id=event_id, type=kw.pop("type", "page_view"), at=T0 + timedelta(minutes=minutes), **kw)


def points(events: list[TrackedEvent], received: datetime) -> list[Touchpoint]:
    return [Touchpoint(e, received) for e in events]


def followup(
    key: str = "fu-1",
    *,
    status: SlaStatus = "pending",
    due_in: timedelta = timedelta(hours=24),
    rep_id: str = "rep-a",
    **kw: Any,
) -> FollowUp:
    return FollowUp(
        key=key,
        kind="first_touch",
        policy_id="sql-24h",
        rep_id=rep_id,
        team="inside-sales",
        started_at=T0,
        due_at=T0 + due_in,
        status=status,
        **kw,
    )


def snapshot(lead_id: str = "lead-1", **kw: Any) -> LeadSnapshot:
    base: dict[str, Any] = {
        "lead_id": lead_id,
        "attributes": {
            "email": f"{lead_id}@acme.test",
            "first_name": "Ada",
            "company": "Acme",
            "company_size": "250",
            "utm_source": "newsletter",
            "title": "CTO",
            "extra": [1, 2],
        },
        "stage": "mql",
        "score": 40,
        "grade": "A",
        "owner_rep_id": None,
        "owner_team": None,
        "created_at": T0,
        "updated_at": T0,
        "playbook_version": "3",
        "followup": None,
    }
    base.update(kw)
    return LeadSnapshot(**base)


def score_change(seq: int, points: float, after: float) -> ScoreChange:
    return ScoreChange(
        seq=seq,
        at=T0 + timedelta(minutes=seq),
        points=points,
        score_after=after,
        rule_id=f"rule-{seq}",
        reason=f"reason {seq}",
        event_id=f"ev-{seq}",
    )


async def make_team(sm: Sessions, key: str = "inside-sales", reps: list[repo.RepIn] | None = None) -> None:
    reps = reps if reps is not None else [repo.RepIn(f"rep-{c}", f"Rep {c.upper()}", f"{c}@x.test") for c in "abc"]
    team = repo.TeamIn(key=key, name=key.title(), manager_name="Mia", manager_email="mia@x.test", reps=reps)
    await run(sm, repo.upsert_team, team)


async def assign(
    sm: Sessions,
    key: str,
    lead_id: str | None = None,
    *,
    team: str = "inside-sales",
    strategy: str = "round_robin",
    exclude: list[str] | None = None,
    rep_id: str | None = None,
) -> RepAssigned | None:
    """The rep the store gives, or None when nobody could take the lead."""
    command = AssignRep(lead_id or f"lead-{key}", key, team, strategy, "", exclude or [], rep_id)
    answer = await run(sm, assignments.assign_rep, command, T0)
    return answer if isinstance(answer, RepAssigned) else None


# ---------------------------------------------------------------- urls and engines


def test_normalize_url() -> None:
    assert normalize_url("sqlite:///data/x.db") == "sqlite+aiosqlite:///data/x.db"
    assert normalize_url("sqlite:////abs/x.db", async_driver=False) == "sqlite:////abs/x.db"
    assert normalize_url("sqlite+aiosqlite:///x.db", async_driver=False) == "sqlite:///x.db"
    for scheme in ("postgresql", "postgres", "postgresql+psycopg", "postgresql+asyncpg"):
        for async_driver in (True, False):
            got = normalize_url(f"{scheme}://u:p%40ss@db:5432/lf?sslmode=require", async_driver=async_driver)
            assert got == "postgresql+psycopg://u:p%40ss@db:5432/lf?sslmode=require"
    for bad in ("mysql://u@h/db", "oracle+cx://h/db", "not a url"):
        with pytest.raises(ValueError, match="database URL"):
            normalize_url(bad)


async def test_sqlite_engine_pragmas_and_directory(tmp_path: Path) -> None:
    path = tmp_path / "new" / "dir" / "x.db"
    eng = make_engine(f"sqlite:///{path}")
    try:
        async with eng.connect() as conn:
            got = {
                p: (await conn.exec_driver_sql(f"PRAGMA {p}")).scalar()
                for p in ("journal_mode", "synchronous", "busy_timeout", "foreign_keys")
            }
    finally:
        await eng.dispose()
    assert got == {"journal_mode": "wal", "synchronous": 1, "busy_timeout": 10000, "foreign_keys": 1}
    assert path.exists()


# ---------------------------------------------------------------- migrations


def test_migrations_create_the_models_schema(db_url: str) -> None:
    run_migrations(db_url)  # a second run (every start) is a no-op
    eng = create_engine(normalize_url(db_url, async_driver=False), poolclass=NullPool)
    try:
        with eng.connect() as conn:
            tables = set(inspect(conn).get_table_names())
            assert tables == set(Base.metadata.tables) | {"alembic_version"}
            assert conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all() == [HEAD]
            ctx = MigrationContext.configure(conn, opts={"compare_type": True, "compare_server_default": True})
            assert compare_metadata(ctx, Base.metadata) == []
    finally:
        eng.dispose()


@pytest.mark.parametrize("kind", BACKENDS)
def test_concurrent_first_start_migrates_once(kind: str, tmp_path: Path) -> None:
    """API and worker starting together on a database that does not exist yet."""
    with empty_database(kind, tmp_path) as url:
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(run_migrations, [url] * 4))
        eng = create_engine(normalize_url(url, async_driver=False), poolclass=NullPool)
        try:
            with eng.connect() as conn:
                assert conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all() == [HEAD]
                assert "leads" in inspect(conn).get_table_names()
        finally:
            eng.dispose()


async def test_ping(sm: Sessions) -> None:
    await run(sm, repo.ping)


# ---------------------------------------------------------------- touchpoints


async def test_touchpoints_dedupe_by_event_id(sm: Sessions) -> None:
    received = T0 + timedelta(hours=1)
    batch = [event("e1", 1, url="/pricing", properties={"ref": "ad"}), event("e2", 2), event("e1", 3)]
    assert await run(sm, repo.add_touchpoints, "lead-1", batch, received) == 2
    assert await run(sm, repo.add_touchpoints, "lead-1", [event("e2", 2), event("e3", 5)], received) == 1
    assert await run(sm, repo.add_touchpoints, "lead-1", [], received) == 0
    rows = await run(sm, repo.list_touchpoints, "lead-1")
    assert [r["event_id"] for r in rows] == ["e3", "e2", "e1"]  # newest first
    first = rows[-1]
    assert first["url"] == "/pricing" and first["properties"] == {"ref": "ad"}
    assert first["occurred_at"] == T0 + timedelta(minutes=1) and first["received_at"] == received
    assert await run(sm, repo.list_touchpoints, "lead-1", limit=1) == rows[:1]
    assert await run(sm, repo.list_touchpoints, "lead-other") == []


async def test_touchpoints_large_batch(sm: Sessions) -> None:
    events = [event(f"big-{i}", i, properties={"at": T0}) for i in range(1200)]  # more than one chunk
    assert await run(sm, repo.add_touchpoints, "lead-big", events, T0) == 1200
    assert await run(sm, repo.add_touchpoints, "lead-big", events, T0) == 0
    rows = await run(sm, repo.list_touchpoints, "lead-big", limit=5000)
    assert len(rows) == 1200 and rows[0]["properties"] == {"at": T0.isoformat()}


async def test_touchpoints_are_unique_per_lead_and_event_id(sm: Sessions) -> None:
    """Two people's clients may reuse an id: each lead keeps its own event."""
    assert await run(sm, repo.add_touchpoints, "lead-a", points([event("evt-1")], T0)) == 1
    assert await run(sm, repo.add_touchpoints, "lead-b", points([event("evt-1")], T0)) == 1
    assert await run(sm, repo.add_touchpoints, "lead-a", points([event("evt-1")], T0)) == 0


async def test_the_projection_writes_touchpoints_with_their_source_unit(sm: Sessions) -> None:
    touch = SourceTouch("paid", "linkedin", "cpc", "q4", "a", "crm", T0, "e1", "LinkedIn Ads")
    first = SourceTouch("organic", "whitepaper", at=T0, origin="form")
    snap = LeadSnapshot("lead-s", {"email": "s@example.com"}, "new", 0, None, None, None, T0, T0, "v1", None)
    snap.touchpoints = [Touchpoint(event("e1", 1), T0, touch), Touchpoint(event("e2", 2), T0)]
    snap.original_source, snap.latest_source = first, touch
    await run(sm, repo.project_lead, snap)
    await run(sm, repo.project_lead, snap)  # a retried projection adds nothing
    rows = await run(sm, repo.list_touchpoints, "lead-s")
    assert [(r["event_id"], r["channel"], r["source"], r["medium"], r["campaign"], r["content"], r["term"])
            for r in rows] == [("e2", None, None, None, None, None, None),
                               ("e1", "paid", "linkedin", "cpc", "q4", "a", "crm")]  # fmt: skip
    lead = await run(sm, repo.get_lead, "lead-s")
    assert (lead["original_source"], lead["source_category"], lead["latest_source"]) == (
        "whitepaper",
        "organic",
        "linkedin",
    )


# ---------------------------------------------------------------- lead projection


async def test_project_lead_is_idempotent_and_updates(sm: Sessions) -> None:
    first = snapshot(
        score_changes=[score_change(1, 10, 10), score_change(2, 30, 40)],
        stage_changes=[StageChange(seq=1, at=T0, from_stage="new", to_stage="mql", reason="score 40")],
        followup=followup(),
        owner_rep_id="rep-a",
        owner_team="inside-sales",
    )
    await run(sm, repo.project_lead, first)
    await run(sm, repo.project_lead, first)  # activity retry

    lead = await run(sm, repo.get_lead, "lead-1")
    assert lead is not None
    assert (lead["email"], lead["company"], lead["company_size"], lead["utm_source"]) == (
        "lead-1@acme.test",
        "Acme",
        250,
        "newsletter",
    )
    assert lead["attributes"]["extra"] == [1, 2] and lead["last_name"] is None
    assert (lead["stage"], lead["score"], lead["grade"], lead["owner_rep_id"]) == ("mql", 40, "A", "rep-a")
    assert (lead["sla_status"], lead["sla_due_at"]) == ("pending", T0 + timedelta(hours=24))
    assert [c["seq"] for c in await run(sm, repo.list_score_changes, "lead-1")] == [1, 2]
    assert len(await run(sm, repo.list_stage_changes, "lead-1")) == 1
    assert [f["status"] for f in await run(sm, repo.list_followups, status=None, limit=10, offset=0)] == ["pending"]

    later = T0 + timedelta(days=2)
    second = snapshot(
        attributes={**first.attributes, "company_size": "51-200", "last_name": "Lovelace"},
        stage="sql",
        score=75,
        updated_at=later,
        owner_rep_id="rep-a",
        owner_team="inside-sales",
        score_changes=[score_change(2, 30, 40), score_change(3, 35, 75)],  # seq 2 again: ignored
        stage_changes=[StageChange(seq=2, at=later, from_stage="mql", to_stage="sql", reason="pricing")],
        followup=followup(
            status="overdue", reminded_at=T0 + timedelta(hours=20), escalated_at=T0 + timedelta(hours=24)
        ),
    )
    await run(sm, repo.project_lead, second)
    await run(sm, repo.project_lead, second)

    lead = await run(sm, repo.get_lead, "lead-1")
    assert (lead["stage"], lead["score"], lead["last_name"], lead["company_size"]) == ("sql", 75, "Lovelace", None)
    assert (lead["sla_status"], lead["updated_at"], lead["created_at"]) == ("overdue", later, T0)
    changes = await run(sm, repo.list_score_changes, "lead-1")
    assert [(c["seq"], c["points"], c["score_after"]) for c in changes] == [(1, 10, 10), (2, 30, 40), (3, 35, 75)]
    assert changes[2]["rule_id"] == "rule-3" and changes[2]["event_id"] == "ev-3"
    assert [s["to_stage"] for s in await run(sm, repo.list_stage_changes, "lead-1")] == ["mql", "sql"]
    (fu,) = await run(sm, repo.list_followups, status=None, limit=10, offset=0)
    assert (fu["status"], fu["escalated_at"], fu["reminded_at"]) == (
        "overdue",
        T0 + timedelta(hours=24),
        T0 + timedelta(hours=20),
    )

    # A stale retry of the first projection arriving late must not roll the lead back.
    await run(sm, repo.project_lead, first)
    lead = await run(sm, repo.get_lead, "lead-1")
    assert (lead["stage"], lead["score"], lead["sla_status"]) == ("sql", 75, "overdue")
    assert [f["status"] for f in await run(sm, repo.list_followups, status=None, limit=10, offset=0)] == ["overdue"]
    assert await run(sm, repo.get_lead, "lead-missing") is None


async def test_project_lead_without_timestamps(sm: Sessions) -> None:
    await run(sm, repo.project_lead, snapshot("lead-nt", created_at=None, updated_at=None, attributes={}))
    lead = await run(sm, repo.get_lead, "lead-nt")
    assert lead["created_at"].tzinfo is UTC and lead["email"] is None and lead["attributes"] == {}
    # Odd attribute values never fail a projection (it would retry forever).
    odd = {"company_size": 10**12, "email": "  ", "title": 42, "when": T0}
    await run(sm, repo.project_lead, snapshot("lead-odd", attributes=odd))
    lead = await run(sm, repo.get_lead, "lead-odd")
    assert (lead["company_size"], lead["email"], lead["title"]) == (None, None, "42")
    assert lead["attributes"]["when"] == T0.isoformat()


async def test_timezone_round_trip_is_aware_utc(sm: Sessions) -> None:
    cest = timezone(timedelta(hours=2))
    local = datetime(2026, 6, 1, 14, 30, 15, 123456, tzinfo=cest)
    await run(sm, repo.project_lead, snapshot("lead-tz", created_at=local, updated_at=local.replace(tzinfo=None)))
    lead = await run(sm, repo.get_lead, "lead-tz")
    assert lead["created_at"] == local and lead["created_at"].tzinfo is UTC
    assert lead["created_at"].hour == 12 and lead["created_at"].microsecond == 123456
    # Naive values are taken as UTC.
    assert lead["updated_at"] == local.replace(tzinfo=UTC) and lead["updated_at"].tzinfo is UTC


# ---------------------------------------------------------------- follow-ups


async def test_list_followups_filters_and_orders(sm: Sessions) -> None:
    await make_team(sm)
    cases: list[tuple[str, SlaStatus, timedelta]] = [
        ("lead-late2", "overdue", timedelta(hours=-1)),
        ("lead-ok", "pending", timedelta(hours=3)),
        ("lead-late1", "overdue", timedelta(hours=-2)),
        ("lead-met", "met", timedelta(hours=-5)),
    ]
    for lead_id, status, due_in in cases:
        fu = followup(f"fu-{lead_id}", status=status, due_in=due_in, rep_id="rep-b")
        await run(
            sm,
            repo.project_lead,
            snapshot(lead_id, followup=fu, attributes={"email": f"{lead_id}@acme.test", "company": f"Co {lead_id}"}),
        )

    now = T0 + timedelta(minutes=30)
    overdue = await run(sm, repo.list_followups, status="overdue", limit=10, offset=0, now=now)
    assert [f["lead_id"] for f in overdue] == ["lead-late1", "lead-late2"]
    top = overdue[0]
    assert (top["company"], top["email"], top["rep_id"], top["rep_name"], top["team_key"]) == (
        "Co lead-late1",
        "lead-late1@acme.test",
        "rep-b",
        "Rep B",
        "inside-sales",
    )
    assert top["due_at"] == T0 - timedelta(hours=2) and top["overdue_by_seconds"] == 2.5 * 3600
    assert top["started_at"] == T0 and top["met_at"] is None and top["escalated_at"] is None

    everything = await run(sm, repo.list_followups, status=None, limit=10, offset=0, now=now)
    assert [f["lead_id"] for f in everything] == ["lead-met", "lead-late1", "lead-late2", "lead-ok"]
    assert everything[0]["overdue_by_seconds"] == 0 and everything[-1]["overdue_by_seconds"] == 0
    page = await run(sm, repo.list_followups, status=None, limit=2, offset=1, now=now)
    assert [f["lead_id"] for f in page] == ["lead-late1", "lead-late2"]
    assert await run(sm, repo.list_followups, status="pending", limit=10, offset=0) != []


# ---------------------------------------------------------------- teams


async def test_upsert_team_replaces_rep_set(sm: Sessions) -> None:
    await make_team(sm)
    await make_team(sm, "enterprise", [repo.RepIn("rep-z", "Zed", "z@x.test", capacity=5, weight=2)])
    assert await run(sm, repo.count_teams) == 2
    # Re-upsert inside-sales: rep-b dropped (kept, inactive), rep-z moves in, rep-c renamed.
    await make_team(
        sm,
        reps=[
            repo.RepIn("rep-a", "Rep A", "a@x.test"),
            repo.RepIn("rep-c", "Cee", "c@x.test"),
            repo.RepIn("rep-z", "Zed", "z@x.test", capacity=5, weight=2),
        ],
    )
    teams = {t["key"]: t for t in await run(sm, repo.list_teams)}
    assert await run(sm, repo.count_teams) == 2
    inside = teams["inside-sales"]
    assert (inside["name"], inside["manager_name"], inside["manager_email"]) == ("Inside-Sales", "Mia", "mia@x.test")
    reps = {r["id"]: r for r in inside["reps"]}
    assert {k: r["active"] for k, r in reps.items()} == {"rep-a": True, "rep-b": False, "rep-c": True, "rep-z": True}
    assert reps["rep-c"]["name"] == "Cee" and (reps["rep-z"]["capacity"], reps["rep-z"]["weight"]) == (5, 2)
    assert reps["rep-a"]["open_assignments"] == 0 and teams["enterprise"]["reps"] == []


# ---------------------------------------------------------------- assignment


async def test_round_robin_rotates_and_wraps(sm: Sessions) -> None:
    await make_team(sm)
    picks = [await assign(sm, f"k{i}") for i in range(7)]
    assert [p.rep.id for p in picks] == ["rep-a", "rep-b", "rep-c", "rep-a", "rep-b", "rep-c", "rep-a"]
    first = picks[0]
    assert first.rep == Rep("rep-a", "Rep A", "a@x.test", "inside-sales", "Mia", "mia@x.test")
    assert first.reason == "round-robin in team inside-sales"


async def test_round_robin_skips_inactive_and_excluded(sm: Sessions) -> None:
    await make_team(
        sm,
        reps=[
            repo.RepIn("rep-a", "A", "a@x.test"),
            repo.RepIn("rep-b", "B", "b@x.test", active=False),
            repo.RepIn("rep-c", "C", "c@x.test"),
        ],
    )
    assert [(await assign(sm, f"k{i}")).rep.id for i in range(3)] == ["rep-a", "rep-c", "rep-a"]
    assert (await assign(sm, "k3", exclude=["rep-c"])).rep.id == "rep-a"
    assert (await assign(sm, "k4", exclude=["rep-a"])).rep.id == "rep-c"


async def test_assignment_is_idempotent_by_key(sm: Sessions) -> None:
    await make_team(sm)
    first = await assign(sm, "same", "lead-1")
    again = await assign(sm, "same", "lead-1")
    assert again == first
    assert len(await run(sm, assignments.list_assignments, lead_id="lead-1")) == 1
    assert (await assign(sm, "next")).rep.id == "rep-b"  # the retry did not move the cursor


async def test_capacity_counts_open_assignments_only(sm: Sessions) -> None:
    await make_team(
        sm, reps=[repo.RepIn("rep-a", "A", "a@x.test", capacity=1), repo.RepIn("rep-b", "B", "b@x.test", capacity=2)]
    )
    assert [(await assign(sm, f"k{i}")).rep.id for i in range(3)] == ["rep-a", "rep-b", "rep-b"]
    assert await assign(sm, "k3") is None  # everyone full

    assert await assign(sm, "k1-again", "lead-k1", exclude=["rep-b"]) is None  # rep-a is full
    assert await assign(sm, "k0-again", "lead-k0", exclude=["rep-a"]) is None  # rep-b is full
    # Reassigning a lead to its own rep: its current assignment does not count against capacity.
    same = await assign(sm, "k0-third", "lead-k0")
    assert same is not None and same.rep.id == "rep-a"
    history = await run(sm, assignments.list_assignments, lead_id="lead-k0")
    assert [(a["key"], a["open"]) for a in history] == [("k0", False), ("k0-third", True)]
    teams = await run(sm, repo.list_teams)
    assert {r["id"]: r["open_assignments"] for r in teams[0]["reps"]} == {"rep-a": 1, "rep-b": 2}

    # Raise capacity: rep-a can take one more.
    await make_team(
        sm, reps=[repo.RepIn("rep-a", "A", "a@x.test", capacity=2), repo.RepIn("rep-b", "B", "b@x.test", capacity=2)]
    )
    assert (await assign(sm, "k4")).rep.id == "rep-a"


async def test_nobody_available_returns_none(sm: Sessions) -> None:
    assert await assign(sm, "k-unknown", team="no-such-team") is None
    await make_team(sm, "dormant", [repo.RepIn("rep-d", "D", "d@x.test", active=False)])
    assert await assign(sm, "k-dormant", team="dormant") is None
    await make_team(sm)
    assert await assign(sm, "k-excluded", exclude=["rep-a", "rep-b", "rep-c"]) is None
    assert await run(sm, assignments.list_assignments) == []
    with pytest.raises(ValueError, match="strategy"):
        await assign(sm, "k-bad", strategy="random")


async def test_least_loaded_picks_fewest_open(sm: Sessions) -> None:
    await make_team(sm)
    for key, rep in [("p1", "rep-a"), ("p2", "rep-a"), ("p3", "rep-c")]:  # loads: a=2, b=0, c=1
        await assign(sm, key, exclude=[r for r in ("rep-a", "rep-b", "rep-c") if r != rep])
    picks = [(await assign(sm, f"ll{i}", strategy="least_loaded")).rep.id for i in range(4)]
    # b (0) -> b/c tie at 1: id order, b -> c (1) -> all at 2: id order, a
    assert picks == ["rep-b", "rep-b", "rep-c", "rep-a"]
    choice = await assign(sm, "ll-last", strategy="least_loaded")
    assert choice.reason.startswith("least-loaded (") and choice.reason.endswith("in team inside-sales")


async def test_concurrent_assignments_are_serialised(sm: Sessions) -> None:
    await make_team(sm, "duo", [repo.RepIn("rep-x", "X", "x@x.test"), repo.RepIn("rep-y", "Y", "y@x.test")])
    picks = await asyncio.gather(*(assign(sm, f"c{i}", team="duo") for i in range(20)))
    assert Counter(p.rep.id for p in picks) == {"rep-x": 10, "rep-y": 10}
    rows = await run(sm, assignments.list_assignments)
    assert len(rows) == 20 and len({r["key"] for r in rows}) == 20

    # The same key from several callers at once: one assignment, one answer.
    same = await asyncio.gather(*(assign(sm, "dup", "lead-dup", team="duo") for _ in range(8)))
    assert len({p.rep.id for p in same}) == 1
    assert len(await run(sm, assignments.list_assignments, lead_id="lead-dup")) == 1


# ---------------------------------------------------------------- emails


async def test_email_ledger(sm: Sessions) -> None:
    common: dict[str, Any] = {
        "lead_id": "lead-1",
        "kind": "nurture",
        "template": "welcome",
        "to_addr": "ada@acme.test",
        "subject": "Hi",
    }
    assert await run(sm, repo.email_status, "em-1") is None

    async def record(key: str, status: str, minutes: int, error: str | None = None, mid: str | None = None) -> None:
        await run(
            sm,
            repo.record_email,
            key=key,
            message_id=mid,
            status=status,
            error=error,
            now=T0 + timedelta(minutes=minutes),
            **common,
        )

    # One call per attempt's outcome: a transient failure, then success on the retry.
    await record("em-1", "sending", 0, error="421 try later", mid="<m1@lf>")
    assert await run(sm, repo.email_status, "em-1") == "sending"
    await record("em-1", "sent", 5)  # no message_id given: the stored one stays
    await record("em-2", "failed", 1, error="550 no such user", mid="<m2@lf>")
    assert await run(sm, repo.email_status, "em-1") == "sent"

    rows = {r["key"]: r for r in await run(sm, repo.list_emails, lead_id="lead-1")}
    one, two = rows["em-1"], rows["em-2"]
    assert (one["status"], one["attempts"], one["error"], one["message_id"]) == ("sent", 2, None, "<m1@lf>")
    assert (one["created_at"], one["sent_at"], one["subject"]) == (T0, T0 + timedelta(minutes=5), "Hi")
    assert (two["status"], two["attempts"], two["error"], two["sent_at"]) == ("failed", 1, "550 no such user", None)
    assert [r["key"] for r in await run(sm, repo.list_emails)] == ["em-2", "em-1"]  # newest first
    assert await run(sm, repo.list_emails, lead_id="lead-none") == []


async def test_weighted_shares_follow_the_weights(sm: Sessions) -> None:
    await make_team(sm, reps=[repo.RepIn("rep-a", "A", "a@x.test", weight=3), repo.RepIn("rep-b", "B", "b@x.test")])
    picks = [(await assign(sm, f"w{i}", strategy="weighted")).rep.id for i in range(40)]
    assert (picks.count("rep-a"), picks.count("rep-b")) == (30, 10)
    assert all(picks[i : i + 4].count("rep-b") == 1 for i in range(0, 40, 4))  # spread out, not bunched


async def test_named_rep_first_then_the_team_strategy(sm: Sessions) -> None:
    await make_team(sm)
    named = await assign(sm, "n1", rep_id="rep-c")
    assert (named.rep.id, named.reason) == ("rep-c", "named rep in team inside-sales")
    await run(sm, repo.set_rep_availability, "rep-c", T0 + timedelta(days=7))
    fallback = await assign(sm, "n2", rep_id="rep-c")
    assert fallback.rep.id != "rep-c" and fallback.reason.startswith("rep-c unavailable; round-robin")


async def test_out_of_office_reps_get_no_leads_until_they_are_back(sm: Sessions) -> None:
    await make_team(sm, reps=[repo.RepIn("rep-a", "A", "a@x.test"), repo.RepIn("rep-b", "B", "b@x.test")])
    assert await run(sm, repo.set_rep_availability, "rep-a", T0 + timedelta(hours=1))
    assert {(await assign(sm, f"o{i}")).rep.id for i in range(4)} == {"rep-b"}
    await run(sm, repo.set_rep_availability, "rep-b", T0 + timedelta(hours=1))
    assert await assign(sm, "o-none") is None  # everybody away: the workflow queues the lead
    assert await run(sm, repo.set_rep_availability, "rep-a", None)
    assert (await assign(sm, "o-back")).rep.id == "rep-a"
    assert not await run(sm, repo.set_rep_availability, "rep-nobody", None)
