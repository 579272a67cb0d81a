"""The KPI dashboard page (managers, marketers): funnel with conversion and time in stage, SLA performance by
team and rep, sources with cost and attribution, journey steps (sends, opens, clicks, unsubscribes, exits),
and weekly trends, for a period and optionally one team. The figures come from the same store loaders and
``rules.report_*`` functions as /v1/reports; the templates draw them as inline SVG."""

from __future__ import annotations

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
TOTAL = "(total)"  # the name rules.report_* give the all-groups row
Team = Annotated[str | None, Query(pattern=r"^[A-Za-z0-9_.:-]{1,64}$", description="one team's figures")]


def journey_steps(compiled_journeys: list[Any], email_rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per journey and step that sends a template: the email report's counts for that template. Exits per
    step are not in the store (a journey's exit lives in the lead's workflow state only): the page says so."""
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

    figures = await reports_run.dashboard(session, funnel, period, money, datetime.now(period.end.tzinfo))
    funnel_rows = figures["funnel"]
    stage_rows = [r for r in figures["time_in_stage"] if r["measure"] == "in_stage"]
    sla_rows, sla_summary = sla_view(figures["sla"], team, caller.teams if caller.role is Role.manager else None)
    source_rows, attribution = figures["sources"], figures["attribution"]
    email_rows = report_rows(await email_counts(session, since=period.start, until=period.end))
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
        "sla_totals": sla_summary,
        "sources": source_rows,
        "source_bars": bars([r for r in source_rows if r["group"] != TOTAL], "group", "leads"),
        "attribution": attribution,
        "journeys": journey_steps(list(compiled.model.journeys), email_rows),
        "trends": {name: columns(series) for name, series in trends.items()},
        "currency": settings.report_currency,
    }
    return render(request, "kpi.html", context)


def sla_view(
    rows: list[dict[str, Any]], team: str | None, manager_teams: frozenset[str] | None
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The SLA report's rows to show (one team's, a manager's teams', or all) and the figures for the cards:
    the report's own total row, else the team's row (rep_id null), else the teams' counts added up (their
    medians cannot be: the median is then left out)."""
    if team is not None:
        shown = [r for r in rows if r["team"] == team]
    elif manager_teams is not None:
        shown = [r for r in rows if r["team"] in manager_teams]
    else:
        shown = [r for r in rows if r["team"] != TOTAL]
    summary_rows = [r for r in rows if r["team"] == TOTAL] if team is None and manager_teams is None else []
    team_rows = [r for r in shown if r["rep_id"] is None]
    if summary_rows or len(team_rows) == 1:
        row = (summary_rows or team_rows)[0]
        met, breached, median = row["met_on_time"], row["breached"], row["response_median_hours"]
    else:
        met, breached, median = sum(r["met_on_time"] for r in team_rows), sum(r["breached"] for r in team_rows), None
    decided = met + breached
    return shown, {
        "met": met,
        "breached": breached,
        "met_rate": met / decided if decided else None,
        "breached_rate": breached / decided if decided else None,
        "median_hours": median,
    }
