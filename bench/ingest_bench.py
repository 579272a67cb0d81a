"""Ingest throughput: the bare engine vs leadflow, side by side on one Temporal dev server.

Prints signals (events) applied per second for: a bare counting workflow, LeadWorkflow with one event per
signal, and LeadWorkflow with a request's events batched into one signal (what the API does). Also the
cost of decide() per event. Bounded: LEADS x EVENTS signals per scenario, 127.0.0.1 only.

    .venv/bin/python bench/ingest_bench.py [--leads 40] [--events 25]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import yaml
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from bench.bare_workflow import BareWorkflow
from payload_converter import data_converter
from rules import decide, load_playbook_text
from rules.model import EventsReceived, LeadState, LeadUpserted, TrackedEvent
from runtime import workflow_runner
from workflows import search_attributes
from workflows.lead import LeadWorkflow
from workflows.payloads import LeadOptions, LeadStart, LeadView, PlaybookBundle

# Scores one point per bench event and never routes or emails: measures ingest, not side effects.
BENCH_PLAYBOOK = """
name: bench
scoring:
  rules:
    - {id: bench, when: 'event.type == "bench"', points: 1}
    - {id: pricing, when: 'event.type == "page_view" and contains(event.url, "/pricing")', points: 40}
routing: {default_team: nobody}
"""
CONCURRENCY = 64


async def bounded(coros, limit: int = CONCURRENCY) -> None:  # type: ignore[no-untyped-def]
    sem = asyncio.Semaphore(limit)

    async def run(c):  # type: ignore[no-untyped-def]
        async with sem:
            await c

    await asyncio.gather(*(run(c) for c in coros))


async def bare(client: Client, tq: str, leads: int, events: int) -> float:
    handles = [
        await client.start_workflow(BareWorkflow.run, id=f"bare-{uuid.uuid4().hex}", task_queue=tq)
        for _ in range(leads)
    ]

    async def send(h) -> None:  # type: ignore[no-untyped-def]
        for _ in range(events):
            await h.signal(BareWorkflow.hit, 1)

    start = time.perf_counter()
    await bounded(send(h) for h in handles)
    for h in handles:
        while await h.query(BareWorkflow.seen) < events:
            await asyncio.sleep(0.02)
    elapsed = time.perf_counter() - start
    for h in handles:
        await h.terminate()
    return leads * events / elapsed


async def leadflow(client: Client, tq: str, leads: int, events: int, batched: bool) -> float:
    bundle = PlaybookBundle("bench", yaml.safe_load(BENCH_PLAYBOOK))
    handles = []
    for i in range(leads):
        lead_id = f"lead-bench-{uuid.uuid4().hex}"
        handles.append(
            await client.start_workflow(
                LeadWorkflow.run,
                LeadStart(lead_id, bundle, LeadOptions(30, True)),
                id=lead_id,
                task_queue=tq,
                start_signal="upsert",
                start_signal_args=[LeadUpserted({"email": f"b{i}@example.com"})],
            )
        )
    now = datetime.now(UTC)

    async def send(h) -> None:  # type: ignore[no-untyped-def]
        batch = [TrackedEvent(uuid.uuid4().hex, "bench", now) for _ in range(events)]
        if batched:
            await h.signal(LeadWorkflow.events, EventsReceived(batch))
        else:
            for e in batch:
                await h.signal(LeadWorkflow.events, EventsReceived([e]))

    start = time.perf_counter()
    await bounded(send(h) for h in handles)
    for h in handles:
        while True:
            view: LeadView = await h.query(LeadWorkflow.view)
            if view.score >= events:
                break
            await asyncio.sleep(0.02)
    elapsed = time.perf_counter() - start
    for h in handles:
        await h.terminate()
    return leads * events / elapsed


def decide_cost(n: int = 20000) -> float:
    default = load_playbook_text((ROOT / "playbooks" / "default.yaml").read_text())
    state, now = LeadState("lead-x"), datetime.now(UTC)
    decide(state, LeadUpserted({"email": "a@example.com", "title": "VP", "company_size": 300}), now, default)
    events = [TrackedEvent(f"e{i}", "page_view", now, url=f"https://example.com/blog/{i}") for i in range(n)]
    start = time.perf_counter()
    for e in events:
        decide(state, EventsReceived([e]), now, default)
    return (time.perf_counter() - start) / n * 1e6


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--leads", type=int, default=40)
    parser.add_argument("--events", type=int, default=25)
    args = parser.parse_args()
    print(f"decide(): {decide_cost():.1f} us per page_view event with the default playbook (10 scoring rules)")
    binary = Path(sys.executable).parent / "temporal"
    with tempfile.TemporaryDirectory() as tmp:
        env = await WorkflowEnvironment.start_local(
            dev_server_existing_path=str(binary),
            search_attributes=search_attributes.ALL,
            data_converter=data_converter,
            dev_server_database_filename=str(Path(tmp) / "temporal.db"),
            dev_server_extra_args=["--sqlite-pragma", "journal_mode=wal", "--sqlite-pragma", "synchronous=normal"],
        )
        tq = "bench"
        async with Worker(
            env.client, task_queue=tq, workflows=[BareWorkflow, LeadWorkflow], workflow_runner=workflow_runner()
        ):
            n = args.leads * args.events
            print(
                f"dev server: SQLite file, WAL, synchronous=normal; {args.leads} workflows x {args.events} "
                f"signals = {n} per scenario, worker in this process"
            )
            rate = await bare(env.client, tq, args.leads, args.events)
            print(f"bare engine, one signal at a time per workflow: {rate:7.0f} signals/s")
            rate = await leadflow(env.client, tq, args.leads, args.events, batched=False)
            print(f"LeadWorkflow, one event per signal:              {rate:7.0f} events/s")
            rate = await leadflow(env.client, tq, args.leads, args.events, batched=True)
            print(f"LeadWorkflow, a request's events in one signal:  {rate:7.0f} events/s")
        await env.shutdown()


if __name__ == "__main__":
    asyncio.run(main())
