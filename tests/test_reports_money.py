"""Money reports and attribution over the generated population (tests/reports_dataset.py), on SQLite and
PostgreSQL: every figure is recomputed here from the generator's plan with plain arithmetic."""

from __future__ import annotations

from collections import defaultdict
from datetime import date, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from rules.attribution import MODELS
from rules.report_facts import FunnelStages, month, span
from rules.report_money import TOTAL, MoneyOptions, attribution_report, budget_mix, source_report, touches_by_lead
from store import reports_facts
from tests.reports_dataset import MONTHS, SOURCES, STAGES, Plan, in_month, planned_store, reached_at

__all__ = ["planned_store"]  # the fixture, imported so pytest finds it here
FUNNEL = FunnelStages.from_order(STAGES, "sql")
Loaded = tuple[Plan, async_sessionmaker[AsyncSession]]


def cents(value: Fraction | None) -> Decimal | None:
    return None if value is None else Decimal(round(value * 100)) / 100


def rate(part: Fraction | int | None, whole: Fraction | int | None) -> float | None:
    return None if part is None or not whole else round(float(Fraction(part) / Fraction(whole)), 4)


def expected_sources(plan: Plan, label: str, by: str) -> dict[str, dict[str, Any]]:
    groups: dict[str, dict[str, Any]] = defaultdict(
        lambda: {
            "leads": 0,
            "mql": 0,
            "sql": 0,
            "opportunities": 0,
            "customers": 0,
            "paid": 0,
            "revenue": Fraction(0),
            "cost": Fraction(0),
            "costed": False,
            "other_currency": 0,
        }
    )
    for lead in plan.leads:
        if lead.month != label:
            continue
        g = groups[(lead.source if by == "source" else lead.category) or "unknown"]
        g["leads"] += 1
        for stage, name in (
            ("mql", "mql"),
            ("sql", "sql"),
            ("opportunity", "opportunities"),
            ("customer", "customers"),
        ):
            g[name] += reached_at(lead, stage) is not None
        if lead.furthest == "customer" and lead.currency == "USD":
            g["paid"] += 1
            g["revenue"] += Fraction(lead.won_amount)
        elif lead.furthest == "customer":
            g["other_currency"] += 1
    first, days = MONTHS[label]
    last = first + timedelta(days=days - 1)
    for cost in plan.costs:
        overlap = (min(cost.end, last) - max(cost.start, first)).days + 1
        if cost.currency != "USD" or overlap <= 0:
            continue
        key = cost.source if by == "source" else (cost.category or SOURCES[cost.source])
        groups[key]["cost"] += Fraction(cost.amount) * overlap / ((cost.end - cost.start).days + 1)
        groups[key]["costed"] = True
    for g in groups.values():
        # No cost row for the source: cost-based figures are unknown (null), not zero.
        g["cpl"] = cents(g["cost"] / g["leads"]) if g["costed"] and g["leads"] else None
        g["cost_per_sql"] = cents(g["cost"] / g["sql"]) if g["costed"] and g["sql"] else None
        cac = g["cost"] / g["customers"] if g["costed"] and g["customers"] else None
        deal = g["revenue"] / g["paid"] if g["paid"] else None
        g["cac"], g["average_deal"] = cents(cac), cents(deal)
        g["ltv_cac"] = rate(deal, cac)
        g["payback_months"] = rate(cac, deal / 12 if deal else None)
    return groups


@pytest.mark.parametrize("label", list(MONTHS))
@pytest.mark.parametrize("by", ["source", "category"])
async def test_source_report_matches_the_plan(planned_store: Loaded, label: str, by: str) -> None:
    plan, sessions = planned_store
    period = month(label)
    async with sessions() as session:
        leads = await reports_facts.lead_facts(session, period.start, period.end)
        costs = await reports_facts.cost_facts(session, period.start, period.end)
    rows = {row["group"]: row for row in source_report(leads, costs, FUNNEL, period, by, MoneyOptions("USD"))}
    expected = expected_sources(plan, label, by)
    assert set(rows) - {TOTAL} == set(expected)
    for group, want in expected.items():
        got = rows[group]
        assert (got["leads"], got["mql"], got["sql"], got["opportunities"], got["customers"]) == (
            want["leads"],
            want["mql"],
            want["sql"],
            want["opportunities"],
            want["customers"],
        ), group
        assert got["cost"] == cents(want["cost"]) and got["revenue"] == cents(want["revenue"]), group
        assert (got["cpl"], got["cost_per_sql"], got["cac"]) == (want["cpl"], want["cost_per_sql"], want["cac"]), group
        assert got["ltv"] == want["average_deal"] and got["ltv_cac"] == want["ltv_cac"], group
        assert got["payback_months"] == want["payback_months"], group
        assert got["won_in_other_currency"] == want["other_currency"], group
        assert got["mql_to_sql"] == rate(want["sql"], want["mql"]), group
        assert got["win_rate"] == rate(want["customers"], want["opportunities"]), group
    total = rows[TOTAL]
    assert total["leads"] == sum(1 for lead in plan.leads if lead.month == label) == 100
    assert total["cost"] == sum((cents(w["cost"]) for w in expected.values()), Decimal(0))


async def test_hand_checked_figures(planned_store: Loaded) -> None:
    """A few figures worked out by hand from the cost table, not from any loop."""
    plan, sessions = planned_store
    q1 = span(date(2026, 1, 1), date(2026, 3, 31))
    async with sessions() as session:
        leads = await reports_facts.lead_facts(session, q1.start, q1.end)
        costs = await reports_facts.cost_facts(session, q1.start, q1.end)
    monthly = {label: {r["group"]: r for r in source_report(leads, costs, FUNNEL, month(label))} for label in MONTHS}
    # The quarter's 9000 webinar cost, prorated by day: 31/90, 28/90, 31/90.
    assert [monthly[m]["webinar"]["cost"] for m in MONTHS] == [
        Decimal("3100.00"),
        Decimal("2800.00"),
        Decimal("3100.00"),
    ]
    # February's LinkedIn: 3000 for the source and 1500 for its spring campaign; the EUR row never counts.
    assert monthly["2026-02"]["linkedin_ads"]["cost"] == Decimal("4500.00")
    assert monthly["2026-01"]["google_ads"]["cost"] == Decimal("5000.00")
    # A source nobody came from yet still shows what it cost, with no CPL.
    podcast = monthly["2026-03"]["podcast"]
    assert (podcast["leads"], podcast["cost"], podcast["cpl"]) == (0, Decimal("700.00"), None)
    quarter = {r["group"]: r for r in source_report(leads, costs, FUNNEL, q1)}
    assert quarter[TOTAL]["cost"] == Decimal(3 * (5000 + 3000 + 400) + 1500 + 9000 + 700)
    # A configured lifetime value replaces the average deal in LTV:CAC.
    fixed = {
        r["group"]: r for r in source_report(leads, costs, FUNNEL, q1, options=MoneyOptions("USD", Decimal("50000")))
    }
    customers = sum(1 for lead in plan.leads if lead.furthest == "customer")
    assert fixed[TOTAL]["ltv"] == Decimal("50000.00") and fixed[TOTAL]["customers"] == customers
    assert fixed[TOTAL]["cac"] == cents(Fraction(36400, customers))
    assert fixed[TOTAL]["ltv_cac"] == round(50000 * customers / 36400, 4)


async def test_activity_basis_counts_what_happened_in_the_month(planned_store: Loaded) -> None:
    plan, sessions = planned_store
    period = month("2026-02")
    async with sessions() as session:
        leads = await reports_facts.lead_facts(session, period.start, period.end)
    total = source_report(leads, [], FUNNEL, period, options=MoneyOptions(basis="activity"))[-1]
    for stage, key in (("mql", "mql"), ("sql", "sql"), ("opportunity", "opportunities"), ("customer", "customers")):
        assert total[key] == sum(1 for lead in plan.leads if in_month(reached_at(lead, stage), "2026-02")), stage
    assert total["leads"] == 100


# ---------------------------------------------------------------- attribution


def expected_credits(model: str, times: list[datetime], at: datetime) -> list[float]:
    n = len(times)
    if model == "first_touch":
        return [1.0] + [0.0] * (n - 1)
    if model == "last_touch":
        return [0.0] * (n - 1) + [1.0]
    if model == "linear":
        return [1 / n] * n
    if model == "u_shaped":
        return [1.0] if n == 1 else [0.5, 0.5] if n == 2 else [0.4] + [0.2 / (n - 2)] * (n - 2) + [0.4]
    weights = [0.5 ** ((at - t).total_seconds() / (7 * 86400)) for t in times]
    return [w / sum(weights) for w in weights]


def expected_attribution(
    plan: Plan, label: str, model: str, stage: str
) -> tuple[int, dict[str, float], dict[str, float], float]:
    conversions: dict[str, float] = defaultdict(float)
    revenue: dict[str, float] = defaultdict(float)
    count, total = 0, 0.0
    for lead in plan.leads:
        at = reached_at(lead, stage)
        if not in_month(at, label):
            continue
        assert at is not None
        count += 1
        path = sorted((t for t in lead.touches if t.source and t.at <= at), key=lambda t: t.at)
        sources = [t.source for t in path] or [lead.source or "unknown"]
        times = [t.at for t in path] or [lead.created_at]
        amount = float(lead.won_amount) if stage == "customer" and lead.currency == "USD" and lead.won_amount else 0.0
        total += amount
        for source, credit in zip(sources, expected_credits(model, times, at), strict=True):
            conversions[source or "unknown"] += credit
            revenue[source or "unknown"] += credit * amount
    return count, conversions, revenue, total


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("stage", ["customer", "sql"])
async def test_attribution_models_match_the_plan(planned_store: Loaded, model: str, stage: str) -> None:
    plan, sessions = planned_store
    q1 = span(date(2026, 1, 1), date(2026, 3, 31))
    async with sessions() as session:
        leads = await reports_facts.lead_facts(session, q1.start, q1.end)
        touches = touches_by_lead(await reports_facts.touch_facts(session, q1.start, q1.end))
    for label in MONTHS:
        report = attribution_report(leads, touches, FUNNEL, month(label), model, stage, "source", "USD")
        count, conversions, revenue, total = expected_attribution(plan, label, model, stage)
        assert report["conversions"] == count > 0
        assert report["revenue"] == Decimal(str(round(total, 2)))
        rows = {row["group"]: row for row in report["rows"]}
        assert set(rows) == set(conversions)
        for group, credit in conversions.items():
            assert abs(float(rows[group]["conversions"]) - credit) < 2e-4, (group, model)
            assert abs(float(rows[group]["revenue"]) - revenue[group]) <= 0.011, (group, model)
        # Reconciled: the rows add up to the totals exactly, not approximately.
        assert sum(row["conversions"] for row in report["rows"]) == count
        assert sum(row["revenue"] for row in report["rows"]) == report["revenue"]


async def test_touches_after_the_conversion_and_without_a_source_earn_nothing(planned_store: Loaded) -> None:
    plan, sessions = planned_store
    q1 = span(date(2026, 1, 1), date(2026, 3, 31))
    async with sessions() as session:
        leads = await reports_facts.lead_facts(session, q1.start, q1.end)
        touches = touches_by_lead(await reports_facts.touch_facts(session, q1.start, q1.end))
    late = [
        lead
        for lead in plan.leads
        if lead.won_at
        and in_month(lead.won_at, "2026-02")
        and any(t.source and t.at > lead.won_at for t in lead.touches)
    ]
    assert late, "the plan has won leads touched again after winning"
    report = attribution_report(leads, touches, FUNNEL, month("2026-02"), "last_touch", None, "source", "USD")
    last_sources = defaultdict(int)
    for lead in plan.leads:
        if lead.won_at and in_month(lead.won_at, "2026-02"):
            before = [t for t in lead.touches if t.source and t.at <= lead.won_at]
            last_sources[max(before, key=lambda t: t.at).source if before else lead.source or "unknown"] += 1
    credited = {row["group"]: row["conversions"] for row in report["rows"] if row["conversions"]}
    assert credited == {k: Decimal(v) for k, v in last_sources.items()}


# ---------------------------------------------------------------- 70-20-10

TIERS = {
    "google_ads": "core",
    "organic_search": "core",
    "referral": "core",
    "webinar": "growth",
    "linkedin_ads": "growth",
    "newsletter": "experiment",
    "podcast": "experiment",
}


@pytest.mark.parametrize("label", list(MONTHS))
async def test_budget_mix_against_the_70_20_10_targets(planned_store: Loaded, label: str) -> None:
    plan, sessions = planned_store
    period = month(label)
    async with sessions() as session:
        leads = await reports_facts.lead_facts(session, period.start, period.end)
        costs = await reports_facts.cost_facts(session, period.start, period.end)
    rows = {row["tier"]: row for row in budget_mix(leads, costs, period, TIERS, "USD")}
    counts: dict[str, int] = defaultdict(int)
    for lead in plan.leads:
        if lead.month == label:
            counts[TIERS.get(lead.source or "unknown", "unclassified")] += 1
    spend = {tier: sum((cents(w["cost"]) for s, w in expected_sources(plan, label, "source").items()
                        if TIERS.get(s, "unclassified") == tier), Decimal(0)) for tier in rows}  # fmt: skip
    assert list(rows) == ["core", "growth", "experiment", "unclassified"]
    for tier, row in rows.items():
        assert row["leads"] == counts[tier] and row["cost"] == spend[tier], tier
        assert row["lead_share"] == round(counts[tier] / 100, 4)
    assert rows["core"]["target_share"] == 0.7 and rows["unclassified"]["target_share"] is None
    assert rows["core"]["lead_gap"] == round(counts["core"] / 100 - 0.7, 4)
    assert rows["unclassified"]["cost"] == Decimal("0.00")  # twitter and unknown cost nothing
    assert sum(r["cost"] for r in rows.values()) == sum(spend.values())
