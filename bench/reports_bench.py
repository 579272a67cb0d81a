"""Report latency over a generated population: how long each GET /v1/reports/... computation takes
(load from the store + arithmetic in rules/) for a quarter split by month, on a SQLite file.

    .venv/bin/python bench/reports_bench.py [--leads-per-month 3000]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from datetime import UTC, date, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rules.report_facts import FunnelStages, months_between
from rules.report_money import MoneyOptions
from store import reports_run
from store.db import make_engine, make_sessionmaker, run_migrations
from tests.reports_dataset import STAGES, generate, write


async def main(per_month: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'leadflow.db'}"
        run_migrations(url)
        engine = make_engine(url)
        sessions = make_sessionmaker(engine)
        plan = generate(per_month=per_month)
        started = time.perf_counter()
        await write(sessions, plan)
        touches = sum(len(lead.touches) for lead in plan.leads)
        print(f"{len(plan.leads)} leads, {touches} touchpoints written in {time.perf_counter() - started:.1f} s")
        funnel = FunnelStages.from_order(STAGES, "sql")
        months = months_between(date(2026, 1, 1), date(2026, 3, 31))
        runs = {
            "sources": lambda s: reports_run.sources(s, funnel, months, "source", MoneyOptions()),
            "attribution (time_decay)": lambda s: reports_run.attribution(
                s, funnel, months, "time_decay", None, "source", "USD"
            ),
            "funnel": lambda s: reports_run.funnel(s, funnel, months),
            "time-in-stage": lambda s: reports_run.stage_times(s, funnel, months),
            "velocity": lambda s: reports_run.velocity(s, funnel, months, None),
            "sla": lambda s: reports_run.sla(s, months, datetime(2026, 4, 15, tzinfo=UTC)),
            "source-health": lambda s: reports_run.health(s, funnel, months),
        }
        for name, run in runs.items():
            async with sessions() as session:
                started = time.perf_counter()
                await run(session)
                print(f"{name:<26} {1000 * (time.perf_counter() - started):8.0f} ms  (a quarter, by month)")
        await engine.dispose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--leads-per-month", type=int, default=3000)
    asyncio.run(main(parser.parse_args().leads_per_month))
