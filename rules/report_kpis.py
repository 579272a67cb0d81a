"""The seed's KPI set (seed 001, 004): funnel conversion, time in stage, lead velocity, response time and
SLA rates by team and rep, and source-health warnings.

Each function takes facts and one period (velocity: a list of months) and returns plain rows. Which
leads a figure counts is said beside it; README "Reports" repeats it for dashboard builders.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from itertools import pairwise
from typing import Any

from rules.followups import CANCELLED
from rules.report_facts import (
    UNTRACKED,
    FollowUpFacts,
    FunnelStages,
    LeadFacts,
    Period,
    hours,
    ratio,
)

# Seed 004: more than 10 % of new leads without a known source means tracking is broken; one source
# driving more than 50 % of the pipeline is a concentration risk.
UNKNOWN_SOURCE_LIMIT = 0.10
CONCENTRATION_LIMIT = 0.50


def funnel_report(leads: Iterable[LeadFacts], funnel: FunnelStages, period: Period) -> list[dict[str, Any]]:
    """Cohort funnel: of the leads created in the period, how many reached each stage, and the rate from
    the stage before (``mql_to_sql``, ``sql_to_opportunity``, ``win_rate`` for the last step)."""
    reached = Counter[str]()
    for lead in leads:
        if lead.created_at in period:
            reached.update(lead.reached(funnel).keys())
    rows, previous = [], None
    for index, stage in enumerate(funnel.order):
        step = f"{previous}_to_{stage}" if previous else None
        if stage == funnel.customer and index:
            step = "win_rate"
        rows.append(
            {
                "stage": stage,
                "leads": reached[stage],
                "step": step,
                "conversion_from_previous": ratio(reached[stage], reached[previous]) if previous else None,
                "conversion_from_first": ratio(reached[stage], reached[funnel.order[0]]),
            }
        )
        previous = stage
    return rows


def time_in_stage(leads: Iterable[LeadFacts], funnel: FunnelStages, period: Period) -> list[dict[str, Any]]:
    """How long leads stayed in each stage, over the stays that ended in the period (a lead still in a
    stage has no duration yet); then first touch to SQL and to won, over leads that got there in the
    period."""
    stays: dict[str, list[timedelta]] = defaultdict(list)
    to_sql: list[timedelta] = []
    to_won: list[timedelta] = []
    side_stages: list[str] = []
    for lead in leads:
        path = sorted(lead.path, key=lambda entry: entry[0])
        for (entered, stage), (left, _) in pairwise(path):
            if left in period:
                stays[stage].append(left - entered)
                if stage not in funnel.order and stage not in side_stages:
                    side_stages.append(stage)
        reached = lead.reached(funnel)
        if funnel.sql in reached and reached[funnel.sql] in period:
            to_sql.append(reached[funnel.sql] - lead.first_touch)
        if funnel.customer in reached and reached[funnel.customer] in period:
            to_won.append(reached[funnel.customer] - lead.first_touch)
    rows = [{"measure": "in_stage", "stage": stage, **hours(stays[stage])} for stage in funnel.order]
    rows += [{"measure": "in_stage", "stage": stage, **hours(stays[stage])} for stage in sorted(side_stages)]
    rows.append({"measure": "first_touch_to_sql", "stage": funnel.sql, **hours(to_sql)})
    rows.append({"measure": "first_touch_to_won", "stage": funnel.customer, **hours(to_won)})
    return rows


def lead_velocity(
    leads: Iterable[LeadFacts], funnel: FunnelStages, months: Sequence[Period], stage: str | None = None
) -> list[dict[str, Any]]:
    """Qualified leads per month (first reached ``stage``, MQL by default) and the growth over the
    month before: (this - last) / last. ``months`` must be consecutive; the first month's growth needs
    the month before it, which the caller includes (and this drops from the rows)."""
    stage = stage or funnel.mql
    if stage not in funnel.order:
        raise ValueError(f"{stage!r} is not a funnel stage: use one of {', '.join(funnel.order)}")
    counts = Counter[str]()
    for lead in leads:
        at = lead.reached(funnel).get(stage)
        if at is None:
            continue
        for period in months:
            if at in period:
                counts[period.label] += 1
    rows = []
    for previous, current in pairwise(months):
        rows.append(
            {
                "period": current.label,
                "stage": stage,
                "qualified": counts[current.label],
                "previous": counts[previous.label],
                "growth": ratio(counts[current.label] - counts[previous.label], counts[previous.label]),
            }
        )
    return rows


def _breached(f: FollowUpFacts, now: datetime) -> bool:
    if f.met_at is not None:
        return f.met_at > f.due_at
    if f.status == CANCELLED:
        return f.escalated_at is not None
    return f.status == "overdue" or f.due_at <= now


def _sla_row(
    team: str, rep_id: str | None, rep_name: str | None, items: list[FollowUpFacts], now: datetime
) -> dict[str, Any]:
    met_on_time = sum(1 for f in items if f.met_at is not None and f.met_at <= f.due_at)
    # Late, marked overdue, or still open past its due time: the SLA was missed. A follow-up that went overdue
    # and was cancelled afterwards (the SLA's own reassignment, a recycle) stays a miss of the rep who had it.
    breached = sum(1 for f in items if _breached(f, now))
    # Ended unmet before its due time because the lead left its stage or owner (rules/followups.py): neither.
    cancelled = sum(1 for f in items if f.met_at is None and f.status == CANCELLED and f.escalated_at is None)
    first_touch = [f.met_at - f.started_at for f in items if f.kind == "first_touch" and f.met_at is not None]
    response = hours(first_touch)
    return {
        "team": team,
        "rep_id": rep_id,
        "rep_name": rep_name,
        "followups": len(items),
        "met_on_time": met_on_time,
        "breached": breached,
        "open": len(items) - met_on_time - breached - cancelled,
        "cancelled": cancelled,
        "met_rate": ratio(met_on_time, met_on_time + breached),
        "breached_rate": ratio(breached, met_on_time + breached),
        "first_touches": response["count"],
        "response_avg_hours": response["avg_hours"],
        "response_median_hours": response["median_hours"],
    }


def sla_report(followups: Iterable[FollowUpFacts], period: Period, now: datetime) -> list[dict[str, Any]]:
    """Follow-ups started in the period, per rep, per team (rep_id null) and in total (team "(total)"):
    met on time, breached, still open; rates over the decided ones; response time to first touch."""
    started = [f for f in followups if f.started_at in period]
    by_rep: dict[tuple[str, str], list[FollowUpFacts]] = defaultdict(list)
    by_team: dict[str, list[FollowUpFacts]] = defaultdict(list)
    names: dict[str, str | None] = {}
    for f in started:
        by_rep[(f.team, f.rep_id)].append(f)
        by_team[f.team].append(f)
        names[f.rep_id] = f.rep_name
    rows = []
    for team in sorted(by_team):
        rows.append(_sla_row(team, None, None, by_team[team], now))
        rows += [_sla_row(team, rep, names[rep], by_rep[(t, rep)], now) for t, rep in sorted(by_rep) if t == team]
    rows.append(_sla_row("(total)", None, None, started, now))
    return rows


def source_health(leads: Iterable[LeadFacts], funnel: FunnelStages, period: Period) -> dict[str, Any]:
    """Seed 004's two alarms over the leads created in the period: the share with no known source, and
    each source's share of the pipeline (those leads that reached SQL or beyond)."""
    new = [lead for lead in leads if lead.created_at in period]
    untracked = sum(1 for lead in new if lead.source in UNTRACKED)
    pipeline = Counter(lead.source for lead in new if funnel.sql in lead.reached(funnel))
    pipeline_total = sum(pipeline.values())
    warnings = []
    unknown_share = ratio(untracked, len(new))
    if unknown_share is not None and untracked / len(new) > UNKNOWN_SOURCE_LIMIT:
        warnings.append(
            {
                "code": "tracking_broken",
                "message": f"{untracked} of {len(new)} new leads ({unknown_share:.1%}) have no known source: "
                "tracking is broken (more than 10 %)",
            }
        )
    shares = [
        {"source": source, "pipeline": count, "share": ratio(count, pipeline_total)}
        for source, count in sorted(pipeline.items(), key=lambda item: (-item[1], item[0]))
    ]
    for source, count in pipeline.items():
        share = count / pipeline_total
        if source not in UNTRACKED and share > CONCENTRATION_LIMIT:
            warnings.append(
                {
                    "code": "concentration_risk",
                    "source": source,
                    "message": f"{source} drives {share:.1%} of the pipeline: concentration risk (more than 50 %)",
                }
            )
    return {
        "new_leads": len(new),
        "unknown_source": untracked,
        "unknown_share": unknown_share,
        "pipeline": pipeline_total,
        "pipeline_by_source": shares,
        "warnings": warnings,
    }
