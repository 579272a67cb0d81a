"""Replay a history in a child process with a deadline: a replay that hangs inside the SDK core fails the test
that asked for it instead of freezing the suite.

What hung (the last stop's "reassign, pause, resume, two lost" history, and this suite now and then): the run
a continue-as-new had just started, fetched before its first workflow task completed. Its history holds one
event, WorkflowExecutionStarted, and the SDK's Replayer waits for a workflow task that never comes. Such a
history records no decision to check: it is skipped, saying so."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from settings import ROOT

# Generous: the child imports the worker code first (seconds on a loaded 2-core machine); a hang never ends.
REPLAY_SECONDS = 180.0
_SCRIPT = """
import asyncio, sys
from pathlib import Path
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer
from payload_converter import data_converter
from runtime import workflow_runner
from workflows.lead import LeadWorkflow

async def main() -> None:
    path = Path(sys.argv[1])
    history = WorkflowHistory.from_json(path.stem, path.read_text())
    replayer = Replayer(workflows=[LeadWorkflow], data_converter=data_converter, workflow_runner=workflow_runner())
    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    if result.replay_failure is not None:
        print(f"replay failed: {result.replay_failure!r}")
        sys.exit(1)

asyncio.run(main())
"""


def replay_within_deadline(history_json: Path, seconds: float = REPLAY_SECONDS) -> None:
    """Replay ``history_json`` (a decoded WorkflowHistory.to_json()) on today's LeadWorkflow; fail on a replay
    failure or when it has not finished within ``seconds``. A history without a completed workflow task has
    nothing to replay (and hangs the Replayer): skipped."""
    events = json.loads(history_json.read_text()).get("events", [])
    if not any(e.get("eventType") in ("EVENT_TYPE_WORKFLOW_TASK_COMPLETED", 6) for e in events):
        print(f"replay of {history_json.name} skipped: no workflow task completed yet ({len(events)} events)")
        return
    try:
        done = subprocess.run(
            [sys.executable, "-c", _SCRIPT, str(history_json)],
            cwd=ROOT, capture_output=True, text=True, timeout=seconds, check=False,
        )  # fmt: skip
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"replaying {history_json.name} did not finish within {seconds:.0f} s (hung)") from exc
    assert done.returncode == 0, f"replaying {history_json.name} failed:\n{done.stdout}\n{done.stderr[-3000:]}"
