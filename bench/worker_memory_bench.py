"""Worker memory with many live leads: RSS of one leadflow worker process as live leads grow.

Starts a Temporal dev server (or uses --address), a counting SMTP server and a store (SQLite, or
--database-url), runs the real worker (worker.py's wiring: runtime.build_worker, the SDK runtime with its
Prometheus metrics) in a child process, then creates leads in steps. Each lead is a real LeadWorkflow
started the way the API starts it: it is graded, enrolled in the nurture journey, sends its welcome email,
is projected to the store, and then sleeps on its 3-day wait: live. After each step the bench waits until
every lead so far has been projected (its first workflow task and activities are done) and prints the
worker's RSS, the SDK's own sticky cache size (``temporal_sticky_cache_size``) and the welcome emails the
SMTP server received.

With the shipped sticky cache (LEADFLOW_WORKER_MAX_CACHED_WORKFLOWS, 1,000) the RSS grows with the first
1,000 leads (the cost per cached lead) and then stays flat however many leads are live: sleeping leads
live in Temporal, not in the worker. ``--cache all`` caches every lead instead (RSS grows without bound).

    python -m bench.worker_memory_bench --leads 10000 --step 1000          # the shipped cache: bounded
    python -m bench.worker_memory_bench --leads 2000 --step 500 --cache all  # every lead cached

Bounded: stops at --leads, and at --max-seconds per step (it then says so and prints what it has).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from aiosmtpd.controller import Controller
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from api.lead_ids import lead_id_for
from payload_converter import data_converter
from rules.model import LeadUpserted
from runtime import load_active_playbook, with_lead_codec
from settings import Settings
from store.db import make_engine, make_sessionmaker, run_migrations
from store.models import Lead
from workflows import search_attributes
from workflows.lead import LeadWorkflow
from workflows.payloads import LeadOptions, LeadStart

STARTS_IN_PARALLEL = 8


class Counting:
    """Accepts and counts, keeps nothing: 10,000 welcome emails need no memory here."""

    def __init__(self) -> None:
        self.received = 0

    async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def]
        self.received += 1
        return "250 OK"


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sticky_cache_size(port: int) -> int | None:
    """The SDK's own gauge of workflows in this worker's sticky cache (None when not exported yet)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            text = response.read().decode()
    except OSError:
        return None
    values = [
        float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith("temporal_sticky_cache_size")
    ]
    return int(sum(values)) if values else None


async def run_worker(settings: Settings) -> None:
    """The child: leadflow's worker as worker.py builds it (SDK runtime and its metrics included), until killed."""
    from observability.endpoints import temporal_runtime
    from observability.logging import configure_logging
    from runtime import build_worker, connect_temporal

    configure_logging("worker", settings.log_format, settings.log_level)
    sessions = make_sessionmaker(make_engine(settings.resolved_database_url()))
    client = await connect_temporal(settings, sessions, runtime=temporal_runtime(settings))
    async with build_worker(client, settings, sessions):
        (settings.data_dir / "worker-ready").touch()
        await asyncio.Event().wait()


def settings_env(settings: Settings) -> dict[str, str]:
    return {
        "LEADFLOW_DATA_DIR": str(settings.data_dir),
        "DATABASE_URL": settings.resolved_database_url(),
        "TEMPORAL_ADDRESS": settings.temporal_address,
        "LEADFLOW_TASK_QUEUE": settings.task_queue,
        "LEADFLOW_SMTP_PORT": str(settings.smtp_port),
        "LEADFLOW_API_KEY": "bench",
        "LEADFLOW_ID_KEY": settings.secret("id_key"),
        "LEADFLOW_MASTER_KEY": settings.secret("master_key"),
        "LEADFLOW_UNSUBSCRIBE_KEY": settings.secret("unsubscribe_key"),
        "LEADFLOW_WORKER_MAX_CACHED_WORKFLOWS": str(settings.worker_max_cached_workflows),
        "LEADFLOW_TEMPORAL_METRICS_PORT": str(settings.temporal_metrics_port),
        "LEADFLOW_LOG_LEVEL": "WARNING",
    }


async def projected(settings: Settings) -> int:
    engine = make_engine(settings.resolved_database_url())
    try:
        async with make_sessionmaker(engine)() as session:
            return int((await session.execute(select(func.count()).select_from(Lead))).scalar_one())
    finally:
        await engine.dispose()


async def bench(args: argparse.Namespace) -> None:
    data = Path(tempfile.mkdtemp(prefix="leadflow-membench-"))
    smtp_port = free_port()
    mailbox = Counting()
    smtp = Controller(mailbox, hostname="127.0.0.1", port=smtp_port)
    smtp.start()
    env = None
    if args.address:
        address = args.address
    else:
        env = await WorkflowEnvironment.start_local(
            dev_server_existing_path=str(Path(sys.executable).parent / "temporal"),
            search_attributes=search_attributes.ALL,
            data_converter=data_converter,
        )
        address = env.client.service_client.config.target_host
    settings = Settings(
        data_dir=data,
        database_url=args.database_url or f"sqlite:///{data / 'leadflow.db'}",
        temporal_address=address,
        task_queue=f"membench-{secrets.token_hex(4)}",
        smtp_port=smtp_port,
        api_key="bench",
        id_key=f"bench-{secrets.token_hex(4)}",
        master_key="bench-master-key",
        unsubscribe_key="bench-unsubscribe-key",
        worker_max_cached_workflows=args.leads + 100 if args.cache == "all" else int(args.cache),
        temporal_metrics_port=free_port(),
    )
    run_migrations(settings.resolved_database_url())
    engine = make_engine(settings.resolved_database_url())
    sessions = make_sessionmaker(engine)
    child = subprocess.Popen(  # noqa: ASYNC220 (started once, before anything is timed)
        [sys.executable, "-m", "bench.worker_memory_bench", "--worker"],
        cwd=ROOT,
        env={**os.environ, **settings_env(settings)},
    )
    try:
        # A file, not a pipe: the SDK's core writes to stdout too, and a pipe nobody drains stalls the worker.
        for _ in range(600):
            if (data / "worker-ready").exists() or child.poll() is not None:
                break
            await asyncio.sleep(0.1)
        assert (data / "worker-ready").exists(), f"worker did not start (exit code {child.poll()})"
        client = with_lead_codec(await Client.connect(address, data_converter=data_converter), settings, sessions)
        playbook = load_active_playbook(settings)
        options = LeadOptions(projection_delay_seconds=30, search_attributes=True)
        await asyncio.sleep(1.0)
        base = rss_mib(child.pid)
        cache = settings.worker_max_cached_workflows
        print(f"sticky cache size {cache}, worker RSS idle: {base:.0f} MiB", flush=True)
        print(f"{'leads':>7} {'RSS MiB':>8} {'cached':>7} {'per 1,000 cached MiB':>21} {'emails':>7} {'step s':>7}")
        limit = asyncio.Semaphore(STARTS_IN_PARALLEL)
        id_key = settings.secret("id_key")

        async def start(n: int) -> None:
            email = f"lead{n}@bench.example.com"
            lead_id = lead_id_for(email, id_key)
            async with limit:
                for attempt in range(5):  # SQLite allows one writer: the lead's key write may meet a lock
                    try:
                        await _start(lead_id, email)
                        return
                    except OperationalError:
                        await asyncio.sleep(0.2 * (attempt + 1))
                await _start(lead_id, email)

        async def _start(lead_id: str, email: str) -> None:
            await client.start_workflow(
                LeadWorkflow.run,
                LeadStart(lead_id, playbook.bundle, options),
                id=lead_id,
                task_queue=settings.task_queue,
                start_signal="upsert",
                start_signal_args=[LeadUpserted({"email": email, "first_name": "Bench", "company_size": 50})],
            )

        started = 0
        while started < args.leads:
            step_started = time.monotonic()
            upto = min(started + args.step, args.leads)
            # In waves no larger than the worker keeps up with: a burst of thousands of new leads on a
            # starved CPU makes first workflow tasks outlive their timeout and retry (measured: a spiral).
            for wave in range(started, upto, args.wave):
                await asyncio.gather(*(start(n) for n in range(wave, min(wave + args.wave, upto))))
                while await projected(settings) < min(wave + args.wave, upto):
                    if time.monotonic() - step_started > args.max_seconds:
                        print(f"step to {upto} leads took over {args.max_seconds}s: stopping here")
                        return
                    await asyncio.sleep(0.25)
            started = upto
            await asyncio.sleep(1.0)  # the last welcome emails and task completions settle
            rss = rss_mib(child.pid)
            cached = sticky_cache_size(settings.temporal_metrics_port)
            per_k = f"{(rss - base) / cached * 1000:.1f}" if cached else "-"
            print(
                f"{started:>7} {rss:>8.0f} {cached if cached is not None else '-':>7} {per_k:>21} "
                f"{mailbox.received:>7} {time.monotonic() - step_started:>7.1f}",
                flush=True,
            )
    finally:
        child.terminate()
        await asyncio.to_thread(child.wait, 30)
        await engine.dispose()
        smtp.stop()
        if env is not None:
            await env.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--leads", type=int, default=10_000)
    parser.add_argument("--step", type=int, default=1_000)
    parser.add_argument("--wave", type=int, default=50, help="leads started before waiting for their projection")
    parser.add_argument(
        "--cache",
        default=str(Settings.model_fields["worker_max_cached_workflows"].default),
        help="max_cached_workflows: a number, or 'all' for leads + 100 (default: the shipped setting)",
    )
    parser.add_argument("--database-url", help="an empty database for the store (default: a new SQLite file)")
    parser.add_argument("--address", help="an existing Temporal server with the search attributes registered")
    parser.add_argument("--max-seconds", type=float, default=600.0, help="give up on a step after this long")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        asyncio.run(run_worker(Settings()))
        return
    asyncio.run(bench(args))


if __name__ == "__main__":
    main()
