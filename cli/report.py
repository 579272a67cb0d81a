"""``leadflow report NAME``: any report of GET /v1/reports/... straight from the store, as CSV or JSON,
for a cron job or a spreadsheet without the API running.

leadflow report sources --from 2026-01-01 --to 2026-03-31 --interval month --by category
leadflow report attribution --month 2026-02 --model u_shaped --format json
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import sys
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from rules.attribution import MODELS
from rules.report_facts import FunnelStages, Period, month, months_between, span
from rules.report_money import MoneyOptions
from runtime import compile_published, load_active_playbook
from settings import Settings
from store import playbooks, reports_run
from store.db import make_engine, make_sessionmaker


def add_parser(sub: Any) -> None:
    parser = sub.add_parser("report", help="print a report from the store (CSV or JSON)", description=__doc__,
                            formatter_class=argparse.RawTextHelpFormatter)  # fmt: skip
    parser.add_argument("name", choices=reports_run.REPORTS)
    parser.add_argument("--month", help="YYYY-MM (instead of --from/--to)")
    parser.add_argument("--from", dest="start", type=date.fromisoformat, help="first day, YYYY-MM-DD")
    parser.add_argument("--to", dest="end", type=date.fromisoformat, help="last day, inclusive")
    parser.add_argument("--interval", choices=["all", "month"], default="all")
    parser.add_argument("--by", default="source", help="source, category (attribution also channel, campaign)")
    parser.add_argument("--basis", choices=["cohort", "activity"], default="cohort")
    parser.add_argument("--model", choices=MODELS, default="linear")
    parser.add_argument("--conversion", help="attribution: the funnel stage converted to (default: the last)")
    parser.add_argument("--stage", help="velocity: the qualified stage (default: MQL)")
    parser.add_argument("--currency", help="default: LEADFLOW_REPORT_CURRENCY")
    parser.add_argument("--ltv", type=Decimal, help="lifetime value per customer")
    parser.add_argument("--contract-months", type=int)
    for tier in ("core", "growth", "experiment"):
        parser.add_argument(f"--{tier}", default="", help=f"mix: comma-separated {tier} sources")
    parser.add_argument("--format", choices=["csv", "json"], default="csv")


_GROUPINGS = {"sources": ("source", "category"), "attribution": ("source", "category", "channel", "campaign")}


def _periods(args: argparse.Namespace) -> list[Period]:
    if args.month:
        return [month(args.month)]
    today = datetime.now(UTC).date()
    start, end = args.start or today.replace(day=1), args.end or today
    if args.interval == "month" or args.name == "velocity":
        return months_between(start, end)
    return [span(start, end)]


async def _report(args: argparse.Namespace, settings: Settings) -> Any:
    engine = make_engine(settings.resolved_database_url())
    try:
        async with make_sessionmaker(engine)() as session:
            number = await playbooks.latest_number(session)
            row = await playbooks.get(session, number) if number is not None else None
            active = compile_published(row["document"], f"v{number}") if row else load_active_playbook(settings)
            compiled = active.compiled
            funnel = FunnelStages.from_order(compiled.stage_order, compiled.model.routing.at_stage)
            periods = _periods(args)
            currency = args.currency or settings.report_currency
            if args.name == "sources":
                options = MoneyOptions(
                    currency,
                    args.ltv if args.ltv is not None else settings.lifetime_value,
                    args.contract_months or settings.contract_months,
                    args.basis,
                )
                return await reports_run.sources(session, funnel, periods, args.by, options)
            if args.name == "attribution":
                return await reports_run.attribution(
                    session, funnel, periods, args.model, args.conversion, args.by, currency
                )
            if args.name == "funnel":
                return await reports_run.funnel(session, funnel, periods)
            if args.name == "time-in-stage":
                return await reports_run.stage_times(session, funnel, periods)
            if args.name == "velocity":
                return await reports_run.velocity(session, funnel, periods, args.stage)
            if args.name == "mix":
                tiers: dict[str, str] = dict(settings.source_tiers)
                for tier in ("core", "growth", "experiment"):
                    tiers.update({name.strip(): tier for name in getattr(args, tier).split(",") if name.strip()})
                return await reports_run.mix(session, periods, tiers, currency)
            if args.name == "sla":
                return await reports_run.sla(session, periods, datetime.now(UTC))
            if args.name == "outcomes":
                return await reports_run.outcomes(session, periods)
            return await reports_run.health(session, funnel, periods)
    finally:
        await engine.dispose()


def _cell(value: Any) -> Any:
    if isinstance(value, Decimal):
        return format(value, "f")
    return "" if value is None else value


def run(args: argparse.Namespace, settings: Settings | None = None) -> int:
    settings = settings or Settings()
    groupings = _GROUPINGS.get(args.name, (args.by,))
    try:
        if args.by not in groupings:
            raise ValueError(f"--by must be one of {', '.join(groupings)} for {args.name}")
        answer = asyncio.run(_report(args, settings))
    except ValueError as exc:  # a bad period, stage or grouping: say what to fix
        print(f"leadflow report: {exc}", file=sys.stderr)
        return 2
    if args.format == "json":
        print(json.dumps(answer, default=str, indent=2))
        return 0
    rows = reports_run.csv_rows(args.name, answer)
    columns: list[str] = []
    for row in rows:
        columns += [key for key in row if key not in columns]
    writer = csv.DictWriter(sys.stdout, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows({key: _cell(value) for key, value in row.items()} for row in rows)
    return 0
