"""The OpenAPI spec tells the truth: schemathesis with every check (`--checks all`) against the API served
by a real uvicorn. Temporal is absent here, so its routes answer their documented 503; examples and time
are bounded (a fixed seed keeps the run reproducible; change it locally to explore)."""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn

from api.main import create_app
from tests.conftest import TEST_API_KEY, free_port, venv_binary
from tests.test_robustness import offline_settings

CONFIG = Path(__file__).with_name("schemathesis.toml")
MAX_EXAMPLES = 10
SEED = 20261130


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    app = create_app(offline_settings(tmp_path_factory.mktemp("openapi")))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(200):
        if server.started:
            break
        time.sleep(0.05)
    assert server.started, "uvicorn did not start"
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


def test_the_api_conforms_to_its_openapi_spec_with_every_check(served: str, tmp_path: Path) -> None:
    command = [
        venv_binary("schemathesis"), "--no-color", "--config-file", str(CONFIG), "run", f"{served}/openapi.json",
        "--checks", "all", "-H", f"X-API-Key: {TEST_API_KEY}", "--max-examples", str(MAX_EXAMPLES),
        "--seed", str(SEED), "--workers", "1", "--request-timeout", "15",
        "--report-dir", str(tmp_path),
    ]  # fmt: skip
    # cwd: schemathesis keeps its cache of found failures in ./.schemathesis; not in the repository.
    # One worker: CPython 3.11 keeps the AST constructor's recursion counter per interpreter, not per thread
    # (python/cpython#106905), and hypothesis parses lambda sources with `ast` while describing strategies, so
    # two worker threads crashed the tool itself ("AST constructor recursion depth mismatch") in CI.
    run = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False, cwd=tmp_path)
    assert run.returncode == 0, run.stdout[-20000:] + run.stderr[-3000:]
