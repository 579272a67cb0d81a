"""make run's dev stack: the SMTP sink and the launcher's helpers in-process (fast), then the launcher
itself as a subprocess (integration): start, banner, Ctrl-C, nothing left running, data kept."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import signal
import smtplib
import socket
import stat
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import aiosmtplib
import pytest
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import (
    AddSearchAttributesRequest,
    ListSearchAttributesRequest,
    RemoveSearchAttributesRequest,
)
from temporalio.client import Client

from devstack import run, temporal_dev
from devstack.probes import NotReady
from devstack.process import process_cmdline
from devstack.smtp_sink import INDEX_NAME, MailSink, read_messages, start_server
from workflows import search_attributes

ROOT = Path(__file__).resolve().parents[1]
BANNER = "leadflow dev stack is up"
START_TIMEOUT = 150.0  # cold start on a loaded CI machine: Temporal, migrations, worker, API


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def message_id(subject: str) -> str:
    return f"<{hashlib.sha1(subject.encode()).hexdigest()[:16]}@leadflow.localhost>"


def message(subject: str, to: str = "ann@example.com") -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "leadflow <noreply@leadflow.localhost>"
    msg["To"] = to
    msg["Subject"] = subject
    msg["Message-ID"] = message_id(subject)
    msg.set_content("Hello\n.a line starting with a dot\n")
    return msg


# ---------------------------------------------------------------- SMTP sink


async def test_sink_keeps_each_message_as_eml_and_index_line(tmp_path: Path) -> None:
    mail = tmp_path / "mail"
    server = await start_server(MailSink(mail), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        await aiosmtplib.send(message("Welcome to leadflow"), hostname="127.0.0.1", port=port)
        await aiosmtplib.send(message("料金プランのご案内", to="yui@example.com"), hostname="127.0.0.1", port=port)
    finally:
        server.close()
        await server.wait_closed()

    files = sorted(p.name for p in mail.glob("*.eml"))
    assert len(files) == 2
    assert all(re.fullmatch(r"\d{8}T\d{6}\.\d{6}-\d{4}\.eml", name) for name in files)
    first = (mail / files[0]).read_bytes()
    assert b"Subject: Welcome to leadflow" in first
    assert b"\n.a line starting with a dot" in first  # SMTP dot-stuffing undone

    newest, oldest = read_messages(mail)
    assert newest["subject"] == "料金プランのご案内"  # encoded-word header decoded
    assert newest["rcpt_tos"] == ["yui@example.com"]
    assert oldest == {
        "file": files[0],
        "received_at": oldest["received_at"],
        "mail_from": "noreply@leadflow.localhost",
        "rcpt_tos": ["ann@example.com"],
        "subject": "Welcome to leadflow",
        "message_id": message_id("Welcome to leadflow"),
    }
    assert [m["file"] for m in read_messages(mail, limit=1)] == [newest["file"]]


def test_read_messages_skips_torn_lines_and_missing_index(tmp_path: Path) -> None:
    assert read_messages(tmp_path / "nowhere") == []
    lines = [json.dumps({"file": f"{i}.eml", "subject": str(i)}) for i in range(5)]
    (tmp_path / INDEX_NAME).write_text("\n".join([*lines, "not json", '{"file": "torn']), encoding="utf-8")
    assert [m["subject"] for m in read_messages(tmp_path, limit=3)] == ["4", "3", "2"]
    assert read_messages(tmp_path, limit=0) == []


# ---------------------------------------------------------------- launcher helpers


def test_secrets_are_created_private_once_and_kept(tmp_path: Path) -> None:
    path = tmp_path / "api_key"
    value = run.ensure_secret(path)
    assert len(value) >= 40
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert run.ensure_secret(path) == value
    path.chmod(0o644)
    assert run.ensure_secret(path) == value
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_dev_server_command_keeps_state_in_data_dir(tmp_path: Path) -> None:
    argv = temporal_dev.temporal_command("temporal", tmp_path, 7300, 8300, "leadflow")
    joined = " ".join(argv)
    assert argv[:3] == ["temporal", "server", "start-dev"]
    assert f"--db-filename {tmp_path / 'temporal.db'}" in joined
    assert "--ip 127.0.0.1 --port 7300 --ui-port 8300 --namespace leadflow" in joined
    assert "--sqlite-pragma journal_mode=wal --sqlite-pragma synchronous=normal" in joined
    assert " ".join(search_attributes.dev_server_flags()) in joined


def test_demo_teams_match_the_default_playbook() -> None:
    teams = {team.key: team for team in run.load_demo_teams()}
    assert set(teams) == {"inside-sales", "japan"}
    sales = teams["inside-sales"]
    assert (sales.name, sales.manager_name, sales.manager_email) == (
        "Inside Sales",
        "Mina Manager",
        "mina.manager@example.com",
    )
    assert [(r.id, r.name, r.email) for r in sales.reps] == [
        ("rep-aiko", "Aiko Sato", "aiko@example.com"),
        ("rep-ben", "Ben Carter", "ben@example.com"),
        ("rep-chen", "Chen Wei", "chen@example.com"),
    ]
    assert teams["japan"].manager_email and len(teams["japan"].reps) == 2
    playbook = (ROOT / "playbooks" / "default.yaml").read_text(encoding="utf-8")
    assert all(key in playbook for key in teams)


def sleeper(*marker: str) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", *marker], start_new_session=True)
    deadline = time.monotonic() + 10
    while process_cmdline(proc.pid) is None and time.monotonic() < deadline:  # empty for an instant after exec
        time.sleep(0.01)
    return proc


def test_leftovers_of_a_killed_launcher_are_stopped(tmp_path: Path) -> None:
    orphan, stranger = sleeper("orphan"), sleeper("stranger")
    pids_file = tmp_path / "pids.json"
    try:
        pids_file.write_text(
            json.dumps(
                {
                    "launcher": 2**22 + 1,  # gone
                    "children": {
                        "sink": {"pid": orphan.pid, "argv": orphan.args},
                        # pid reused by another program: the command line differs, so it is left alone
                        "worker": {"pid": stranger.pid, "argv": [sys.executable, "worker.py"]},
                    },
                }
            )
        )
        run.clear_leftovers(pids_file)
        assert orphan.wait(timeout=10) == -signal.SIGTERM
        assert stranger.poll() is None
        assert not pids_file.exists()
    finally:
        for proc in (orphan, stranger):
            proc.kill()
            proc.wait()


def test_a_live_launcher_keeps_its_data_dir(tmp_path: Path) -> None:
    other = sleeper("-m", "devstack.run")
    pids_file = tmp_path / "pids.json"
    try:
        pids_file.write_text(json.dumps({"launcher": other.pid, "children": {}}))
        with pytest.raises(run.StartupError, match=f"another dev stack \\(pid {other.pid}\\)"):
            run.clear_leftovers(pids_file)
        assert pids_file.exists()
    finally:
        other.kill()
        other.wait()


@pytest.mark.integration
async def test_search_attributes_are_reconciled_on_an_existing_server() -> None:
    # start-dev registers --search-attribute only on a fresh db: the launcher adds new ones itself
    # and refuses a type that changed.
    port = free_port()
    binary = temporal_dev.temporal_binary()
    assert binary is not None
    argv = [binary, "server", "start-dev", "--headless", "--ip", "127.0.0.1", "--port", str(port)]
    server = await asyncio.create_subprocess_exec(*argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        client = await _connect(f"127.0.0.1:{port}")
        names = sorted(k.name for k in search_attributes.ALL)
        assert await temporal_dev.ensure_search_attributes(client, "default") == names
        listed = await client.operator_service.list_search_attributes(ListSearchAttributesRequest(namespace="default"))
        assert {k.name: int(k.indexed_value_type) for k in search_attributes.ALL}.items() <= dict(
            listed.custom_attributes
        ).items()
        assert await temporal_dev.ensure_search_attributes(client, "default") == []

        score = search_attributes.LEAD_SCORE.name
        await client.operator_service.remove_search_attributes(
            RemoveSearchAttributesRequest(namespace="default", search_attributes=[score])
        )
        await client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(
                namespace="default", search_attributes={score: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD}
            )
        )
        with pytest.raises(temporal_dev.SearchAttributeConflict, match=f"{score} is registered as KEYWORD"):
            await temporal_dev.ensure_search_attributes(client, "default")
    finally:
        server.terminate()
        await asyncio.wait_for(server.wait(), timeout=30)


async def _connect(address: str) -> Client:
    deadline = time.monotonic() + 30
    while True:
        try:
            return await temporal_dev.connect_temporal(address, "default")
        except NotReady:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


# ---------------------------------------------------------------- the launcher as a process


class Launcher:
    """``python -m devstack.run`` in a subprocess, its output collected line by line."""

    def __init__(self, data_dir: Path, *args: str) -> None:
        self.data_dir = data_dir
        self.ports = {
            "LEADFLOW_DEV_TEMPORAL_PORT": free_port(),
            "LEADFLOW_DEV_TEMPORAL_UI_PORT": free_port(),
            "LEADFLOW_API_PORT": free_port(),
            "LEADFLOW_SMTP_PORT": free_port(),
        }
        self.args = args
        self.proc: subprocess.Popen[str] | None = None
        self.lines: list[str] = []
        self.pids: list[int] = []
        self.children: dict[int, list[str]] = {}

    def env(self) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("TEMPORAL_")
            and k not in {"DATABASE_URL", "LEADFLOW_DATABASE_URL", "LEADFLOW_API_KEY", "LEADFLOW_ID_KEY"}
        }
        env.update({k: str(v) for k, v in self.ports.items()})
        env.update(LEADFLOW_DATA_DIR=str(self.data_dir), PYTHONUNBUFFERED="1")
        return env

    def start(self) -> str:
        """Start and wait for the banner; returns the output so far."""
        self.lines = []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "devstack.run", *self.args],
            cwd=ROOT,
            env=self.env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        threading.Thread(target=self._collect, args=(self.proc,), daemon=True).start()
        deadline = time.monotonic() + START_TIMEOUT
        while not any(BANNER in line for line in self.lines):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"no banner (exit code {self.proc.poll()}):\n{self.output}")
            time.sleep(0.2)
        time.sleep(0.3)  # the rest of the banner
        record = json.loads((self.data_dir / "pids.json").read_text())
        self.children = {c["pid"]: c["argv"] for c in record["children"].values()}
        self.pids = [record["launcher"], *self.children]
        return self.output

    def _collect(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    @property
    def api_key(self) -> str:
        found = re.search(r"^\s+API key\s+(\S+)", self.output, re.MULTILINE)
        assert found, self.output
        return found.group(1)

    def interrupt(self, timeout: float = 30) -> int:
        """Ctrl-C as a terminal sends it; returns the exit code."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGINT)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"still running {timeout}s after SIGINT:\n{self.output}")

    def alive_pids(self) -> list[int]:
        alive = []
        for pid in self.pids:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                continue
            alive.append(pid)
        return alive

    def kill_everything(self) -> None:
        """Last resort after a failed test: never leave servers running on the machine."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for pid, argv in self.children.items():
            if process_cmdline(pid) == argv:  # still ours, not a reused pid
                os.killpg(pid, signal.SIGKILL)


@pytest.fixture
def launcher(tmp_path: Path) -> Iterator[Launcher]:
    instance = Launcher(tmp_path / "data", "--infra-only")
    yield instance
    instance.kill_everything()


def http_status(method: str, url: str, body: dict[str, object] | None = None) -> int:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def exposed(data_dir: Path) -> list[str]:
    """Paths under the data dir (itself included) that anyone but the owner may read, write or enter."""
    found = []
    for path in [data_dir, *data_dir.rglob("*")]:
        mode = path.lstat().st_mode
        if stat.S_ISLNK(mode):
            continue
        if stat.S_IMODE(mode) & 0o077:
            found.append(f"{path.relative_to(data_dir.parent)} {stat.S_IMODE(mode):04o}")
    return found


def test_exposed_lists_group_or_world_access(tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "logs").mkdir(parents=True, mode=0o700)
    data.chmod(0o700)
    (data / "logs" / "ok.log").touch(mode=0o600)
    (data / "logs" / "open.log").touch()
    (data / "logs" / "open.log").chmod(0o644)
    assert exposed(data) == ["data/logs/open.log 0644"]


def assert_stops_cleanly(launcher: Launcher) -> None:
    assert launcher.interrupt() == 0, launcher.output
    assert launcher.alive_pids() == [], launcher.output
    assert not (launcher.data_dir / "pids.json").exists()


@pytest.mark.integration
def test_infra_only_starts_stops_and_keeps_data(launcher: Launcher) -> None:
    # A data dir left open by an older version: the launcher closes it before anything else.
    (launcher.data_dir / "logs").mkdir(parents=True, mode=0o755)
    launcher.data_dir.chmod(0o755)
    (launcher.data_dir / "logs" / "sink.log").write_text("an older run\n")
    (launcher.data_dir / "logs" / "sink.log").chmod(0o644)
    output = launcher.start()
    assert "seeded demo teams: inside-sales, japan" in output
    key_file = launcher.data_dir / "api_key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    first_key = launcher.api_key
    assert first_key == key_file.read_text().strip()
    assert len(launcher.pids) == 3  # launcher, temporal, sink

    smtp_port = launcher.ports["LEADFLOW_SMTP_PORT"]
    with smtplib.SMTP("127.0.0.1", smtp_port, timeout=10) as smtp:
        smtp.send_message(message("through the sink"))
    assert read_messages(launcher.data_dir / "mail")[0]["subject"] == "through the sink"
    # Temporal's and the store's SQLite files (with their -wal/-shm while open), logs, mail: owner only.
    assert (launcher.data_dir / "temporal.db").exists() and (launcher.data_dir / "leadflow.db").exists()
    assert exposed(launcher.data_dir) == []

    assert_stops_cleanly(launcher)
    assert "stopping sink" in launcher.output.split("stopping temporal")[0]  # reverse order

    output = launcher.start()
    assert launcher.api_key == first_key
    assert "seeded demo teams" not in output  # the store kept its teams
    assert (launcher.data_dir / "temporal.db").exists()
    assert_stops_cleanly(launcher)
    assert exposed(launcher.data_dir) == []


@pytest.mark.integration
def test_a_dying_child_stops_the_stack(launcher: Launcher) -> None:
    launcher.start()
    sink = next(pid for pid, argv in launcher.children.items() if "devstack.smtp_sink" in argv)
    os.kill(sink, signal.SIGKILL)
    assert launcher.proc is not None
    assert launcher.proc.wait(timeout=30) == 1
    assert f"sink exited unexpectedly with code {-signal.SIGKILL}" in launcher.output
    assert launcher.alive_pids() == []
    assert not (launcher.data_dir / "pids.json").exists()


APP_FILES = ("api/main.py", "worker.py", "store/db.py")


@pytest.mark.integration
@pytest.mark.skipif(
    not all((ROOT / f).exists() for f in APP_FILES), reason=f"needs the whole app ({', '.join(APP_FILES)})"
)
def test_make_run_end_to_end(tmp_path: Path) -> None:
    launcher = Launcher(tmp_path / "data")
    try:
        launcher.start()
        base = f"http://127.0.0.1:{launcher.ports['LEADFLOW_API_PORT']}"
        assert http_status("GET", f"{base}/health/ready") == 200
        assert stat.S_IMODE((launcher.data_dir / "api_key").stat().st_mode) == 0o600
        assert http_status("POST", f"{base}/v1/leads", {"email": "ann@example.com", "company": "Acme"}) == 401
        assert len(launcher.pids) == 5  # launcher, temporal, sink, worker, api
        # While the stack runs, the SQLite files have their -wal/-shm siblings: owner only too.
        names = {p.name for p in launcher.data_dir.iterdir()}
        assert {"leadflow.db-wal", "leadflow.db-shm"} <= names, names
        assert exposed(launcher.data_dir) == []
        first_key = launcher.api_key
        assert f'-H "X-API-Key: {first_key}"' in launcher.output
        # The pages' dev login is printed and kept owner-only (issue 11: `make run` prints a dev admin login).
        password = (launcher.data_dir / "admin_password").read_text(encoding="utf-8").strip()
        assert f"admin / {password}" in launcher.output
        assert stat.S_IMODE((launcher.data_dir / "admin_password").stat().st_mode) == 0o600
        assert_stops_cleanly(launcher)

        launcher.start()
        assert launcher.api_key == first_key
        assert_stops_cleanly(launcher)
        assert exposed(launcher.data_dir) == []
    finally:
        launcher.kill_everything()
