"""The KPI dashboard page (managers, marketers): funnel with conversion and time in stage, SLA performance by
team and rep, sources with cost and attribution, journey steps (sends, opens, clicks, unsubscribes, exits),
and weekly trends, for a period and optionally one team. The figures come from the same store loaders and
``rules.report_*`` functions as /v1/reports; the templates draw them as inline SVG."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import Response

from api.deps import Caller, Session, State
from api.page_kit import bars, columns, page_error, render
from api.report_params import PeriodQuery, QueryDay, today
from api.roles import allow
from rules.access import Role
from rules.engagement import report_rows
from rules.report_facts import FunnelStages
from rules.report_money import MoneyOptions
from store import pages, reports_run
from store.email_report import email_counts

router = APIRouter(tags=["pages"], include_in_schema=False, dependencies=[allow(Role.manager, Role.marketer)])
Team = Annotated[str | None, Query(pattern=r"^[A-Za-z0-9_.:-]{1,64}$", description="one team's figures")]


def journey_steps(compiled_journeys: list[Any], email_rows: list[dict[str, Any]], exits: Counter[str]) -> list[dict]:
    """Per journey and step that sends a template: the email report's counts for that template, and how many
    leads left the journey (exits are counted per journey, shown on its last row)."""
    by_template: dict[str, dict[str, Any]] = {}
    for row in email_rows:
        entry = by_template.setdefault(str(row["template"]), {"sends": 0, "unique_opens": 0, "unique_clicks": 0,
                                                              "unsubscribes": 0})  # fmt: skip
        for key in entry:
            entry[key] += int(row.get(key) or 0)  # type: ignore[call-overload]
    out: list[dict[str, Any]] = []
    for journey in compiled_journeys:
        steps = [s for s in journey.steps if getattr(s, "template", None)]
        for position, step in enumerate(steps, 1):
            counts = by_template.get(step.template, {})
            out.append({
                "journey": journey.id, "step": getattr(step, "id", None) or position, "template": step.template,
                **{k: counts.get(k, 0) for k in ("sends", "unique_opens", "unique_clicks", "unsubscribes")},
                "exits": exits.get(journey.id, 0) if position == len(steps) else None,
            })  # fmt: skip
    return out


@router.get("/kpi")
async def kpi_page(
    request: Request,
    state: State,
    session: Session,
    caller: Caller,
    start: Annotated[QueryDay | None, Query(alias="from", description="first day, YYYY-MM-DD")] = None,
    end: Annotated[QueryDay | None, Query(alias="to", description="last day, inclusive")] = None,
    team: Team = None,
) -> Response:
    if caller.role is Role.manager and team is not None and team not in caller.teams:
        return page_error(request, 403, f"team {team} is not one of your teams ({', '.join(sorted(caller.teams))})")
    if caller.role is Role.manager and team is None and len(caller.teams) == 1:
        team = next(iter(caller.teams))
    first = start or (today() - timedelta(days=89) if end is None else end - timedelta(days=89))
    try:
        periods = PeriodQuery(None, first, end, "all").periods(today())
    except HTTPException as exc:
        return page_error(request, exc.status_code, f"the period: {exc.detail}")
    period = periods[0]
    compiled = (await state.current_playbook()).compiled
    funnel = FunnelStages.from_order(compiled.stage_order, compiled.model.routing.at_stage)
    settings = state.settings
    money = MoneyOptions(settings.report_currency, settings.lifetime_value, settings.contract_months, "cohort")

    funnel_rows = (await reports_run.funnel(session, funnel, periods))[0]["rows"]
    stage_rows = [r for r in (await reports_run.stage_times(session, funnel, periods))[0]["rows"]
                  if r["measure"] == "in_stage"]  # fmt: skip
    sla_rows = [r for r in (await reports_run.sla(session, periods, datetime.now(period.end.tzinfo)))[0]["rows"]
                if team is None or r.get("team") == team]  # fmt: skip
    source_rows = (await reports_run.sources(session, funnel, periods, "source", money))[0]["rows"]
    attribution = (
        await reports_run.attribution(session, funnel, periods, "linear", None, "source", settings.report_currency)
    )[0]
    email_rows = report_rows(await email_counts(session, since=period.start, until=period.end))
    exits: Counter[str] = Counter()  # journey exits are not projected to the store yet (see the report)
    qualified = funnel.order[funnel.order.index(funnel.sql) :] if funnel.sql in funnel.order else []
    trends = await pages.weekly_trends(session, period.start, period.end, qualified, team)
    context = {
        "period": period,
        "start": first,
        "end": end or today(),
        "team": team,
        "funnel": funnel_rows,
        "funnel_bars": bars(funnel_rows, "stage", "leads"),
        "stage_bars": bars(stage_rows, "stage", "median_hours"),
        "sla": sla_rows,
        "sla_totals": _sla_totals(sla_rows),
        "sources": source_rows,
        "source_bars": bars(source_rows, "group", "leads"),
        "attribution": attribution,
        "journeys": journey_steps(list(compiled.model.journeys), email_rows, exits),
        "trends": {name: columns(series) for name, series in trends.items()},
        "currency": settings.report_currency,
    }
    return render(request, "kpi.html", context)


def _sla_totals(rows: list[dict[str, Any]]) -> dict[str, Any]:
    met = sum(r["met_on_time"] for r in rows)
    breached = sum(r["breached"] for r in rows)
    medians = sorted(r["response_median_hours"] for r in rows if r["response_median_hours"] is not None)
    return {
        "met": met,
        "breached": breached,
        "met_rate": met / (met + breached) if met + breached else None,
        "breached_rate": breached / (met + breached) if met + breached else None,
        # The median of the per-rep medians: a summary for the card; the table has each rep's own.
        "median_hours": medians[len(medians) // 2] if medians else None,
    }
