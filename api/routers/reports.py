"""Reports for managers and dashboards: what each source is worth, attribution, and the seed's KPI set.

Thin: parse the period and options, load facts from the store, let ``rules.report_*`` compute. Every
report answers JSON, or CSV with ``?format=csv`` or a ``.csv`` path (one row per period and group).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request, status

from api.deps import Authorized, Session, State
from api.report_params import PeriodQuery, csv_response, period_query, today, wants_csv
from rules.attribution import MODELS
from rules.report_facts import FunnelStages, LeadFacts, Period, month_before
from rules.report_kpis import funnel_report, lead_velocity, sla_report, source_health, time_in_stage
from rules.report_money import MoneyOptions, attribution_report, source_report, touches_by_lead
from store import reports_facts

router = APIRouter(tags=["reports"], dependencies=[Authorized])
Periods = Annotated[PeriodQuery, Depends(period_query)]
Format = Annotated[Literal["json", "csv"], Query(description="csv: the same rows as a CSV file")]
Currency = Annotated[str | None, Query(pattern=r"^[A-Z]{3}$", description="default: LEADFLOW_REPORT_CURRENCY")]


async def _funnel(state: State) -> FunnelStages:
    compiled = (await state.current_playbook()).compiled
    return FunnelStages.from_order(compiled.stage_order, compiled.model.routing.at_stage)


def _bounds(periods: Sequence[Period]) -> tuple[datetime, datetime]:
    return min(p.start for p in periods), max(p.end for p in periods)


def _answer(
    request: Request,
    format: str,
    name: str,
    periods: list[dict[str, Any]],
    flat: Callable[[dict[str, Any]], list[dict[str, Any]]],
    **params: Any,
) -> Any:
    if wants_csv(request.url.path, format):
        return csv_response([row for period in periods for row in flat(period)], f"{name}.csv")
    return {"report": name, "params": params, "periods": periods}


def _with_period(period: dict[str, Any], key: str = "rows") -> list[dict[str, Any]]:
    return [{"period": period["period"], **row} for row in period[key]]


def _period_fields(period: Period) -> dict[str, Any]:
    return {"period": period.label, "from": period.start.date(), "to": period.end.date() - timedelta(days=1)}


async def _leads(session: Session, periods: Sequence[Period]) -> list[LeadFacts]:
    return await reports_facts.lead_facts(session, *_bounds(periods))


@router.get("/v1/reports/sources")
@router.get("/v1/reports/sources.csv")
async def sources_report(
    request: Request,
    state: State,
    session: Session,
    periods: Periods,
    by: Annotated[
        Literal["source", "category"], Query(description="group by original source or its category")
    ] = "source",
    basis: Annotated[
        Literal["cohort", "activity"],
        Query(description="cohort: leads created in the period and how far they got; activity: stages reached in it"),
    ] = "cohort",
    currency: Currency = None,
    ltv: Annotated[Decimal | None, Query(ge=0, le=Decimal("1e13"), description="lifetime value per customer")] = None,
    contract_months: Annotated[int | None, Query(ge=1, le=600, description="months a won amount pays for")] = None,
    format: Format = "json",
) -> Any:
    """Leads, MQL, SQL, opportunities, customers, conversion at each step, cost, CPL, cost per SQL, CAC,
    revenue, LTV, LTV:CAC, payback months and ROI, per source or category and period."""
    settings = state.settings
    options = MoneyOptions(
        currency or settings.report_currency,
        ltv if ltv is not None else settings.lifetime_value,
        contract_months or settings.contract_months,
        basis,
    )
    spans = periods.periods(today())
    funnel = await _funnel(state)
    leads = await _leads(session, spans)
    costs = await reports_facts.cost_facts(session, *_bounds(spans))
    answer = [{**_period_fields(p), "rows": source_report(leads, costs, funnel, p, by, options)} for p in spans]
    return _answer(
        request,
        format,
        "sources",
        answer,
        _with_period,
        by=by,
        basis=basis,
        currency=options.currency,
        ltv=options.ltv,
        contract_months=options.contract_months,
    )


@router.get("/v1/reports/attribution")
@router.get("/v1/reports/attribution.csv")
async def attribution(
    request: Request,
    state: State,
    session: Session,
    periods: Periods,
    model: Annotated[str, Query(description=f"one of {', '.join(MODELS)}")] = "linear",
    conversion: Annotated[
        str | None, Query(max_length=64, description="funnel stage (default: the last, customer)")
    ] = None,
    by: Annotated[Literal["source", "category", "channel", "campaign"], Query()] = "source",
    currency: Currency = None,
    format: Format = "json",
) -> Any:
    """Conversions reached in each period (and their revenue) credited across each lead's touches up to
    the conversion by the chosen model; a row's share is exact and the rows add up to the totals."""
    if model not in MODELS:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, f"model must be one of {', '.join(MODELS)}")
    funnel = await _funnel(state)
    if conversion is not None and conversion not in funnel.order:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT, f"conversion must be a funnel stage: {', '.join(funnel.order)}"
        )
    spans = periods.periods(today())
    leads = await _leads(session, spans)
    touches = touches_by_lead(await reports_facts.touch_facts(session, [lead.lead_id for lead in leads]))
    report_currency = currency or state.settings.report_currency
    answer = [
        {**_period_fields(p), **attribution_report(leads, touches, funnel, p, model, conversion, by, report_currency)}
        for p in spans
    ]

    def flat(period: dict[str, Any]) -> list[dict[str, Any]]:
        return [
            {"period": period["period"], "model": model, "conversion": period["conversion"], **row}
            for row in period["rows"]
        ]

    return _answer(request, format, "attribution", answer, flat, model=model, by=by, currency=report_currency)


@router.get("/v1/reports/funnel")
@router.get("/v1/reports/funnel.csv")
async def funnel(request: Request, state: State, session: Session, periods: Periods, format: Format = "json") -> Any:
    """Of the leads created in each period: how many reached each stage, and the conversion from the stage
    before (MQL->SQL, SQL->opportunity, win rate)."""
    stages = await _funnel(state)
    spans = periods.periods(today())
    leads = await _leads(session, spans)
    answer = [{**_period_fields(p), "rows": funnel_report(leads, stages, p)} for p in spans]
    return _answer(request, format, "funnel", answer, _with_period)


@router.get("/v1/reports/time-in-stage")
@router.get("/v1/reports/time-in-stage.csv")
async def stage_times(
    request: Request, state: State, session: Session, periods: Periods, format: Format = "json"
) -> Any:
    """Average and median hours in each stage (stays that ended in the period), and from first touch to
    SQL and to won (leads that got there in the period)."""
    stages = await _funnel(state)
    spans = periods.periods(today())
    leads = await _leads(session, spans)
    answer = [{**_period_fields(p), "rows": time_in_stage(leads, stages, p)} for p in spans]
    return _answer(request, format, "time-in-stage", answer, _with_period)


@router.get("/v1/reports/velocity")
@router.get("/v1/reports/velocity.csv")
async def velocity(
    request: Request,
    state: State,
    session: Session,
    periods: Periods,
    stage: Annotated[str | None, Query(max_length=64, description="the qualified stage (default: MQL)")] = None,
    format: Format = "json",
) -> Any:
    """Lead velocity: qualified leads per calendar month and growth over the month before."""
    stages = await _funnel(state)
    if stage is not None and stage not in stages.order:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, f"stage must be one of {', '.join(stages.order)}")
    spans = PeriodQuery(periods.month, periods.start, periods.end, "month").periods(today())
    months = [month_before(spans[0]), *spans]
    leads = await _leads(session, months)
    rows = lead_velocity(leads, stages, months, stage)
    if wants_csv(request.url.path, format):
        return csv_response(rows, "velocity.csv")
    return {"report": "velocity", "params": {"stage": stage or stages.mql}, "rows": rows}


@router.get("/v1/reports/sla")
@router.get("/v1/reports/sla.csv")
async def sla(request: Request, session: Session, periods: Periods, format: Format = "json") -> Any:
    """Follow-ups started in each period by team and rep: met on time, breached, open, the rates, and the
    response time to first touch (average and median hours)."""
    spans = periods.periods(today())
    followups = await reports_facts.followup_facts(session, *_bounds(spans))
    now = datetime.now(UTC)
    answer = [{**_period_fields(p), "rows": sla_report(followups, p, now)} for p in spans]
    return _answer(request, format, "sla", answer, _with_period)


@router.get("/v1/reports/source-health")
@router.get("/v1/reports/source-health.csv")
async def health(request: Request, state: State, session: Session, periods: Periods, format: Format = "json") -> Any:
    """Seed 004's alarms per period: more than 10 % of new leads with no known source (tracking is
    broken); one source above 50 % of the pipeline (concentration risk)."""
    stages = await _funnel(state)
    spans = periods.periods(today())
    leads = await _leads(session, spans)
    answer = [{**_period_fields(p), **source_health(leads, stages, p)} for p in spans]

    def flat(period: dict[str, Any]) -> list[dict[str, Any]]:
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

    return _answer(request, format, "source-health", answer, flat)
