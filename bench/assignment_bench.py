"""Assignment speed: the pure choice (rules.assignment.assign) and the store's assign_rep around it on SQLite
(team lock, snapshot load, choice, writes), over a team of --reps reps with capacity, for each strategy.

    .venv/bin/python bench/assignment_bench.py [--reps 20] [--leads 300]

Figures: the pure choice as the median of 5 timed batches; the store as mean milliseconds per assignment
(one transaction each, as the activity runs it), one core, a fresh SQLite file in a temporary directory.
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

from rules.assignment import STRATEGIES, OpenAssignment, TeamMember, TeamSnapshot, assign
from rules.model import AssignRep
from store import assignments, repo
from store.db import make_engine, make_sessionmaker, run_migrations

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def pure_choice_microseconds(reps: int, strategy: str, rounds: int = 2000) -> float:
    members = tuple(
        TeamMember(f"rep-{i:03d}", f"Rep {i}", f"r{i}@x.test", capacity=50, weight=1 + i % 3, open_assignments=i % 7)
        for i in range(reps)
    )
    team = TeamSnapshot(
        "sales", "Mia", "mia@x.test", "rep-005", members, (OpenAssignment("lead-1:assign:0", "rep-001"),)
    )
    command = AssignRep("lead-1", "lead-1:assign:1", "sales", strategy, "bench", ["rep-002"])
    batches = []
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(rounds):
            assign(team, command, T0)
        batches.append((time.perf_counter() - started) / rounds * 1e6)
    return statistics.median(batches)


async def store_milliseconds(reps: int, leads: int, strategy: str) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/bench.db"
        run_migrations(url)
        engine = make_engine(url)
        sessions = make_sessionmaker(engine)
        team = repo.TeamIn(
            "sales",
            "Sales",
            "Mia",
            "mia@x.test",
            [
                repo.RepIn(f"rep-{i:03d}", f"Rep {i}", f"r{i}@x.test", capacity=leads, weight=1 + i % 3)
                for i in range(reps)
            ],
        )
        async with sessions() as session:
            await repo.upsert_team(session, team, now=T0)
        started = time.perf_counter()
        for n in range(leads):
            command = AssignRep(f"lead-{n}", f"lead-{n}:assign:1", "sales", strategy, "bench")
            async with sessions() as session:
                await assignments.assign_rep(session, command, T0 + timedelta(seconds=n))
        elapsed = time.perf_counter() - started
        await engine.dispose()
    return elapsed / leads * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument("--leads", type=int, default=300)
    args = parser.parse_args()
    print(f"team of {args.reps} reps; {args.leads} assignments per strategy on SQLite")
    for strategy in STRATEGIES:
        pure = pure_choice_microseconds(args.reps, strategy)
        stored = asyncio.run(store_milliseconds(args.reps, args.leads, strategy))
        print(f"{strategy:13} pure choice {pure:7.1f} µs   store assign_rep {stored:6.2f} ms")


if __name__ == "__main__":
    main()
