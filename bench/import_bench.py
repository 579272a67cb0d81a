# ruff: noqa: RUF001  (full-width test data on purpose)
"""CSV import throughput and memory: parsing + cleaning 100,000 generated rows, then (bounded) delivery.

Part 1 reads and cleans the whole file the way the importer does (CsvRows, column mapping, NFKC, email
validation, company keys, E.164 phones, ISO countries, lead ids) and prints rows/s and peak memory
(tracemalloc for Python objects, and the process's peak RSS). Part 2 runs the real importer (SQLite store,
classification, report, resume point) with delivery to a Temporal dev server on 127.0.0.1 for the first
--deliver rows (signal-with-start; no worker polls, so this is the API side of delivery only).

    .venv/bin/python bench/import_bench.py [--rows 100000] [--deliver 2000] [--concurrency 8]
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import random
import resource
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from api.deps import AppState
from api.intake import lead_start
from api.lead_ids import lead_id_for
from capture.csv_source import CsvRows
from capture.delivery import LeadDelivery
from capture.importer import Importer, ImportOptions, import_id_for
from rules.cleaning import CleaningError
from rules.import_rows import map_columns, row_attributes
from runtime import load_active_playbook
from settings import Settings
from store.db import make_engine, make_sessionmaker, run_migrations
from workflows import search_attributes

COMPANIES = ["株式会社リードフロー", "リードフロー（株）", "Acme Co., Ltd.", "ＡＣＭＥ Inc.", "Globex Corp", "山田商事"]
COUNTRIES = ["日本", "Japan", "JP", "USA", "United States", "英国", ""]
PHONES = ["03-1234-{:04d}", "０９０－１２３４－{:04d}", "+1 415 555 {:04d}", "", "12345"]
FULL_WIDTH = {c: c + 0xFEE0 for c in range(0x21, 0x7F)}


def generate(path: Path, rows: int, seed: int = 7) -> None:
    """Dirty rows: a tenth full-width, a tenth duplicates of earlier people, a few invalid emails."""
    rng = random.Random(seed)
    with path.open("w", encoding="utf-8", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["メールアドレス", "氏名", "会社名", "電話番号", "国", "役職", "従業員数"])
        for i in range(rows):
            person = rng.randrange(i) if i and rng.random() < 0.1 else i
            email = f"Person{person}@Example.com"
            if rng.random() < 0.1:
                email = email.translate(FULL_WIDTH)
            if rng.random() < 0.01:
                email = f"person{person}-at-example.com"
            writer.writerow([email, "山田 太郎" if i % 2 else "Ann Lee", rng.choice(COMPANIES),
                             rng.choice(PHONES).format(i % 10000), rng.choice(COUNTRIES), "部長",
                             f"{rng.randrange(1, 5000):,}名"])  # fmt: skip


def parse_and_clean(path: Path) -> tuple[int, int, float]:
    rows = CsvRows(path)
    mapping = map_columns(rows.headers)
    ok = rejected = 0
    started = time.perf_counter()
    for _line, cells in rows:
        fields = {name: cells[index] for index, name in mapping.items() if index < len(cells)}
        try:
            cleaned = row_attributes(fields, default_country="JP")
            lead_id_for(cleaned.attributes["email"], "bench-key")
            ok += 1
        except CleaningError:
            rejected += 1
    elapsed = time.perf_counter() - started
    rows.close()
    return ok, rejected, elapsed


async def deliver(path: Path, rows: int, concurrency: int, workdir: Path) -> None:
    head = workdir / "head.csv"
    with path.open(encoding="utf-8") as source, head.open("w", encoding="utf-8") as target:
        for _ in range(rows + 1):
            target.write(source.readline())
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(Path(sys.executable).parent / "temporal"),
        search_attributes=search_attributes.ALL,
        data_converter=pydantic_data_converter,
    )
    try:
        settings = Settings(
            data_dir=workdir, database_url=f"sqlite:///{workdir / 'bench.db'}", api_key="bench", id_key="bench",
            master_key="bench",
            temporal_address=env.client.service_client.config.target_host, task_queue="import-bench",
        )  # fmt: skip
        await asyncio.to_thread(run_migrations, settings.resolved_database_url())
        engine = make_engine(settings.resolved_database_url())
        sessions = make_sessionmaker(engine)
        state = AppState(settings, engine, sessions, load_active_playbook(settings), "bench", "bench")
        delivery = LeadDelivery(
            state.temporal_call, lambda lead_id: lead_start(state, lead_id), settings.task_queue, concurrency
        )
        options = ImportOptions("bench", "consent", "JP")
        importer = Importer(sessions, delivery, "bench")
        import_id = import_id_for(head, options)
        await importer.prepare(head, head.name, options, import_id)
        started = time.perf_counter()
        job = await importer.run(import_id)
        elapsed = time.perf_counter() - started
        leads = job["created"] + job["merged_existing"]
        print(f"import with delivery: {job['rows_read']} rows ({leads} leads signal-with-started, "
              f"{job['merged_duplicate']} duplicates merged, {job['rejected']} rejected) in {elapsed:.1f}s = "
              f"{job['rows_read'] / elapsed:,.0f} rows/s, concurrency {concurrency} [{job['status']}]")  # fmt: skip
        await engine.dispose()
    finally:
        await env.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--deliver", type=int, default=2_000, help="rows imported into Temporal (0: skip)")
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        path = workdir / "leads.csv"
        generate(path, args.rows)
        size = path.stat().st_size
        tracemalloc.start()
        ok, rejected, elapsed = parse_and_clean(path)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"parse + clean: {ok + rejected:,} rows ({size / 1e6:.1f} MB, {rejected} rejected) in {elapsed:.1f}s "
              f"= {(ok + rejected) / elapsed:,.0f} rows/s (under tracemalloc); peak traced memory "
              f"{peak / 1e6:.1f} MB, peak RSS {rss_mb:.0f} MB")  # fmt: skip
        started = time.perf_counter()
        parse_and_clean(path)
        print(f"parse + clean without tracemalloc: {args.rows / (time.perf_counter() - started):,.0f} rows/s")
        if args.deliver:
            asyncio.run(deliver(path, min(args.deliver, args.rows), args.concurrency, workdir))


if __name__ == "__main__":
    main()
