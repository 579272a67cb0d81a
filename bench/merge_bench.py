"""Merges: what the alias look-up adds to each lead-creating request, and the pure merge itself.

    .venv/bin/python bench/merge_bench.py [--aliases 10000] [--lookups 2000] [--changes 200]

Figures: the store's alias look-up (store.lead_aliases.resolve, one query: what POST /v1/leads, /v1/events,
forms, Segment and imports pay per request) as mean microseconds for a request of 1 and of 50 lead ids, on a
fresh SQLite file holding --aliases aliases; and rules.merge (close_as_merged + absorb through decide) for two
leads of --changes score changes each, as the median of 5 timed batches. One core.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rules import decide, load_playbook_text
from rules.merge import close_as_merged
from rules.model import EventsReceived, LeadMerged, LeadState, LeadUpserted, TrackedEvent
from store import lead_aliases
from store.db import make_engine, make_sessionmaker, run_migrations

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
PLAYBOOK = """\
name: merge-bench
scoring:
  rules:
    - {id: download, when: 'event.type == "download"', points: 1}
    - {id: webinar, when: 'event.type == "webinar"', points: 5, max_total: 3}
routing:
  default_team: inside-sales
"""


async def lookup_microseconds(aliases: int, lookups: int, ids_per_request: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/bench.db"
        run_migrations(url)
        engine = make_engine(url)
        sessions = make_sessionmaker(engine)
        async with sessions() as session:
            for i in range(aliases):
                await lead_aliases.record_alias(
                    session, alias_id=f"lead-a{i:031x}", lead_id=f"lead-s{i:031x}", reason="merged", now=T0
                )
        started = time.perf_counter()
        for n in range(lookups):
            ids = [f"lead-x{(n * ids_per_request + k):031x}" for k in range(ids_per_request - 1)]
            ids.append(f"lead-a{n % aliases:031x}")
            async with sessions() as session:
                found = await lead_aliases.resolve(session, ids)
            assert len(found) == 1
        elapsed = time.perf_counter() - started
        await engine.dispose()
        return elapsed / lookups * 1e6


def lead_with_changes(lead_id: str, changes: int) -> LeadState:
    pb = load_playbook_text(PLAYBOOK, version="bench")
    state = LeadState(lead_id)
    decide(state, LeadUpserted({"email": f"{lead_id}@x.test"}), T0, pb)
    for i in range(changes):
        at = T0 + timedelta(minutes=i)
        kind = "webinar" if i % 10 == 0 else "download"
        decide(state, EventsReceived([TrackedEvent(f"{lead_id}-e{i}", kind, at)]), at, pb)
    return state


def merge_microseconds(changes: int, rounds: int = 50) -> float:
    pb = load_playbook_text(PLAYBOOK, version="bench")
    now = T0 + timedelta(days=1)
    batches = []
    for _ in range(5):
        pairs = [(lead_with_changes("S", changes), lead_with_changes("D", changes)) for _ in range(rounds)]
        started = time.perf_counter()
        for survivor, duplicate in pairs:
            handed_over = close_as_merged(duplicate, "S", now)
            decide(survivor, LeadMerged("D", handed_over), now, pb)
        batches.append((time.perf_counter() - started) / rounds * 1e6)
    return statistics.median(batches)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--aliases", type=int, default=10_000)
    parser.add_argument("--lookups", type=int, default=2_000)
    parser.add_argument("--changes", type=int, default=200)
    args = parser.parse_args()
    for ids in (1, 50):
        micros = asyncio.run(lookup_microseconds(args.aliases, args.lookups, ids))
        print(f"alias look-up, {ids:>2} lead id(s) per request, {args.aliases} aliases stored: {micros:,.0f} µs")
    micros = merge_microseconds(args.changes)
    print(f"pure merge of two leads with {args.changes} score changes each: {micros:,.0f} µs")


if __name__ == "__main__":
    main()
