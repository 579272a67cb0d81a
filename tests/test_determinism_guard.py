"""rules/ and workflows/ stay deterministic by what they can reach: no clock, no randomness, no I/O but Temporal's.

rules/ runs passed through Temporal's sandbox (one compiled playbook for every run), so the sandbox's own checks
never see it; workflows/ is checked by the sandbox only when a run reaches the offending line. This scan reads
every module of both: a forbidden import or call fails here, before any history records it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Modules whose use is nondeterministic or I/O (workflows take time, ids and randomness from `workflow.*`).
NONDETERMINISTIC = {"random", "secrets", "time", "uuid", "os", "socket", "subprocess", "threading", "urllib", "http"}
IO_LAYERS = {"sqlalchemy", "aiosmtplib", "aiosqlite", "asyncpg", "httpx", "requests", "store", "api", "privacy"}
FORBIDDEN_IMPORTS = {
    "rules": NONDETERMINISTIC | IO_LAYERS | {"asyncio", "temporalio", "activities", "workflows", "jinja2"},
    # asyncio is Temporal's deterministic loop in a workflow; activities are imported for their references only.
    "workflows": NONDETERMINISTIC | IO_LAYERS,
}
# Calls that read the clock or the outside world whatever module they come through.
CLOCK_CALLS = {"now", "utcnow", "today", "fromtimestamp", "utcfromtimestamp"}
BUILTIN_IO = {"open", "input", "exec", "eval", "breakpoint"}
# Modules of a forbidden package that are pure functions of their input.
PURE = {"urllib.parse"}
# The two rule compilers run code they built from a checked syntax tree (never text from outside).
COMPILERS = {("rules/expressions.py", "eval"), ("rules/sections.py", "exec")}


def _relative(path: Path) -> str:
    return path.relative_to(ROOT).as_posix() if path.is_relative_to(ROOT) else path.name


def _modules(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def _offences(path: Path, forbidden: set[str]) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        found += [
            f"line {node.lineno}: imports {name}"
            for name in names
            if name.split(".")[0] in forbidden and name not in PURE
        ]
        if isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Attribute) and func.attr in CLOCK_CALLS:
                owner = func.value
                # workflow.now() is Temporal's clock; anything else named now/today reads the machine's.
                if not (isinstance(owner, ast.Name) and owner.id == "workflow"):
                    found.append(f"line {node.lineno}: calls .{func.attr}()")
            elif isinstance(func, ast.Name) and func.id in BUILTIN_IO and (_relative(path), func.id) not in COMPILERS:
                found.append(f"line {node.lineno}: calls {func.id}()")
    return found


@pytest.mark.parametrize("package", sorted(FORBIDDEN_IMPORTS))
def test_no_clock_randomness_or_io_is_reachable(package: str) -> None:
    offences = [
        f"{path.relative_to(ROOT)} {what}"
        for path in _modules(package)
        for what in _offences(path, FORBIDDEN_IMPORTS[package])
    ]
    assert offences == []


def test_the_scan_finds_what_it_forbids(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text(
        "import random\nfrom time import monotonic\nfrom datetime import datetime\n"
        "x = datetime.now()\ny = workflow.now()\nz = open('f')\n"
    )
    assert _offences(bad, FORBIDDEN_IMPORTS["workflows"]) == [
        "line 1: imports random",
        "line 2: imports time",
        "line 4: calls .now()",
        "line 6: calls open()",
    ]
