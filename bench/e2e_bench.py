"""What a user pays, end to end: leadflow through its HTTP API against the bare engine, in one run.

Starts the stack `make run` starts (bench/e2e_stack.py: dev server, worker, API; an SMTP server here that
times arrivals) plus a bare counting workflow on its own worker on the same dev server, or uses a running
stack (--api, --api-key, --temporal; its playbook must hold the bench rule: --write-playbook). Prints:

- lead creation: POST /v1/leads, 16 at a time, against workflow starts, 16 at a time;
- one event per request (POST /v1/leads/{id}/events) until applied, against one signal per event;
- tracking batches (POST /v1/events, 500 events a request over 40 leads) until applied, against one
  signal per event;
- pricing-page event posted -> the rep's email accepted by the SMTP server (p50, p99; one lead at a time);
- worker RSS per 1,000 cached lead workflows, history events and bytes per ingested event;
- rule evaluation per (lead, event) against one generated Python function for the same 50 rules.

Each throughput figure is the median over --rounds; each ratio is leadflow / bare of the same round (their
median is printed). The load average is printed: other processes share the cores. Bounded and local only.

    .venv/bin/python bench/e2e_bench.py [--rounds 3] [--leads 300] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHandle

from bench.bare_workflow import BareWorkflow
from bench.e2e_stack import BARE_TASK_QUEUE, Endpoints, TimedSink, bench_playbook, cpu_seconds, rss_kib, started_stack
from bench.lean_http import LeanHttp
from bench.profiles import Sampler, summary

CONCURRENCY = 16  # requests (or client calls) in flight, both sides
BATCH_EVENTS = 500
BATCH_LEADS = 40
SINGLE_LEADS = 40
# "Until applied" is seen by polling (GET /v1/leads/{id}, or the bare query) at this pace, both sides.
POLL_SECONDS = 0.1
T = TypeVar("T")
GOALS = {"create": 0.8, "single": 0.8, "batch": 3.0, "rules": 0.5}


async def in_parallel(count: int, limit: int, job: Callable[[int], Awaitable[None]]) -> None:
    """job(0..count-1) with at most ``limit`` in flight."""
    numbers = iter(range(count))

    async def lane() -> None:
        for number in numbers:
            await job(number)

    await asyncio.gather(*(lane() for _ in range(min(limit, count))))


@dataclass
class Run:
    """One run's figures: per scenario, a list of (bare, leadflow) per round."""

    tag: str
    rounds: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def add(self, scenario: str, bare: float, leadflow: float) -> None:
        self.rounds.setdefault(scenario, []).append((bare, leadflow))


class CpuMeter:
    """CPU seconds each process of the stack (and this client) spends on one side of one scenario, summed over
    the rounds: where a unit of work costs, process by process, whichever process sets the pace."""

    def __init__(self, ends: Endpoints, polls: Callable[[], int]) -> None:
        self.polls = polls  # reads of "applied" so far: each is a query through the stack
        self.pids = {
            "server": ends.temporal_pid,
            "worker": ends.worker_pid,
            "api": ends.api_pid,
            "bare worker": ends.bare_worker_pid,
        }
        self.spent: dict[str, dict[str, float]] = {}  # scenario side -> process -> CPU seconds
        self.polled: dict[str, int] = {}
        self.units: dict[str, int] = {}

    def _now(self) -> dict[str, float]:
        now = {name: cpu_seconds(pid) for name, pid in self.pids.items()}
        taken = {name: value for name, value in now.items() if value is not None}
        taken["client"] = time.process_time()
        return taken

    async def measure(self, key: str, units: int, work: Awaitable[T]) -> T:
        before, polls_before = self._now(), self.polls()
        result = await work
        after = self._now()
        spent = self.spent.setdefault(key, {})
        for name, value in after.items():
            spent[name] = spent.get(name, 0.0) + value - before.get(name, value)
        self.polled[key] = self.polled.get(key, 0) + self.polls() - polls_before
        self.units[key] = self.units.get(key, 0) + units
        return result

    def lines(self) -> list[str]:
        out = ["CPU ms per unit (lead created, or event applied), by process, summed over the rounds;"]
        out.append("polls: reads of 'applied' per unit (each a query through the stack, its CPU included):")
        names = ["server", "worker", "bare worker", "api", "client"]
        out.append(f"  {'scenario, side':<20}" + "".join(f"{n:>12}" for n in names) + f"{'total':>10}{'polls':>8}")
        for key, spent in self.spent.items():
            units = max(self.units[key], 1)
            cells = "".join(f"{spent.get(n, 0.0) * 1000 / units:>12.2f}" for n in names)
            total = sum(spent.values()) * 1000 / units
            out.append(f"  {key:<20}{cells}{total:>10.2f}{self.polled[key] / units:>8.2f}")
        return out


class Bench:
    def __init__(self, ends: Endpoints, http: httpx.AsyncClient | LeanHttp, temporal: Client) -> None:
        self.ends, self.http, self.temporal = ends, http, temporal
        self.run_id = uuid.uuid4().hex[:8]
        self.lead_ids: list[str] = []
        self.bare_handles: list[WorkflowHandle[Any, Any]] = []
        self.polls = {"bare": 0, "leadflow": 0}  # reads of "applied" (queries), per side

    # ------------------------------------------------------------ HTTP helpers

    async def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        for _ in range(50):
            try:
                response = await self.http.post(path, json=body)
            except httpx.TransportError:  # a kept-alive connection the server closed meanwhile
                continue
            if response.status_code == 503:  # backpressure: wait as a client should, then retry
                await asyncio.sleep(float(response.headers.get("Retry-After", "0.2")) / 10)
                continue
            if response.status_code >= 300:
                raise RuntimeError(f"POST {path}: {response.status_code} {response.text[:300]}")
            return dict(response.json())
        raise RuntimeError(f"POST {path}: still 503 after 50 tries")

    async def score(self, lead_id: str) -> int:
        try:
            response = await self.http.get(f"/v1/leads/{lead_id}")
        except httpx.TransportError:
            return -1
        if response.status_code in (404, 503):  # not there yet, or its workflow busy past the query timeout
            return -1
        response.raise_for_status()
        return int(response.json()["score"])

    async def wait_scores(self, targets: dict[str, int], within: float = 300.0) -> None:
        deadline = time.monotonic() + within
        pending = dict(targets)
        while pending:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{len(pending)} leads not applied after {within:.0f}s")
            self.polls["leadflow"] += len(pending)
            scores = await asyncio.gather(*(self.score(lead) for lead in pending))
            pending = {lead: want for (lead, want), got in zip(pending.items(), scores, strict=True) if got < want}
            if pending:
                await asyncio.sleep(POLL_SECONDS)

    async def wait_counts(self, targets: dict[WorkflowHandle[Any, Any], int], within: float = 300.0) -> None:
        deadline = time.monotonic() + within
        pending = dict(targets)
        while pending:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{len(pending)} bare workflows not applied after {within:.0f}s")
            self.polls["bare"] += len(pending)
            counts = await asyncio.gather(*(h.query(BareWorkflow.seen) for h in pending))
            pending = {h: want for (h, want), got in zip(pending.items(), counts, strict=True) if got < want}
            if pending:
                await asyncio.sleep(POLL_SECONDS)

    # ------------------------------------------------------------ scenarios

    async def create_bare(self, count: int, tag: str) -> tuple[float, list[WorkflowHandle[Any, Any]]]:
        handles: list[WorkflowHandle[Any, Any]] = [None] * count  # type: ignore[list-item]

        async def one(i: int) -> None:
            handles[i] = await self.temporal.start_workflow(
                BareWorkflow.run, id=f"bare-{self.run_id}-{tag}-{i}", task_queue=BARE_TASK_QUEUE
            )

        start = time.perf_counter()
        await in_parallel(count, CONCURRENCY, one)
        return count / (time.perf_counter() - start), handles

    async def create_leads(self, count: int, tag: str, **attributes: Any) -> tuple[float, list[str]]:
        ids: list[str] = [""] * count

        async def one(i: int) -> None:
            body = {"email": f"{tag}-{i}-{self.run_id}@bench.example.com", **attributes}
            ids[i] = (await self.post("/v1/leads", body))["lead_id"]

        start = time.perf_counter()
        await in_parallel(count, CONCURRENCY, one)
        return count / (time.perf_counter() - start), ids

    async def single_bare(self, handles: list[WorkflowHandle[Any, Any]], events: int) -> float:
        before = {h: 0 for h in handles}
        for h, seen in zip(handles, await asyncio.gather(*(h.query(BareWorkflow.seen) for h in handles)), strict=True):
            before[h] = seen

        async def one(i: int) -> None:
            await handles[i % len(handles)].signal(BareWorkflow.hit, 1)

        start = time.perf_counter()
        await in_parallel(len(handles) * events, CONCURRENCY, one)
        await self.wait_counts({h: before[h] + events for h in handles})
        return len(handles) * events / (time.perf_counter() - start)

    async def single_leadflow(self, lead_ids: list[str], events: int) -> float:
        before = dict(zip(lead_ids, await asyncio.gather(*(self.score(lead) for lead in lead_ids)), strict=True))

        async def one(i: int) -> None:
            lead = lead_ids[i % len(lead_ids)]
            await self.post(f"/v1/leads/{lead}/events", {"events": [{"id": uuid.uuid4().hex, "type": "bench"}]})

        start = time.perf_counter()
        await in_parallel(len(lead_ids) * events, CONCURRENCY, one)
        await self.wait_scores({lead: before[lead] + events for lead in lead_ids})
        return len(lead_ids) * events / (time.perf_counter() - start)

    async def batch_bare(self, handles: list[WorkflowHandle[Any, Any]], requests: int) -> float:
        total = requests * BATCH_EVENTS
        targets = {h: 0 for h in handles}
        for i in range(total):
            targets[handles[i % len(handles)]] += 1

        async def one(i: int) -> None:
            await handles[i % len(handles)].signal(BareWorkflow.hit, 1)

        start = time.perf_counter()
        await in_parallel(total, CONCURRENCY, one)
        await self.wait_counts(targets)
        return total / (time.perf_counter() - start)

    async def batch_leadflow(self, tag: str, requests: int) -> float:
        emails = [f"{tag}-{j}-{self.run_id}@bench.example.com" for j in range(BATCH_LEADS)]
        # The leads exist before the clock starts (an unscored event creates each): this measures ingest.
        warm = await self.post("/v1/events", {"events": [{"email": e, "type": "warmup"} for e in emails]})
        lead_ids = list(warm["leads"])
        await self.wait_scores({lead: 0 for lead in lead_ids})
        self.lead_ids += lead_ids
        total = requests * BATCH_EVENTS
        per_email = {e: 0 for e in emails}
        bodies = []
        for r in range(requests):
            events = []
            for k in range(BATCH_EVENTS):
                email = emails[(r * BATCH_EVENTS + k) % BATCH_LEADS]
                per_email[email] += 1
                events.append({"email": email, "id": uuid.uuid4().hex, "type": "bench"})
            bodies.append({"events": events})
        lead_of = dict(zip(emails, lead_ids, strict=True)) if len(lead_ids) == len(emails) else None
        assert lead_of is not None, "the warm-up did not create one lead per email"

        async def one(i: int) -> None:
            answer = await self.post("/v1/events", bodies[i])
            assert answer["accepted"] == BATCH_EVENTS, answer

        start = time.perf_counter()
        await in_parallel(requests, 2, one)
        await self.wait_scores({lead_of[e]: n for e, n in per_email.items()})
        return total / (time.perf_counter() - start)

    async def latency(self, sink: TimedSink, leads: int) -> list[float]:
        """Pricing-page event posted -> the rep's notification accepted by SMTP, one lead at a time."""
        fit = {"title": "VP Sales", "company_size": 300, "country": "US", "industry": "software"}
        _, lead_ids = await self.create_leads(leads, "hot", **fit)
        self.lead_ids += lead_ids

        async def warm(i: int) -> None:  # 35 points: MQL, one pricing visit (40) away from SQL
            events = [
                {"id": uuid.uuid4().hex, "type": "download"},
                {"id": uuid.uuid4().hex, "type": "webinar_attended"},
            ]
            await self.post(f"/v1/leads/{lead_ids[i]}/events", {"events": events})

        await in_parallel(leads, CONCURRENCY, warm)
        await self.wait_scores({lead: 35 for lead in lead_ids})
        await asyncio.sleep(3.0)  # let these leads' projections and welcome mail settle: measure at low load
        samples = []
        self.latency_leads: list[tuple[float, str, float]] = []  # (ms, lead, wall-clock start)
        for lead in lead_ids:
            seen = sum(1 for a in sink.arrivals if a.kind == "rep_new_lead")
            wall = time.time()
            start = time.perf_counter()
            await self.post(
                f"/v1/leads/{lead}/events",
                {"events": [{"id": uuid.uuid4().hex, "type": "page_view", "url": "https://example.com/pricing"}]},
            )
            arrival = await asyncio.to_thread(
                sink.wait_for, lambda a, n=seen: a.kind == "rep_new_lead" and _nth_rep_mail(sink, a) >= n, 15.0
            )
            if arrival is None:
                raise RuntimeError(f"no rep notification for {lead} within 15 s")
            samples.append((arrival.at - start) * 1000)
            self.latency_leads.append((samples[-1], lead, wall))
            await asyncio.sleep(0.1)
        return samples

    async def latency_breakdown(self) -> list[str]:
        """The median-latency lead's history from the pricing event on: where the milliseconds went."""
        ms, lead, wall = sorted(self.latency_leads)[len(self.latency_leads) // 2]
        history = await self.temporal.get_workflow_handle(lead).fetch_history()
        lines = [f"median trigger -> rep email ({ms:.0f} ms), lead {lead}, from its history (ms after the POST):"]
        for event in history.events:
            at = event.event_time.ToDatetime().timestamp() - wall
            if at >= -0.01:
                kind = EventType.Name(event.event_type).removeprefix("EVENT_TYPE_").lower()
                detail = ""
                if event.HasField("activity_task_scheduled_event_attributes"):
                    detail = event.activity_task_scheduled_event_attributes.activity_type.name
                elif event.HasField("marker_recorded_event_attributes"):
                    detail = event.marker_recorded_event_attributes.marker_name
                lines.append(f"  {at * 1000:7.1f}  {kind} {detail}".rstrip())
        return lines

    async def history_cost(self, ids: list[str]) -> tuple[int, int]:
        """(events, bytes) of these workflows' histories, summed."""
        events = size = 0
        for workflow_id in ids:
            history = await self.temporal.get_workflow_handle(workflow_id).fetch_history()
            events += len(history.events)
            size += sum(e.ByteSize() for e in history.events)
        return events, size


def _nth_rep_mail(sink: TimedSink, arrival: Any) -> int:
    return [a for a in sink.arrivals if a.kind == "rep_new_lead"].index(arrival)


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def rules_figures(seconds: float, repeats: int = 5) -> tuple[float, float, float]:
    """(us per pair as the engine scores, us per pair one generated function, us per pair one call per rule):
    medians of ``repeats`` interleaved measurements, so a burst of load on the machine hits all three."""
    from bench import rules_bench as rb

    pairs = rb.make_pairs(200)
    per_rule = next(e for e in rb.ENGINES if e.compile is rb.leadflow_compile)
    engines = [
        next((e for e in rb.ENGINES if "section" in e.name), per_rule),
        next(e for e in rb.ENGINES if e.compile is rb.generated_compile),
        per_rule,
    ]
    prepared = [engine.compile(rb.RULES) for engine in engines]
    samples: list[list[float]] = [[], [], []]
    for _ in range(repeats):
        for i, engine in enumerate(engines):
            per_pass, _ = rb.time_engine(engine, prepared[i], pairs, seconds / repeats)
            samples[i].append(per_pass / len(pairs) * 1e6)
    section, generated, one_by_one = (statistics.median(s) for s in samples)
    return section, generated, one_by_one


async def measure(ends: Endpoints, args: argparse.Namespace) -> None:
    load_start = os.getloadavg()
    headers = {"X-API-Key": ends.api_key}
    limits = httpx.Limits(max_connections=CONCURRENCY * 2, max_keepalive_connections=CONCURRENCY * 2)
    client: httpx.AsyncClient | LeanHttp = (
        httpx.AsyncClient(base_url=ends.api, headers=headers, limits=limits, timeout=60)
        if args.httpx
        else LeanHttp(ends.api, headers, connections=CONCURRENCY * 2, timeout=60)
    )
    async with client as http:
        temporal = await Client.connect(ends.temporal, namespace=ends.namespace)
        bench = Bench(ends, http, temporal)
        # Warm-up (imports, caches, first connections) outside the figures.
        await bench.create_bare(16, "warm")
        _, warm_ids = await bench.create_leads(16, "warm")
        await bench.wait_scores({lead: 0 for lead in warm_ids})
        run = Run(bench.run_id)
        # Latency first, on a quiet stack (the "low load"): after the rounds the worker is still
        # catching up (welcome mail, coalesced projections), which is throughput, not this path's latency.
        latency = await bench.latency(ends.sink, args.latency_leads) if ends.sink is not None else []
        if latency:
            run.notes += await bench.latency_breakdown()
        rss0 = rss_kib(ends.worker_pid)
        bare_rss0 = rss_kib(ends.bare_worker_pid)
        rss_leads0 = len(bench.lead_ids)
        bare_made = 16
        samplers = []
        if args.profile:
            args.profile.mkdir(parents=True, exist_ok=True)
            for name, pid in (("worker", ends.worker_pid), ("api", ends.api_pid)):
                if pid is not None:
                    samplers.append(Sampler(pid, args.profile / f"{name}.txt"))
        cpu = CpuMeter(ends, lambda: sum(bench.polls.values()))
        for r in range(args.rounds):
            bare_rate, bare_handles = await cpu.measure(
                "create, bare", args.leads, bench.create_bare(args.leads, f"c{r}")
            )
            lf_rate, lead_ids = await cpu.measure(
                "create, leadflow", args.leads, bench.create_leads(args.leads, f"c{r}")
            )
            bare_made += args.leads
            bench.lead_ids += lead_ids
            run.add("create", bare_rate, lf_rate)
            await bench.wait_scores({lead: 0 for lead in lead_ids})
            single_ids, single_handles = lead_ids[:SINGLE_LEADS], bare_handles[:SINGLE_LEADS]
            lf_hist0 = await bench.history_cost(single_ids)
            bare_hist0 = await bench.history_cost([h.id for h in single_handles])
            sent = len(single_ids) * args.events
            run.add(
                "single",
                await cpu.measure("single, bare", sent, bench.single_bare(single_handles, args.events)),
                await cpu.measure("single, leadflow", sent, bench.single_leadflow(single_ids, args.events)),
            )
            if r == 0:
                lf_hist1 = await bench.history_cost(single_ids)
                bare_hist1 = await bench.history_cost([h.id for h in single_handles])
                run.notes.append(
                    f"history per ingested event (one event a request): leadflow "
                    f"{(lf_hist1[0] - lf_hist0[0]) / sent:.2f} events, {(lf_hist1[1] - lf_hist0[1]) / sent:.0f} bytes; "
                    f"bare {(bare_hist1[0] - bare_hist0[0]) / sent:.2f} events, "
                    f"{(bare_hist1[1] - bare_hist0[1]) / sent:.0f} bytes"
                )
            _, batch_handles = await bench.create_bare(BATCH_LEADS, f"b{r}")
            bare_made += BATCH_LEADS
            total = args.batches * BATCH_EVENTS
            run.add(
                "batch",
                await cpu.measure("batch, bare", total, bench.batch_bare(batch_handles, args.batches)),
                await cpu.measure("batch, leadflow", total, bench.batch_leadflow(f"b{r}", args.batches)),
            )
        run.notes += cpu.lines()
        for sampler in samplers:
            sampler.stop()
            run.notes += summary(sampler.output)
        rss1 = rss_kib(ends.worker_pid)
        bare_rss1 = rss_kib(ends.bare_worker_pid)
        load_end = os.getloadavg()
    rules = rules_figures(args.rule_seconds)
    report(
        run,
        args,
        latency,
        rules,
        load_start,
        load_end,
        (rss0, rss1, len(bench.lead_ids) - rss_leads0),
        (bare_rss0, bare_rss1, bare_made - 16),
    )


def report(
    run: Run,
    args: argparse.Namespace,
    latency: list[float],
    rules: tuple[float, float, float],
    load_start: tuple[float, ...],
    load_end: tuple[float, ...],
    rss: tuple[Any, Any, int],
    bare_rss: tuple[Any, Any, int],
) -> None:
    print(
        f"e2e bench {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {os.cpu_count()} cores, "
        f"load average {load_start[0]:.2f} at start, {load_end[0]:.2f} at end; {args.rounds} rounds; "
        f"HTTP client: {'httpx' if args.httpx else 'bench/lean_http.py'}"
    )
    print(f"{'path':<58} {'bare':>9} {'leadflow':>9} {'ratio':>6} {'goal':>6}")
    labels = {
        "create": f"lead created, {CONCURRENCY} at a time (/s)",
        "single": f"one event a request until applied ({SINGLE_LEADS} leads, /s)",
        "batch": f"{BATCH_EVENTS} events a request, {BATCH_LEADS} leads, until applied (/s)",
    }
    for scenario, rounds in run.rounds.items():
        bare = statistics.median(b for b, _ in rounds)
        lf = statistics.median(x for _, x in rounds)
        ratio = statistics.median(x / b for b, x in rounds)
        each = ", ".join(f"{x / b:.2f}" for b, x in rounds)
        goal = GOALS[scenario]
        print(
            f"{labels[scenario]:<58} {bare:>9.0f} {lf:>9.0f} {ratio:>6.2f} {'>=' + str(goal):>6} "
            f"{'ok' if ratio >= goal else 'MISSED'}  (rounds: {each})"
        )
    if latency:
        p50, p99 = percentile(latency, 0.5), percentile(latency, 0.99)
        verdict = "ok" if p50 < 100 and p99 < 500 else "MISSED"
        print(
            f"{'pricing event posted -> rep email at SMTP (ms)':<58} p50 {p50:.0f}, p99 {p99:.0f}, "
            f"max {max(latency):.0f} over {len(latency)} leads; goal p50 < 100, p99 < 500: {verdict}"
        )
    section, generated, per_rule = rules
    ratio = generated / section
    print(
        f"{'rules: 50 per (lead, event), us (vs one generated function)':<58} {generated:>9.1f} {section:>9.1f} "
        f"{ratio:>6.2f} {'>=0.5':>6} {'ok' if ratio >= GOALS['rules'] else 'MISSED'}  "
        f"(one call per rule: {per_rule:.1f} us)"
    )
    (r0, r1, leads), (b0, b1, bares) = rss, bare_rss
    if r0 is not None and r1 is not None:
        per = (r1 - r0) / max(leads, 1) * 1000 / 1024
        line = f"worker RSS: {r1 / 1024:.0f} MiB at the end, +{per:.1f} MiB per 1,000 lead workflows cached"
        line += f" ({leads} created in the rounds)"
        if b0 is not None and b1 is not None:
            line += f"; bare worker +{(b1 - b0) / max(bares, 1) * 1000 / 1024:.1f} MiB per 1,000"
        print(line)
    for note in run.notes:
        print(note)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--leads", type=int, default=200, help="leads (and bare workflows) created per round")
    parser.add_argument("--events", type=int, default=10, help="events per lead, one a request")
    parser.add_argument("--batches", type=int, default=8, help="requests of 500 events per round")
    parser.add_argument("--latency-leads", type=int, default=40)
    parser.add_argument("--rule-seconds", type=float, default=1.0)
    parser.add_argument("--quick", action="store_true", help="one small round (a smoke run)")
    parser.add_argument("--api", help="use a running stack's API (with --api-key and --temporal)")
    parser.add_argument("--api-key")
    parser.add_argument("--temporal", help="the running stack's Temporal address (host:port)")
    parser.add_argument("--worker-pid", type=int, help="the running stack's worker, for its RSS")
    parser.add_argument("--write-playbook", type=Path, help="write the bench playbook here and exit")
    parser.add_argument("--profile", type=Path, help="py-spy the worker and the API during the rounds, into here")
    parser.add_argument("--echo", action="store_true", help="show the children's output")
    parser.add_argument("--httpx", action="store_true", help="send leadflow's requests with httpx (bench/lean_http.py)")
    args = parser.parse_args()
    if args.write_playbook:
        bench_playbook(args.write_playbook)
        print(f"start the stack with LEADFLOW_PLAYBOOK_PATH={args.write_playbook}")
        return 0
    if args.quick:
        args.rounds, args.leads, args.events, args.batches, args.latency_leads = 1, 40, 3, 2, 5
    if args.api:
        if not (args.api_key and args.temporal):
            parser.error("--api needs --api-key and --temporal")
        print(
            "using a running stack: the bare worker must run too (python -m bench.bare_workflow --address ...);"
            " no SMTP latency (the stack's relay is not ours)"
        )
        asyncio.run(measure(Endpoints(args.api, args.api_key, args.temporal, worker_pid=args.worker_pid), args))
        return 0
    with started_stack(echo=args.echo) as ends:
        asyncio.run(measure(ends, args))
    return 0


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    os._exit(code)  # skip teardown: the SDK's native runtime can abort there (temporalio/sdk-python#300)
