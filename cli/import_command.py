"""``leadflow import leads.csv``: the CSV import from a terminal, straight to Temporal and the store (the
same importer POST /v1/imports runs), with a progress bar and a resumable import id."""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import sys
from pathlib import Path
from typing import Any

from api.deps import AppState
from api.identity import current_leads
from api.intake import lead_start
from capture.csv_source import CsvError, CsvRows
from capture.delivery import LeadDelivery
from capture.importer import Importer, ImportOptions, import_id_for
from rules.cleaning import CleaningError, country_code
from rules.import_rows import map_columns
from runtime import load_active_playbook
from settings import get_settings
from store import imports
from store.db import make_engine, make_sessionmaker, run_migrations

SUMMARY_FIELDS = ("id", "status", "error", "rows_read", "created", "merged_existing", "merged_duplicate",
                  "rejected", "warnings", "lines_done", "source", "consent_basis")  # fmt: skip


def add_parser(sub: Any) -> None:
    parser = sub.add_parser("import", help="import leads from a CSV file (cleaned, merged, resumable)")
    parser.add_argument("csv", type=Path)
    parser.add_argument("--source", help="lead source of the leads it creates (default: the file name)")
    parser.add_argument(
        "--consent-basis",
        help="recorded on every lead, e.g. consent or legitimate_interest; "
        "also the wording of the opt-ins/outs a consent column records",
    )
    parser.add_argument("--country", help="country of phone numbers without a country (e.g. JP)")
    parser.add_argument("--map", action="append", default=[], metavar="COLUMN=FIELD", help="map a column (repeat)")
    parser.add_argument("--concurrency", type=int, default=8, help="leads delivered at once (default 8)")
    parser.add_argument("--report", type=Path, help="write the report of rejected and merged rows to this CSV")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")


def _options(args: argparse.Namespace) -> ImportOptions:
    column_map: dict[str, str] = {}
    for pair in args.map:
        column, sep, field = pair.rpartition("=")
        if not sep:
            raise CleaningError(f"--map {pair}: write it as 'column=field'")
        column_map[column.strip()] = field.strip()
    country = country_code(args.country) if args.country else None
    rows = CsvRows(args.csv)
    try:
        map_columns(rows.headers, column_map)
    finally:
        rows.close()
    return ImportOptions(args.source or args.csv.name, args.consent_basis, country, column_map)


def _bar(job: dict[str, Any]) -> None:
    done = job["bytes_done"] / max(job["bytes_total"], 1)
    filled = int(done * 30)
    counts = f"{job['rows_read']} rows, {job['created']} new, {job['merged_existing'] + job['merged_duplicate']} " \
             f"merged, {job['rejected']} rejected"  # fmt: skip
    sys.stderr.write(f"\r[{'#' * filled}{'.' * (30 - filled)}] {done:6.1%}  {counts}")
    sys.stderr.flush()


async def _write_report(importer_sessions: Any, import_id: str, path: Path) -> None:
    rows: list[list[Any]] = [["line", "outcome", "reason", "email", "lead_id"]]
    after = 0
    while True:
        async with importer_sessions() as session:
            page = await imports.list_issues(session, import_id, after_line=after)
        if not page:
            break
        rows += [[i["line"], i["outcome"], i["reason"], i["email"] or "", i["lead_id"] or ""] for i in page]
        after = page[-1]["line"]

    def write() -> None:
        with path.open("w", newline="", encoding="utf-8") as file:
            csv.writer(file).writerows(rows)

    await asyncio.to_thread(write)


async def _run(args: argparse.Namespace, options: ImportOptions) -> dict[str, Any]:
    settings = get_settings()
    await asyncio.to_thread(run_migrations, settings.resolved_database_url())
    engine = make_engine(settings.resolved_database_url())
    sessions = make_sessionmaker(engine)
    state = AppState(settings, engine, sessions, load_active_playbook(settings), "", settings.secret("id_key"))
    try:
        delivery = LeadDelivery(
            state.temporal_call,
            lambda lead_id: lead_start(state, lead_id),
            settings.task_queue,
            args.concurrency,
            resolve=lambda lead_ids: current_leads(state, lead_ids),
        )
        importer = Importer(sessions, delivery, state.id_key, smtp_utf8=settings.smtp_utf8)
        path = args.csv.resolve()
        import_id = await asyncio.to_thread(import_id_for, path, options)
        job = await importer.prepare(path, args.csv.name, options, import_id)
        if job["lines_done"] > 1 and job["status"] != "done":
            print(f"resuming import {import_id} after line {job['lines_done']}", file=sys.stderr)
        interactive = sys.stderr.isatty() and not args.json
        try:
            job = await importer.run(import_id, on_progress=_bar if interactive else None)
        finally:
            if interactive:
                sys.stderr.write("\n")
        if args.report:
            await _write_report(sessions, import_id, args.report)
        return job
    finally:
        await engine.dispose()


def run_import(args: argparse.Namespace) -> int:
    try:
        options = _options(args)
    except (CsvError, CleaningError, OSError) as exc:
        print(f"{args.csv}: {exc}", file=sys.stderr)
        return 2
    try:
        job = asyncio.run(_run(args, options))
    except KeyboardInterrupt:
        print("\ninterrupted: run the same command again to resume where it stopped", file=sys.stderr)
        return 130
    summary = {key: job[key] for key in SUMMARY_FIELDS}
    if args.json:
        print(json.dumps(summary, ensure_ascii=False))
    else:
        print(
            f"import {job['id']}: {job['status']}{' (' + job['error'] + ')' if job['error'] else ''}\n"
            f"  {job['rows_read']} rows: {job['created']} new leads, {job['merged_existing']} merged into existing "
            f"leads, {job['merged_duplicate']} duplicates merged, {job['rejected']} rejected, "
            f"{job['warnings']} with corrections"
        )
    return 0 if job["status"] == "done" else 1
