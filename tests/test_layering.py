"""Production code never imports the dev stack: `devstack/` exists for `make run` and tests, and what the
pages show (sent mail, for one) comes from the store, not from the local SMTP sink's files."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PRODUCTION = ["api", "activities", "capture", "cli", "jobs", "observability", "privacy", "rules", "store", "workflows"]


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_production_code_never_imports_the_dev_stack() -> None:
    files = [f for package in PRODUCTION for f in (ROOT / package).rglob("*.py")]
    files += [ROOT / "worker.py", ROOT / "settings.py", ROOT / "runtime.py"]
    offenders = sorted(
        f"{f.relative_to(ROOT)} imports {name}"
        for f in files
        for name in _imports(f)
        if name == "devstack" or name.startswith("devstack.")
    )
    assert offenders == []
