"""Page latency over a generated population: each page served by the real app (TestClient, SQLite file,
Temporal absent), median of several requests as an admin. The generated leads' ids are not real lead ids
(lead-<32 hex>), so the lead page itself is not timed here; its store reads are per lead (indexed).

    .venv/bin/python bench/pages_bench.py [--leads-per-month 3000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fastapi.testclient import TestClient

from api.main import create_app
from settings import Settings
from store.db import make_engine, make_sessionmaker, run_migrations
from tests.reports_dataset import generate, write

KEY = "bench-admin-key"


async def populate(url: str, per_month: int) -> tuple[int, str]:
    engine = make_engine(url)
    plan = generate(per_month=per_month)
    await write(make_sessionmaker(engine), plan)
    await engine.dispose()
    return len(plan.leads), plan.leads[0].lead_id


def main(per_month: int, rounds: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'leadflow.db'}"
        run_migrations(url)
        leads, lead_id = asyncio.run(populate(url, per_month))
        settings = Settings(
            data_dir=Path(tmp), database_url=url, api_key=KEY, id_key="k", unsubscribe_key="u",
            temporal_address="127.0.0.1:9", scheduler_enabled=False,
        )  # fmt: skip
        pages = [
            "/queue", "/queue?sort=score&order=desc&due_within_hours=168", "/leads?q=example",
            f"/leads?q={lead_id}", "/kpi?from=2026-01-01&to=2026-03-31", "/workspace",
        ]  # fmt: skip
        print(f"{leads} leads (a quarter), SQLite, {rounds} requests per page, median:")
        with TestClient(create_app(settings)) as client:
            for page in pages:
                times = []
                for _ in range(rounds):
                    started = time.perf_counter()
                    answer = client.get(page, auth=("bench", KEY))
                    times.append(time.perf_counter() - started)
                    assert answer.status_code == 200, (page, answer.status_code, answer.text[:200])
                print(f"{page:<52} {1000 * statistics.median(times):8.1f} ms  {len(answer.content) // 1024} KiB")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--leads-per-month", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    main(args.leads_per_month, args.rounds)
