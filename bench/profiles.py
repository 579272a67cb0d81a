"""Where the time goes: py-spy (PyPI ``py-spy``) sampling a process while the bench loads it, summarised.

``Sampler(pid, path)`` records collapsed stacks (``--format raw``: one line per distinct stack and its
sample count) until stopped; ``summary(path)`` answers the functions holding the most samples, inclusive
(on the stack) and by themselves (at the top of it), as shares of all samples. ``--gil``: only the thread
holding the GIL is sampled, so the shares are of the process's Python CPU (idle waits are not samples).
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

RATE = 97  # samples per second: off the round numbers other timers use
PLUMBING = 0.6


def py_spy() -> str | None:
    beside = Path(sys.executable).with_name("py-spy")
    return str(beside) if beside.exists() else shutil.which("py-spy")


class Sampler:
    def __init__(self, pid: int, output: Path) -> None:
        binary = py_spy()
        if binary is None:
            raise RuntimeError("py-spy is missing: .venv/bin/pip install py-spy")
        self.output = output
        argv = [binary, "record", "--pid", str(pid), "--rate", str(RATE), "--format", "raw", "--gil"]
        self.proc = subprocess.Popen(
            [*argv, "--output", str(output)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def _frame_name(frame: str) -> str:
    # "function (path/to/file.py:123)" -> "function (file.py)": lines differ, the function is what counts.
    name, _, where = frame.partition(" (")
    file = where.rsplit(":", 1)[0].rsplit("/", 2)
    return f"{name} ({'/'.join(file[-2:])})" if where else name


def summary(path: Path, top: int = 12) -> list[str]:
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = [_frame_name(f) for f in stack.split(";")]
        for name in set(frames[1:]):  # the first frame is the process/thread label
            inclusive[name] += count
        own[frames[-1]] += count
    if not total:
        return [f"{path.name}: no samples"]
    lines = [f"{path.name}: {total} samples (with the GIL), where they went"]
    # Frames on (nearly) every stack are the event loop and thread plumbing: they say nothing.
    telling = [(name, n) for name, n in inclusive.most_common() if n / total < PLUMBING][:top]
    lines += [f"  {n / total:6.1%} on stack  {name}" for name, n in telling]
    lines += [f"  {n / total:6.1%} at top    {name}" for name, n in own.most_common(top)]
    return lines
