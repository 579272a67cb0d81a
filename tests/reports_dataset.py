"""A deterministic population of a few hundred leads for the report tests: first a *plan* (what happened
to each lead, in plain terms: how far it got, when it entered each stage, what it was worth, where it
came from), then a writer that puts the plan into the store exactly as the projections would.

The tests compute their expected figures from the plan with their own arithmetic, never by calling the
report code, so a wrong report cannot agree with itself.

Months are shaped to trip the alarms on purpose: February has many leads without a source (tracking is
broken), March is dominated by google_ads (concentration risk); January is healthy.
"""

from __future__ import annotations

import asyncio
import os
import random
from collections.abc import AsyncIterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from rules.report_facts import CostFacts
from store import costs, repo
from store.db import make_engine, make_sessionmaker, run_migrations
from store.models import FollowUpRow, Lead, StageChangeRow, Touchpoint
from tests.conftest import DEMO_TEAMS, PG_ENV, postgres_database

STAGES = ["new", "mql", "sql", "opportunity", "customer"]
SOURCES = {
    "google_ads": "paid",
    "linkedin_ads": "paid",
    "organic_search": "organic",
    "webinar": "event",
    "referral": "referral",
    "newsletter": "email",
    "twitter": "social",
}
CHANNELS = {
    "paid": "cpc",
    "organic": "search",
    "event": "event",
    "referral": "referral",
    "email": "email",
    "social": "social",
}
MONTHS = {"2026-01": (date(2026, 1, 1), 31), "2026-02": (date(2026, 2, 1), 28), "2026-03": (date(2026, 3, 1), 31)}
# Per month: (chance a lead has no source, weight of google_ads against 1 for each other source).
MONTH_SHAPE = {"2026-01": (0.04, 1.0), "2026-02": (0.2, 1.0), "2026-03": (0.03, 9.0)}
FURTHEST = [("new", 30), ("mql", 25), ("sql", 20), ("opportunity", 10), ("customer", 15)]
AMOUNTS = [Decimal("4800.00"), Decimal("12000.50"), Decimal("30000.00"), Decimal("7333.33")]
TEAMS = {"inside-sales": ["rep-aiko", "rep-ben"], "japan": ["rep-yui"]}
# The moment the tests treat as "now" for open follow-ups.
NOW = datetime(2026, 4, 15, tzinfo=UTC)


@dataclass
class TouchPlan:
    at: datetime
    source: str | None
    channel: str | None
    campaign: str | None


@dataclass
class FollowUpPlan:
    team: str
    rep_id: str
    started_at: datetime
    due_at: datetime
    met_at: datetime | None
    status: str


@dataclass
class LeadPlan:
    lead_id: str
    month: str
    created_at: datetime
    source: str | None
    category: str | None
    campaign: str | None
    furthest: str
    # Stages entered through a stage change, in order, with when (mql is missing when the lead jumped new -> sql).
    entered: list[tuple[str, datetime]]
    disqualified_at: datetime | None = None
    won_amount: Decimal | None = None
    currency: str | None = None
    touches: list[TouchPlan] = field(default_factory=list)
    followup: FollowUpPlan | None = None

    @property
    def won_at(self) -> datetime | None:
        return dict(self.entered).get("customer")


@dataclass
class Plan:
    leads: list[LeadPlan]
    costs: list[CostFacts]


def _weighted(rng: random.Random, pairs: list[tuple[str, float]]) -> str:
    return rng.choices([name for name, _ in pairs], weights=[weight for _, weight in pairs])[0]


def _lead(rng: random.Random, number: int, month_label: str) -> LeadPlan:
    first_day, days = MONTHS[month_label]
    unknown_chance, google_weight = MONTH_SHAPE[month_label]
    created = datetime(first_day.year, first_day.month, first_day.day, tzinfo=UTC) + timedelta(
        days=rng.randrange(days), hours=rng.randrange(24), minutes=rng.randrange(60)
    )
    source: str | None = None
    if rng.random() >= unknown_chance:
        source = _weighted(rng, [(s, google_weight if s == "google_ads" else 1.0) for s in SOURCES])
    category = SOURCES[source] if source else None
    campaign = f"{source}-{rng.choice(['spring', 'brand'])}" if source else None
    furthest = _weighted(rng, [(name, float(weight)) for name, weight in FURTHEST])
    entered: list[tuple[str, datetime]] = []
    at = created
    skip_mql = STAGES.index(furthest) >= 2 and rng.random() < 0.15
    for stage in STAGES[1 : STAGES.index(furthest) + 1]:
        if stage == "mql" and skip_mql:
            continue
        at += timedelta(hours=rng.randint(2, 24 * 20), minutes=rng.randrange(60))
        entered.append((stage, at))
    plan = LeadPlan(f"lead-{number:04d}", month_label, created, source, category, campaign, furthest, entered)
    if furthest == "customer":
        plan.won_amount = rng.choice(AMOUNTS)
        plan.currency = "EUR" if rng.random() < 0.1 else "USD"
    elif rng.random() < 0.25:
        plan.disqualified_at = at + timedelta(hours=rng.randint(1, 24 * 10))
    plan.touches = _touches(rng, plan, at)
    if STAGES.index(furthest) >= 2:
        plan.followup = _followup(rng, dict(entered)["sql"])
    return plan


def _touches(rng: random.Random, plan: LeadPlan, last_move: datetime) -> list[TouchPlan]:
    first = plan.created_at - timedelta(days=rng.randint(0, 10), hours=rng.randrange(24))
    channel = CHANNELS[plan.category] if plan.category else None
    touches = [TouchPlan(first, plan.source, channel, plan.campaign)]
    # Later touches from any source, some of them after the conversion (which must not count).
    for _ in range(rng.randint(0, 3)):
        other = rng.choice(list(SOURCES))
        at = first + timedelta(seconds=rng.randint(60, int((last_move - first).total_seconds()) + 5 * 86400))
        touches.append(TouchPlan(at, other, CHANNELS[SOURCES[other]], f"{other}-{rng.choice(['spring', 'brand'])}"))
    if rng.random() < 0.5:  # an email open: no source, so it credits nobody, but it is a touch in time
        touches.append(TouchPlan(plan.created_at + timedelta(hours=rng.randint(-48, 200)), None, None, None))
    return touches


def _followup(rng: random.Random, started: datetime) -> FollowUpPlan:
    team = "japan" if rng.random() < 0.3 else "inside-sales"
    rep = rng.choice(TEAMS[team])
    roll = rng.random()
    if roll < 0.75:
        met = started + timedelta(minutes=rng.randint(10, 30 * 60))
        return FollowUpPlan(team, rep, started, started + timedelta(hours=24), met, "met")
    if roll < 0.9:
        return FollowUpPlan(team, rep, started, started + timedelta(hours=24), None, "overdue")
    # A long policy: still open at NOW when it started late enough.
    return FollowUpPlan(team, rep, started, started + timedelta(days=30), None, "pending")


def _costs() -> list[CostFacts]:
    rows = []
    for label, (first, days) in MONTHS.items():
        last = first + timedelta(days=days - 1)
        rows.append(CostFacts("google_ads", "paid", "", first, last, Decimal("5000.00"), "USD"))
        rows.append(CostFacts("linkedin_ads", None, "", first, last, Decimal("3000.00"), "USD"))
        rows.append(CostFacts("newsletter", None, "", first, last, Decimal("400.00"), "USD"))
        if label == "2026-02":
            rows.append(CostFacts("linkedin_ads", None, "linkedin_ads-spring", first, last, Decimal("1500.00"), "USD"))
    # One quarter-long row (prorated by day), one in another currency, one source nobody came from yet.
    rows.append(CostFacts("webinar", None, "", date(2026, 1, 1), date(2026, 3, 31), Decimal("9000.00"), "USD"))
    rows.append(CostFacts("google_ads", "paid", "", date(2026, 1, 1), date(2026, 1, 31), Decimal("1000.00"), "EUR"))
    rows.append(CostFacts("podcast", "social", "", date(2026, 3, 1), date(2026, 3, 31), Decimal("700.00"), "USD"))
    return rows


def generate(seed: int = 8, per_month: int = 100) -> Plan:
    rng = random.Random(seed)
    leads = [_lead(rng, i * len(MONTHS) + m, label) for i in range(per_month) for m, label in enumerate(MONTHS)]
    return Plan(leads, _costs())


def _stage(plan: LeadPlan) -> str:
    return "disqualified" if plan.disqualified_at else plan.furthest


async def write(sessions: async_sessionmaker[AsyncSession], plan: Plan) -> None:
    """The plan as rows, through the store's own tables (and its cost writer)."""
    async with sessions() as session:
        for lead in plan.leads:
            session.add(
                Lead(
                    id=lead.lead_id,
                    email=f"{lead.lead_id}@example.com",
                    source=lead.source,
                    original_source=lead.source,
                    latest_source=lead.touches[-1].source or lead.source,
                    source_category=lead.category,
                    utm_campaign=lead.campaign,
                    attributes={},
                    stage=_stage(lead),
                    score=0,
                    won_amount=lead.won_amount,
                    won_currency=lead.currency,
                    won_at=lead.won_at,
                    lost_reason="no budget" if lead.disqualified_at else None,
                    created_at=lead.created_at,
                    updated_at=lead.created_at,
                )
            )
            moves = [*lead.entered] + ([("disqualified", lead.disqualified_at)] if lead.disqualified_at else [])
            previous = "new"
            for seq, (stage, at) in enumerate(moves, start=1):
                session.add(
                    StageChangeRow(
                        lead_id=lead.lead_id, seq=seq, at=at, from_stage=previous, to_stage=stage, reason="plan"
                    )
                )
                previous = stage
            for n, touch in enumerate(lead.touches):
                session.add(
                    Touchpoint(
                        event_id=f"{lead.lead_id}-t{n}",
                        lead_id=lead.lead_id,
                        type="page_view" if touch.source else "email_open",
                        properties={},
                        occurred_at=touch.at,
                        received_at=touch.at,
                        source=touch.source,
                        channel=touch.channel,
                        campaign=touch.campaign,
                        medium=touch.channel,
                    )
                )
            if lead.followup is not None:
                f = lead.followup
                session.add(
                    FollowUpRow(
                        key=f"{lead.lead_id}:fu:1",
                        lead_id=lead.lead_id,
                        rep_id=f.rep_id,
                        team_key=f.team,
                        kind="first_touch",
                        policy_id="plan",
                        status=f.status,
                        started_at=f.started_at,
                        due_at=f.due_at,
                        met_at=f.met_at,
                        updated_at=f.met_at or f.started_at,
                    )
                )
        await session.commit()
        await costs.put_costs(session, plan.costs)


# ---------------------------------------------------------------- the plan in a store, and plain arithmetic on it

BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(scope="module", params=BACKENDS)
async def planned_store(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[tuple[Plan, async_sessionmaker[AsyncSession]]]:
    """The generated plan written into a freshly migrated store, once per backend and test module."""
    plan = generate()
    with ExitStack() as stack:
        if request.param == "sqlite":
            url = f"sqlite:///{tmp_path_factory.mktemp('reports') / 'leadflow.db'}"
        else:
            base = os.environ.get(PG_ENV)
            if not base:
                pytest.skip(f"{PG_ENV} is not set (e.g. postgresql://postgres@127.0.0.1:5432/test)")
            url = stack.enter_context(postgres_database(base))
        await asyncio.to_thread(run_migrations, url)
        engine = make_engine(url)
        sessions = make_sessionmaker(engine)
        async with sessions() as session:
            for team in DEMO_TEAMS:
                await repo.upsert_team(session, team)
        await write(sessions, plan)
        yield plan, sessions
        await engine.dispose()


def reached_at(lead: LeadPlan, stage: str) -> datetime | None:
    """When the plan says the lead got to ``stage`` (a skipped mql is passed on the way to sql)."""
    if STAGES.index(lead.furthest) < STAGES.index(stage):
        return None
    if stage == "new":
        return lead.created_at
    times = dict(lead.entered)
    return times.get(stage, times.get("sql"))


def in_month(at: datetime | None, label: str) -> bool:
    return at is not None and at.strftime("%Y-%m") == label
