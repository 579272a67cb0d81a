"""The simulator routes like production: the same sequence of assignments through the store (SQLite, and
PostgreSQL when LEADFLOW_TEST_POSTGRES_URL is set) and through the simulator's in-memory teams
(rules/team_book.py) chooses the same reps, for every strategy, with capacity, out-of-office and inactive
reps, exclusions, named reps, reassignments and leads that leave their rep (capacity released)."""

from __future__ import annotations

import os
import random
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from rules import load_playbook_text
from rules.assignment import STRATEGIES, TeamMember, TeamSnapshot
from rules.model import AssignmentFailed, AssignRep, CapacityHeld, LeadSnapshot, RepAssigned
from rules.simulate import Scenario, simulate
from rules.team_book import TeamBook
from settings import ROOT
from store import assignments, repo
from store.db import make_engine, make_sessionmaker, run_migrations
from store.models import Base
from tests.conftest import PG_ENV, postgres_database

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
DEFAULT = load_playbook_text((ROOT / "playbooks" / "default.yaml").read_text())
BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
Sessions = async_sessionmaker[AsyncSession]


@dataclass(frozen=True)
class RepSpec:
    id: str
    capacity: int | None = None
    weight: int = 1
    active: bool = True
    away_until: datetime | None = None


TEAM = "inside-sales"
REPS = [
    RepSpec("rep-a", capacity=None, weight=3),
    RepSpec("rep-b", capacity=3, weight=1),
    RepSpec("rep-c", capacity=2, weight=2),
    RepSpec("rep-d", capacity=None, weight=1, away_until=T0 + timedelta(hours=2)),
    RepSpec("rep-e", active=False),
    # Ids that sort differently under a PostgreSQL collation than in plain string order.
    RepSpec("Rep-F", capacity=4, weight=2),
    RepSpec("rep_g", capacity=1),
]


@pytest.fixture(scope="module", params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if request.param == "sqlite":
        url = f"sqlite:///{Path(tmp_path_factory.mktemp('parity')) / 'leadflow.db'}"
        run_migrations(url)
        yield url
        return
    base = os.environ.get(PG_ENV)
    if not base:
        pytest.skip(f"{PG_ENV} is not set (e.g. postgresql://postgres@127.0.0.1:5432/test)")
    with postgres_database(base) as url:
        run_migrations(url)
        yield url


@pytest.fixture
async def sm(db_url: str) -> AsyncIterator[Sessions]:
    engine = make_engine(db_url)
    async with engine.begin() as conn:
        for table in reversed(Base.metadata.sorted_tables):
            await conn.execute(table.delete())
    yield make_sessionmaker(engine)
    await engine.dispose()


def team_for_store() -> repo.TeamIn:
    reps = [
        repo.RepIn(r.id, r.id.title(), f"{r.id}@x.test", r.active, r.capacity, r.weight, r.away_until) for r in REPS
    ]
    return repo.TeamIn(TEAM, "Inside sales", "Mia", "mia@x.test", reps)


def team_for_simulator() -> TeamSnapshot:
    members = tuple(
        TeamMember(r.id, r.id.title(), f"{r.id}@x.test", r.active, r.capacity, r.weight, r.away_until) for r in REPS
    )
    return TeamSnapshot(TEAM, "Mia", "mia@x.test", None, members)


def next_command(rng: random.Random, n: int, strategy: str, owners: dict[str, str]) -> AssignRep:
    """A new lead (sometimes excluding a rep, sometimes naming one), or a lead taken away from its rep
    (an SLA miss: the rep is excluded)."""
    roll = rng.random()
    if owners and roll < 0.25:
        lead = rng.choice(sorted(owners))
        exclude, named = [owners[lead]], None
    else:
        lead = f"lead-{n}"
        exclude = rng.sample([r.id for r in REPS], k=rng.choice([0, 0, 1]))
        named = rng.choice([r.id for r in REPS]) if roll > 0.85 else None
    return AssignRep(lead, f"{lead}:assign:{n}", TEAM, strategy, "test", exclude, named)


def left_sales(lead_id: str, at: datetime) -> LeadSnapshot:
    """The lead's projection once it holds nobody's capacity."""
    return LeadSnapshot(lead_id, {}, "recycled", 0, None, None, None, T0, at, "v1", None, capacity=CapacityHeld(None))


def summary(answer: RepAssigned | AssignmentFailed) -> tuple[str, str]:
    return (answer.rep.id, answer.reason) if isinstance(answer, RepAssigned) else ("-", answer.reason)


@pytest.mark.parametrize("strategy", STRATEGIES)
async def test_the_simulator_chooses_the_reps_production_chooses(sm: Sessions, strategy: str) -> None:
    async with sm() as session:
        await repo.upsert_team(session, team_for_store(), now=T0)
    book = TeamBook([team_for_simulator()])
    rng, owners = random.Random(strategy), {}
    production, simulated = [], []
    for n in range(45):
        at = T0 + timedelta(minutes=5 * n)  # past the away rep's return half-way
        command = next_command(rng, n, strategy, owners)
        async with sm() as session:
            production.append(summary(await assignments.assign_rep(session, command, at)))
        simulated.append(summary(book.assign(command, at)))
        if production[-1][0] != "-":
            owners[command.lead_id] = production[-1][0]
        if owners and rng.random() < 0.2:  # a lead leaves its rep (recycled, won, lost): capacity frees
            gone = rng.choice(sorted(owners))
            del owners[gone]
            async with sm() as session:
                await repo.project_lead(session, left_sales(gone, at))
            book.settle(gone, CapacityHeld(None))
    assert production == simulated
    # The sequence meets what it is meant to: the away rep back, the inactive one never, a full rep freed.
    chosen = [rep for rep, _ in production]
    assert "rep-d" in chosen and "rep-e" not in chosen
    assert sum(1 for rep, _ in production if rep == "rep_g") > 1  # capacity 1, freed and taken again
    # And the records agree: the same assignments open, the same closed.
    async with sm() as session:
        stored = await assignments.list_assignments(session)
    assert {(r["key"], r["rep_id"], r["open"]) for r in stored} == {
        (r.key, r.rep_id, r.open) for r in book.records.values()
    }


def sla_breach_with(reps: list[dict[str, object]]) -> Scenario:
    scenario = yaml.safe_load((ROOT / "playbooks/examples/sla_breach.yaml").read_text())
    scenario.pop("expect")
    return Scenario.model_validate({**scenario, "reps": reps})


def test_a_scenario_routes_with_capacity_and_out_of_office_as_production_does() -> None:
    aiko = {"id": "rep-aiko", "name": "Aiko", "email": "aiko@example.com", "team": "inside-sales"}
    ben = {"id": "rep-ben", "name": "Ben", "email": "ben@example.com", "team": "inside-sales"}
    # Aiko is away for the day: Ben gets the lead, and after Ben misses the SLA nobody is left to take it.
    away = simulate(DEFAULT, sla_breach_with([{**aiko, "away_for": "1d"}, ben]))
    routed = [e.detail for e in away.trace if e.kind == "assign"]
    assert routed == [
        {"rep": "rep-ben", "team": "inside-sales", "reason": "default team; round-robin in team inside-sales"},
        {"rep": None, "queued_in": "inside-sales"},
    ]
    # Aiko is at capacity (one lead already open): Ben again.
    full = simulate(DEFAULT, sla_breach_with([{**aiko, "capacity": 1, "open_leads": 1}, ben]))
    assert next(e.detail["rep"] for e in full.trace if e.kind == "assign") == "rep-ben"
    # A stand-in team for a scenario that names no reps; the store's teams when the API passes them.
    stand_in = simulate(DEFAULT, sla_breach_with([]))
    assert stand_in.final["owner"] == "inside-sales-rep-2"
    store_team = TeamSnapshot("inside-sales", None, None, "rep-x", (TeamMember("rep-x", "X", "x@x.test"),))
    assert simulate(DEFAULT, sla_breach_with([]), teams=[store_team]).final["queued_team"] == "inside-sales"
