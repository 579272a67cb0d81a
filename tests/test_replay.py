"""Recorded LeadWorkflow and VisitorWorkflow histories must replay on today's workflow code (determinism guard).

Histories live in tests/histories/; refresh them with `LEADFLOW_RECORD_HISTORIES=1 make test` only when a
change is meant to be incompatible, and then guard the old path with workflow.patched.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from payload_converter import data_converter
from runtime import workflow_runner
from workflows.lead import LeadWorkflow
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
