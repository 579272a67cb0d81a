"""Recorded LeadWorkflow and VisitorWorkflow histories must replay on today's workflow code (determinism guard).

Histories live in tests/histories/; refresh them with `LEADFLOW_RECORD_HISTORIES=1 make test` only when a
change is meant to be incompatible, and then guard the old path with workflow.patched.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from payload_converter import data_converter
from runtime import workflow_runner
from workflows.lead import LeadWorkflow
from workflows.payloads import CURRENT_SHAPE
from workflows.playbook_migration import PlaybookMigrationWorkflow
from workflows.visitor import VisitorWorkflow

HISTORIES = sorted((Path(__file__).parent / "histories").glob("*.json"))


def test_histories_are_committed() -> None:
    assert HISTORIES, "tests/histories/ holds no recorded history"


@pytest.mark.parametrize("path", HISTORIES, ids=[p.stem for p in HISTORIES])
async def test_recorded_history_replays(path: Path) -> None:
    history = WorkflowHistory.from_json(path.stem, path.read_text())
    replayer = Replayer(
        workflows=[LeadWorkflow, VisitorWorkflow, PlaybookMigrationWorkflow],
        data_converter=data_converter,
        workflow_runner=workflow_runner(),
    )
    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is None, f"{path.name} no longer replays: {result.replay_failure}"


def _with_start_field(path: Path, **fields: object) -> WorkflowHistory:
    """A recorded history whose start input also holds ``fields`` (as a newer starter would have sent it)."""
    document = json.loads(path.read_text())
    payload = document["events"][0]["workflowExecutionStartedEventAttributes"]["input"]["payloads"][0]
    start = json.loads(base64.b64decode(payload["data"])) | fields
    payload["data"] = base64.b64encode(json.dumps(start).encode()).decode()
    return WorkflowHistory.from_json(path.stem, json.dumps(document))


async def test_a_run_that_recorded_the_shape_patch_replays_with_the_shape_in_its_start() -> None:
    """A rolling upgrade: today's API started the run with the shape in its input, a worker of the day before
    ran it and recorded the shape's patch marker; today's worker replays it without consulting the patch."""
    history = _with_start_field(Path(__file__).parent / "histories" / "lead_one_patch_v4.json", shape=CURRENT_SHAPE)
    replayer = Replayer(workflows=[LeadWorkflow], data_converter=data_converter, workflow_runner=workflow_runner())
    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is None, f"no longer replays: {result.replay_failure}"
