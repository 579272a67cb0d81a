"""Each report end to end over the store: load the facts a list of periods needs, compute per period, and
flatten to CSV rows. The API (GET /v1/reports/...) and the CLI (``leadflow report``) both call these, so
a figure means the same wherever it is read."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from rules.report_facts import FunnelStages, LeadFacts, Period, month_before
from rules.report_kpis import funnel_report, lead_velocity, sla_report, source_health, time_in_stage
from rules.report_money import (
    GroupBy,
    MoneyOptions,
    TouchGroupBy,
    attribution_report,
    budget_mix,
    source_report,
    touches_by_lead,
)
from rules.report_outcomes import outcomes_report
from store import reports_facts

REPORTS = (
    "sources", "attribution", "funnel", "time-in-stage", "velocity", "sla", "source-health", "mix", "outcomes"
)  # fmt: skip


def _bounds(periods: Sequence[Period]) -> tuple[datetime, datetime]:
    return min(p.start for p in periods), max(p.end for p in periods)


def _fields(period: Period) -> dict[str, Any]:
    return {"period": period.label, "from": period.start.date(), "to": period.end.date() - timedelta(days=1)}


async def _leads(session: AsyncSession, periods: Sequence[Period]) -> list[LeadFacts]:
    return await reports_facts.lead_facts(session, *_bounds(periods))


async def sources(
    session: AsyncSession, funnel: FunnelStages, periods: Sequence[Period], by: GroupBy, options: MoneyOptions
) -> list[dict[str, Any]]:
    leads = await _leads(session, periods)
    costs = await reports_facts.cost_facts(session, *_bounds(periods))
    return [{**_fields(p), "rows": source_report(leads, costs, funnel, p, by, options)} for p in periods]


async def attribution(
    session: AsyncSession,
    funnel: FunnelStages,
    periods: Sequence[Period],
    model: str,
    conversion: str | None,
    by: TouchGroupBy,
    currency: str,
) -> list[dict[str, Any]]:
    leads = await _leads(session, periods)
    touches = touches_by_lead(await reports_facts.touch_facts(session, *_bounds(periods)))
    return [
        {**_fields(p), **attribution_report(leads, touches, funnel, p, model, conversion, by, currency)}
        for p in periods
    ]


async def mix(
    session: AsyncSession, periods: Sequence[Period], tiers: Mapping[str, str], currency: str
) -> list[dict[str, Any]]:
    leads = await _leads(session, periods)
    costs = await reports_facts.cost_facts(session, *_bounds(periods))
    return [{**_fields(p), "rows": budget_mix(leads, costs, p, tiers, currency)} for p in periods]


async def funnel(session: AsyncSession, stages: FunnelStages, periods: Sequence[Period]) -> list[dict[str, Any]]:
    leads = await _leads(session, periods)
    return [{**_fields(p), "rows": funnel_report(leads, stages, p)} for p in periods]


async def stage_times(session: AsyncSession, stages: FunnelStages, periods: Sequence[Period]) -> list[dict[str, Any]]:
    leads = await _leads(session, periods)
    return [{**_fields(p), "rows": time_in_stage(leads, stages, p)} for p in periods]


async def velocity(
    session: AsyncSession, stages: FunnelStages, months: Sequence[Period], stage: str | None
) -> list[dict[str, Any]]:
    """``months`` are calendar months; the month before the first is loaded for its growth."""
    with_before = [month_before(months[0]), *months]
    return lead_velocity(await _leads(session, with_before), stages, with_before, stage)


async def sla(session: AsyncSession, periods: Sequence[Period], now: datetime) -> list[dict[str, Any]]:
    followups = await reports_facts.followup_facts(session, *_bounds(periods))
    return [{**_fields(p), "rows": sla_report(followups, p, now)} for p in periods]


async def outcomes(session: AsyncSession, periods: Sequence[Period]) -> list[dict[str, Any]]:
    facts = await reports_facts.outcome_facts(session, *_bounds(periods))
    return [{**_fields(p), "rows": outcomes_report(facts, p)} for p in periods]


async def health(session: AsyncSession, stages: FunnelStages, periods: Sequence[Period]) -> list[dict[str, Any]]:
    leads = await _leads(session, periods)
    return [{**_fields(p), **source_health(leads, stages, p)} for p in periods]


# ---------------------------------------------------------------- CSV rows


def _rows(period: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"period": period["period"], **row} for row in period["rows"]]


def _attribution_rows(period: dict[str, Any]) -> list[dict[str, Any]]:
    fixed = {"period": period["period"], "model": period["model"], "conversion": period["conversion"]}
    return [{**fixed, **row} for row in period["rows"]]


def _health_rows(period: dict[str, Any]) -> list[dict[str, Any]]:
    top = period["pipeline_by_source"][0] if period["pipeline_by_source"] else {}
    return [
        {
            "period": period["period"],
            "new_leads": period["new_leads"],
            "unknown_source": period["unknown_source"],
            "unknown_share": period["unknown_share"],
            "pipeline": period["pipeline"],
            "top_source": top.get("source"),
            "top_source_share": top.get("share"),
            "warnings": "; ".join(w["message"] for w in period["warnings"]),
        }
    ]


_FLATTEN: dict[str, Callable[[dict[str, Any]], list[dict[str, Any]]]] = {
    "attribution": _attribution_rows,
    "source-health": _health_rows,
}


def csv_rows(report: str, periods: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One CSV row per period and group (the velocity report is already flat)."""
    if report == "velocity":
        return list(periods)
    flatten = _FLATTEN.get(report, _rows)
    return [row for period in periods for row in flatten(period)]


async def dashboard(
    session: AsyncSession, stages: FunnelStages, period: Period, options: MoneyOptions, now: datetime
) -> dict[str, Any]:
    """The KPI page's reports for one period from one load of each kind of fact (the separate reports load
    the leads once each: four times over for this page). The figures are the same functions' as above."""
    leads = await reports_facts.lead_facts(session, period.start, period.end)
    touches = touches_by_lead(await reports_facts.touch_facts(session, period.start, period.end))
    costs = await reports_facts.cost_facts(session, period.start, period.end)
    followups = await reports_facts.followup_facts(session, period.start, period.end)
    return {
        "funnel": funnel_report(leads, stages, period),
        "time_in_stage": time_in_stage(leads, stages, period),
        "sla": sla_report(followups, period, now),
        "sources": source_report(leads, costs, stages, period, "source", options),
        "attribution": attribution_report(leads, touches, stages, period, "linear", None, "source", options.currency),
    }
