"""``leadflow export``, ``leadflow overdue`` and ``leadflow publish``: the API's exports, the overdue queue
and publishing, straight from the store for cron jobs and scripts.

leadflow export leads --out leads.csv [--stage sql] [--rep rep-aiko | --team japan] [--json]
leadflow export followups --status overdue --out overdue.csv
leadflow export audit --since 2026-11-01T00:00:00Z --out audit.csv
leadflow overdue [--team inside-sales] [--rep rep-aiko] [--json]
leadflow publish playbooks/default.yaml --note "tighter SLA" [--author mina] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import nullcontext
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

from api.csv_stream import csv_lines
from cli.progress import Progress
from cli.store_session import store_sessions
from rules.model import SLA_STATUSES
from rules.playbook import load_playbook_text
from store import audit, exports, playbooks, repo
from store.scope import Scope


def _time(text: str) -> datetime:
    value = datetime.fromisoformat(text)
    if value.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text}: give a time zone (e.g. 2026-11-01T00:00:00Z)")
    return value


def add_parsers(sub: Any) -> None:
    export = sub.add_parser("export", help="leads, follow-ups or the audit log as CSV (or JSON lines)")
    export.add_argument("what", choices=["leads", "followups", "audit"])
    export.add_argument("--out", type=Path, help="write here (default: stdout)")
    export.add_argument("--json", action="store_true", help="JSON lines instead of CSV")
    export.add_argument("--rep", help="leads/followups: one rep's")
    export.add_argument("--team", action="append", help="leads/followups: these teams' (repeatable)")
    export.add_argument("--stage", help="leads: at this stage")
    export.add_argument("--status", choices=list(SLA_STATUSES), help="followups: with this status")
    export.add_argument("--since", type=_time, help="leads: created since; audit: recorded since")

    overdue = sub.add_parser("overdue", help="the overdue follow-ups, most overdue first")
    overdue.add_argument("--rep")
    overdue.add_argument("--team", action="append")
    overdue.add_argument("--json", action="store_true")

    publish = sub.add_parser("publish", help="validate a playbook file and publish it as the next version")
    publish.add_argument("playbook", type=Path)
    publish.add_argument("--note")
    publish.add_argument("--author")
    publish.add_argument("--json", action="store_true")


def _scope(args: argparse.Namespace) -> Scope:
    return Scope(rep_id=args.rep, teams=frozenset(args.team) if args.team else None)


async def _export(args: argparse.Namespace, out: TextIO) -> int:
    async with store_sessions() as sessions:
        rows: AsyncIterator[dict[str, Any]]
        columns: Sequence[str]
        async with sessions() as session:
            if args.what == "leads":
                total = await exports.count_leads(session, _scope(args), args.stage, args.since)
                rows, columns = exports.iter_leads(sessions, _scope(args), args.stage, args.since), exports.LEAD_COLUMNS
            elif args.what == "followups":
                total = await exports.count_followups(session, _scope(args), args.status)
                rows, columns = exports.iter_followups(sessions, _scope(args), args.status), exports.FOLLOWUP_COLUMNS
            else:
                found = audit.AuditFilter(since=args.since)
                total, _ = await audit.list_entries(session, found, limit=1, offset=0)
                rows, columns = audit.iter_entries(sessions, found), audit.COLUMNS
        progress = Progress(total, f"export {args.what}", enabled=None if args.out else False)
        counted = _counting(rows, progress.advance)
        if args.json:
            async for row in counted:
                out.write(json.dumps(row, default=str, ensure_ascii=False) + "\n")
        else:
            async for chunk in csv_lines(counted, columns):
                out.write(chunk)
        progress.finish()
    if args.out:
        print(f"{progress.done} {args.what} rows -> {args.out}", file=sys.stderr)
    return 0


async def _counting(rows: AsyncIterator[dict[str, Any]], tick: Callable[[], None]) -> AsyncIterator[dict[str, Any]]:
    async for row in rows:
        tick()
        yield row


def run_export(args: argparse.Namespace) -> int:
    opened = args.out.open("w", encoding="utf-8", newline="") if args.out else nullcontext(sys.stdout)
    with opened as out:
        return asyncio.run(_export(args, out))


async def _overdue(args: argparse.Namespace) -> list[dict[str, Any]]:
    async with store_sessions() as sessions:
        return [row async for row in exports.iter_followups(sessions, _scope(args), "overdue")]


def run_overdue(args: argparse.Namespace) -> int:
    rows = asyncio.run(_overdue(args))
    if args.json:
        print(json.dumps(rows, default=str, ensure_ascii=False))
        return 0
    for row in sorted(rows, key=lambda r: -r["overdue_by_seconds"]):
        late = row["overdue_by_seconds"] // 3600
        who = row["rep_name"] or row["rep_id"]
        print(f"{late:>5}h late  {row['team_key']:<14} {who:<18} {row['company'] or '':<24} {row['lead_id']}")
    print(f"{len(rows)} overdue", file=sys.stderr)
    return 0


async def _publish(args: argparse.Namespace, templates: set[str]) -> tuple[dict[str, Any], bool, str]:
    """Validated as the API validates a draft (the store's teams included), then published."""
    document = args.playbook.read_text(encoding="utf-8")
    async with store_sessions() as sessions, sessions() as session:
        teams = {team["key"] for team in await repo.list_teams(session)}
        compiled = load_playbook_text(document, templates=templates, teams=teams)  # PlaybookError: the caller
        row, created = await playbooks.publish(
            session, document=document, hash=compiled.hash, author=args.author, note=args.note
        )
    return row, created, compiled.hash


def run_publish(args: argparse.Namespace, templates: set[str]) -> int:
    row, created, content_hash = asyncio.run(_publish(args, templates))
    if args.json:
        print(json.dumps({**row, "created": created}, default=str, ensure_ascii=False))
    else:
        verb = "published" if created else "already published"
        print(f"{verb} as version {row['version']} (hash {content_hash[:12]})")
    return 0
