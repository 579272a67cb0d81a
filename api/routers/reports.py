"""Reports for managers and dashboards: what each source is worth, attribution, and the seed's KPI set.

Thin: parse the period and options, let ``store.reports_run`` load the facts and ``rules.report_*``
compute. Every report answers JSON, or CSV with ``?format=csv`` or a ``.csv`` path (one row per period
and group). README "Reports" says what each figure counts.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request, status

from api.deps import Session, State
from api.errors import V1_ERRORS
from api.report_params import PeriodQuery, csv_response, period_query, today, wants_csv
from api.roles import allow
from rules.access import Role
from rules.attribution import MODELS
from rules.report_facts import FunnelStages
from rules.report_money import MoneyOptions
from store import reports_run

router = APIRouter(tags=["reports"], dependencies=[allow(Role.manager, Role.marketer)], responses=V1_ERRORS)
# Every report also answers CSV (?format=csv or the .csv path).
AS_CSV: dict[int | str, dict[str, Any]] = {
    200: {"content": {"application/json": {}, "text/csv": {"schema": {"type": "string"}}}}
}
Periods = Annotated[PeriodQuery, Depends(period_query)]
Format = Annotated[Literal["json", "csv"], Query(description="csv: the same rows as a CSV file")]
Currency = Annotated[str | None, Query(pattern=r"^[A-Z]{3}$", description="default: LEADFLOW_REPORT_CURRENCY")]
Stage = Annotated[str | None, Query(max_length=64)]


async def _funnel(state: State) -> FunnelStages:
    compiled = (await state.current_playbook()).compiled
    return FunnelStages.from_order(compiled.stage_order, compiled.model.routing.at_stage)


def _stage_or_422(stage: str | None, funnel: FunnelStages, what: str) -> None:
    if stage is not None and stage not in funnel.order:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT, f"{what} must be a funnel stage: {', '.join(funnel.order)}"
        )


def _answer(request: Request, format: str, name: str, periods: list[dict[str, Any]], **params: Any) -> Any:
    if wants_csv(request.url.path, format):
        return csv_response(reports_run.csv_rows(name, periods), f"{name}.csv")
    return {"report": name, "params": params, "periods": periods}


@router.get("/v1/reports/sources", responses=AS_CSV)
@router.get("/v1/reports/sources.csv", responses=AS_CSV)
async def sources(
    request: Request,
    state: State,
    session: Session,
    periods: Periods,
    by: Annotated[Literal["source", "category"], Query(description="original source, or its category")] = "source",
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
    answer = await reports_run.sources(session, await _funnel(state), spans, by, options)
    params = {"by": by, "basis": basis, "currency": options.currency, "ltv": options.ltv}
    return _answer(request, format, "sources", answer, **params, contract_months=options.contract_months)


@router.get("/v1/reports/attribution", responses=AS_CSV)
@router.get("/v1/reports/attribution.csv", responses=AS_CSV)
async def attribution(
    request: Request,
    state: State,
    session: Session,
    periods: Periods,
    model: Annotated[str, Query(description=f"one of {', '.join(MODELS)}")] = "linear",
    conversion: Annotated[str | None, Query(max_length=64, description="funnel stage (default: the last)")] = None,
    by: Annotated[Literal["source", "category", "channel", "campaign"], Query()] = "source",
    currency: Currency = None,
    format: Format = "json",
) -> Any:
    """Conversions reached in each period (and their revenue) credited across each lead's touches up to
    the conversion by the chosen model; shares are exact and the rows add up to the totals."""
    if model not in MODELS:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, f"model must be one of {', '.join(MODELS)}")
    funnel = await _funnel(state)
    _stage_or_422(conversion, funnel, "conversion")
    report_currency = currency or state.settings.report_currency
    spans = periods.periods(today())
    answer = await reports_run.attribution(session, funnel, spans, model, conversion, by, report_currency)
    return _answer(request, format, "attribution", answer, model=model, by=by, currency=report_currency)


@router.get("/v1/reports/funnel", responses=AS_CSV)
@router.get("/v1/reports/funnel.csv", responses=AS_CSV)
async def funnel(request: Request, state: State, session: Session, periods: Periods, format: Format = "json") -> Any:
    """Of the leads created in each period: how many reached each stage, and the conversion from the stage
    before (MQL->SQL, SQL->opportunity, win rate)."""
    answer = await reports_run.funnel(session, await _funnel(state), periods.periods(today()))
    return _answer(request, format, "funnel", answer)


@router.get("/v1/reports/time-in-stage", responses=AS_CSV)
@router.get("/v1/reports/time-in-stage.csv", responses=AS_CSV)
async def stage_times(
    request: Request, state: State, session: Session, periods: Periods, format: Format = "json"
) -> Any:
    """Average and median hours in each stage (stays that ended in the period), and from first touch to
    SQL and to won (leads that got there in the period)."""
    answer = await reports_run.stage_times(session, await _funnel(state), periods.periods(today()))
    return _answer(request, format, "time-in-stage", answer)


@router.get("/v1/reports/velocity", responses=AS_CSV)
@router.get("/v1/reports/velocity.csv", responses=AS_CSV)
async def velocity(
    request: Request,
    state: State,
    session: Session,
    periods: Periods,
    stage: Annotated[str | None, Query(max_length=64, description="the qualified stage (default: MQL)")] = None,
    format: Format = "json",
) -> Any:
    """Lead velocity: qualified leads per calendar month and growth over the month before."""
    funnel = await _funnel(state)
    _stage_or_422(stage, funnel, "stage")
    months = PeriodQuery(periods.month, periods.start, periods.end, "month").periods(today())
    rows = await reports_run.velocity(session, funnel, months, stage)
    if wants_csv(request.url.path, format):
        return csv_response(rows, "velocity.csv")
    return {"report": "velocity", "params": {"stage": stage or funnel.mql}, "rows": rows}


@router.get("/v1/reports/sla", responses=AS_CSV)
@router.get("/v1/reports/sla.csv", responses=AS_CSV)
async def sla(request: Request, session: Session, periods: Periods, format: Format = "json") -> Any:
    """Follow-ups started in each period by team and rep: met on time, breached, open, the rates, and the
    response time to first touch (average and median hours)."""
    answer = await reports_run.sla(session, periods.periods(today()), datetime.now(UTC))
    return _answer(request, format, "sla", answer)


@router.get("/v1/reports/outcomes", responses=AS_CSV)
@router.get("/v1/reports/outcomes.csv", responses=AS_CSV)
async def outcomes(request: Request, session: Session, periods: Periods, format: Format = "json") -> Any:
    """How sales closed leads in each period (when the outcome was recorded) by team: won deals and their
    amount per currency, lost and disqualified leads per reason."""
    answer = await reports_run.outcomes(session, periods.periods(today()))
    return _answer(request, format, "outcomes", answer)


@router.get("/v1/reports/source-health", responses=AS_CSV)
@router.get("/v1/reports/source-health.csv", responses=AS_CSV)
async def source_health(
    request: Request, state: State, session: Session, periods: Periods, format: Format = "json"
) -> Any:
    """Seed 004's alarms per period: more than 10 % of new leads with no known source (tracking is
    broken); one source above 50 % of the pipeline (concentration risk)."""
    answer = await reports_run.health(session, await _funnel(state), periods.periods(today()))
    return _answer(request, format, "source-health", answer)


SourceList = Annotated[str | None, Query(max_length=2000, description="comma-separated sources")]


@router.get("/v1/reports/mix", responses=AS_CSV)
@router.get("/v1/reports/mix.csv", responses=AS_CSV)
async def mix(
    request: Request,
    state: State,
    session: Session,
    periods: Periods,
    core: SourceList = None,
    growth: SourceList = None,
    experiment: SourceList = None,
    currency: Currency = None,
    format: Format = "json",
) -> Any:
    """Seed 004's 70-20-10 rule: leads and spend per tier (core, growth, experiment; from
    LEADFLOW_SOURCE_TIERS and these parameters) as shares beside the targets."""
    tiers: dict[str, str] = dict(state.settings.source_tiers)
    for tier, listed in (("core", core), ("growth", growth), ("experiment", experiment)):
        tiers.update({name.strip(): tier for name in (listed or "").split(",") if name.strip()})
    report_currency = currency or state.settings.report_currency
    answer = await reports_run.mix(session, periods.periods(today()), tiers, report_currency)
    return _answer(request, format, "mix", answer, tiers=tiers, currency=report_currency)
