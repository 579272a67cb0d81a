"""Child processes of the dev stack and the launcher's own output."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

TAIL_LINES = 30

_print_lock = threading.Lock()


def say(line: str) -> None:
    # Children's output comes from reader threads: one lock keeps lines whole.
    with _print_lock:
        try:
            print(line, flush=True)
        except OSError:
            # Our stdout is gone (`make run | tee` after Ctrl-C killed tee): keep stopping the
            # children and draining their pipes (their logs still get every line), and stop writing.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def note(message: str) -> None:
    say(f"{'devstack':<8} | {message}")


@dataclass
class Child:
    """A server in its own session: the terminal's Ctrl-C reaches only the launcher, which picks the order.

    Its output goes to ``log_path`` (one previous log kept) and, when ``echo``, to our stdout; the last
    lines stay in ``tail`` to explain a crash.
    """

    name: str
    argv: list[str]
    log_path: Path
    echo: bool = True
    proc: subprocess.Popen[bytes] | None = None
    tail: deque[str] = field(default_factory=lambda: deque(maxlen=TAIL_LINES))
    reader: threading.Thread | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    @property
    def exit_code(self) -> int | None:
        return self.proc.poll() if self.proc else None

    def start(self, env: Mapping[str, str], cwd: Path) -> None:
        rotate(self.log_path)
        self.proc = subprocess.Popen(  # noqa: S603 (argv built by the launcher, no shell)
            self.argv, cwd=cwd, env=dict(env), stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        self.reader = threading.Thread(target=self._pump, name=f"{self.name}-output", daemon=True)
        self.reader.start()

    def _pump(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        with self.log_path.open("ab") as log:
            for raw in iter(self.proc.stdout.readline, b""):
                log.write(raw)
                log.flush()
                line = raw.decode("utf-8", errors="replace").rstrip()
                self.tail.append(line)
                if self.echo:
                    say(f"{self.name:<8} | {line}")

    def stop(self, timeout: float, hurry: Callable[[], bool]) -> None:
        """SIGTERM, wait up to ``timeout`` (cut short once ``hurry()``), then SIGKILL."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            signal_group(self.proc.pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while self.proc.poll() is None and time.monotonic() < deadline and not hurry():
                time.sleep(0.1)
        if self.proc.poll() is None:
            note(f"{self.name} did not stop in time: killing it")
            signal_group(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        if self.reader is not None:
            self.reader.join(timeout=2)


def signal_group(pid: int, signum: signal.Signals) -> None:
    # Each child leads its own process group (start_new_session), so this also reaches anything it forked.
    try:
        os.killpg(pid, signum)
    except ProcessLookupError:
        pass


def rotate(log: Path) -> None:
    """Keep one previous log per child: the one that explains the last crash survives a restart."""
    if log.exists():
        log.replace(log.with_name(log.name + ".1"))


def process_cmdline(pid: int) -> list[str] | None:
    """The command line of a live process (Linux /proc); None when gone, a zombie or unknowable."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return raw.decode(errors="replace").split("\0")[:-1] or None


def stop_orphan(pid: int, timeout: float) -> None:
    """Stop a process group that is not our child (we cannot wait() for it): poll /proc instead."""
    signal_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while process_cmdline(pid) is not None and time.monotonic() < deadline:
        time.sleep(0.1)
    if process_cmdline(pid) is not None:
        signal_group(pid, signal.SIGKILL)
