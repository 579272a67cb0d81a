"""Capacity counts only open ownership (issue 9 item 3): a lead recycled, disqualified, won, reassigned or erased
frees its rep for the next lead. The real engine decides, the real store (SQLite, and PostgreSQL when
LEADFLOW_TEST_POSTGRES_URL is set) assigns and projects, as the workflow's activities do."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from rules import load_playbook_text, snapshot
from rules.engine import decide
from rules.model import (
    AssignmentFailed,
    AssignRep,
    EventsReceived,
    Input,
    LeadSnapshot,
    LeadState,
    LeadUpserted,
    RepAssigned,
    TimerFired,
    TrackedEvent,
)
from store import assignments, repo
from store.db import make_engine, make_sessionmaker, run_migrations
from store.models import Base
from tests.conftest import PG_ENV, postgres_database

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
Sessions = async_sessionmaker[AsyncSession]
PLAYBOOK = load_playbook_text(
    """\
name: capacity
fields: [deal]
scoring:
  rules:
    - {id: pricing, when: 'event.type == "page_view" and contains(event.url, "/pricing")', points: 60}
stages:
  rules:
    - {id: to_sql, to: sql, when: score >= 60}
    - {id: won, to: customer, when: 'lead.deal == "won"'}
    - {id: competitor, to: disqualified, when: 'lead.company == "Rival"'}
  recycle:
    - {from: sql, after: 30d}
routing:
  default_team: inside-sales
  retry_every: 1h
""",
    version="capacity",
    templates={"welcome", "rep_new_lead", "sla_reminder", "sla_escalation"},
    teams={"inside-sales"},
)


@pytest.fixture(scope="module", params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if request.param == "sqlite":
        url = f"sqlite:///{Path(tmp_path_factory.mktemp('capacity')) / 'leadflow.db'}"
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
    sessions = make_sessionmaker(engine)
    team = repo.TeamIn(
        "inside-sales", "Inside sales", "Mia", "mia@x.test", [repo.RepIn("rep-a", "A", "a@x.test", capacity=1)]
    )
    async with sessions() as session:
        await repo.upsert_team(session, team, now=T0)
    yield sessions
    await engine.dispose()


class Lead:
    """The workflow's part by hand: decide, carry out assignments on the store, project the state."""

    def __init__(self, sm: Sessions, name: str) -> None:
        self.sm, self.state = sm, LeadState(lead_id=f"lead-{name}")
        self.answers: list[RepAssigned | AssignmentFailed] = []
        self.held_back: list[AssignRep] = []  # commands whose answer the test delivers later
        self.hold_answers = False

    async def send(self, inp: Input, at: datetime) -> None:
        decision = decide(self.state, inp, at, PLAYBOOK)
        for command in decision.commands:
            if isinstance(command, AssignRep):
                if self.hold_answers:
                    self.held_back.append(command)
                    continue
                await self.answer(command, at)
        await self.project()

    async def answer(self, command: AssignRep, at: datetime) -> None:
        async with self.sm() as session:
            answer = await assignments.assign_rep(session, command, at)
        self.answers.append(answer)
        await self.send(answer, at)

    async def project(self, snap: LeadSnapshot | None = None) -> None:
        async with self.sm() as session:
            await repo.project_lead(session, snap or snapshot(self.state, pb=PLAYBOOK))

    async def to_sql(self, at: datetime, **attributes: str) -> None:
        await self.send(LeadUpserted({"email": f"{self.state.lead_id}@x.test", **attributes}), at)
        event = TrackedEvent(f"{self.state.lead_id}-pricing", "page_view", at, "https://x.test/pricing")
        await self.send(EventsReceived([event]), at)

    @property
    def owner(self) -> str | None:
        return self.state.owner.rep.id if self.state.owner else None


async def open_load(sm: Sessions) -> int:
    async with sm() as session:
        teams = await repo.list_teams(session)
    return teams[0]["reps"][0]["open_assignments"]


async def test_a_recycled_lead_frees_its_reps_capacity_for_the_next_lead(sm: Sessions) -> None:
    first, second = Lead(sm, "first"), Lead(sm, "second")
    await first.to_sql(T0)
    assert (first.state.stage, first.owner, await open_load(sm)) == ("sql", "rep-a", 1)
    await second.to_sql(T0 + timedelta(minutes=1))
    assert second.owner is None and second.state.queued_team == "inside-sales"  # rep-a is full

    recycled_at = first.state.timers["recycle"]
    await first.send(TimerFired("recycle"), recycled_at)
    assert (first.state.stage, first.owner) == ("recycled", None)
    assert await open_load(sm) == 0  # the bug: this stayed 1, and rep-a never got another lead

    await second.send(TimerFired("assign_retry"), recycled_at + timedelta(hours=1))
    assert second.owner == "rep-a" and await open_load(sm) == 1


@pytest.mark.parametrize(("change", "stage"), [({"deal": "won"}, "customer"), ({"company": "Rival"}, "disqualified")])
async def test_a_won_or_disqualified_lead_holds_no_capacity(sm: Sessions, change: dict[str, str], stage: str) -> None:
    lead, nxt = Lead(sm, "one"), Lead(sm, "two")
    await lead.to_sql(T0)
    await lead.send(LeadUpserted(change), T0 + timedelta(days=1))
    # The owner stays on record (who won it), but the rep's capacity is free.
    assert (lead.state.stage, lead.owner, await open_load(sm)) == (stage, "rep-a", 0)
    await nxt.to_sql(T0 + timedelta(days=2))
    assert nxt.owner == "rep-a"


async def test_an_answer_that_comes_after_the_lead_left_is_closed_by_its_next_projection(sm: Sessions) -> None:
    lead = Lead(sm, "late")
    lead.hold_answers = True  # the assign activity is slow
    await lead.to_sql(T0)
    (command,) = lead.held_back
    snap_while_pending = snapshot(lead.state, pb=PLAYBOOK)
    assert snap_while_pending.capacity is not None and snap_while_pending.capacity.pending_key == command.key
    # Recycled before the answer arrives (a projection with nothing pending already ran).
    await lead.send(TimerFired("recycle"), lead.state.timers["recycle"])
    assert lead.state.pending_assignment is None
    # The activity now writes its assignment; the lead ignores the stale answer and projects again.
    await lead.answer(command, lead.state.updated_at or T0)
    assert lead.owner is None and await open_load(sm) == 0


async def test_an_older_projection_retried_late_closes_nothing(sm: Sessions) -> None:
    lead = Lead(sm, "retried")
    await lead.send(LeadUpserted({"email": "retried@x.test"}), T0)
    before_sql = snapshot(lead.state, pb=PLAYBOOK)  # no owner, nothing pending: would close everything
    pricing = TrackedEvent("p", "page_view", T0 + timedelta(minutes=1), "https://x.test/pricing")
    await lead.send(EventsReceived([pricing]), T0 + timedelta(minutes=1))
    assert lead.owner == "rep-a" and await open_load(sm) == 1
    await lead.project(before_sql)  # the retry of a projection that lost the race
    assert await open_load(sm) == 1


async def test_erasure_closes_the_leads_open_assignments(sm: Sessions) -> None:
    lead = Lead(sm, "erased")
    await lead.to_sql(T0)
    assert await open_load(sm) == 1
    async with sm() as session:
        assert await assignments.release_lead(session, lead.state.lead_id) == 1
    assert await open_load(sm) == 0
