"""LeadWorkflow as the one writer of touchpoints, with stand-in activities on the time-skipping server:
a burst of events reaches the store in a few projections, each event once, repeats never."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from temporalio import activity
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.email import EmailJob
from payload_converter import data_converter
from rules.model import AssignmentFailed, AssignRep, EventsReceived, LeadSnapshot, LeadUpserted, TrackedEvent
from runtime import load_active_playbook, workflow_runner
from settings import Settings
from tests.conftest import venv_binary
from workflows.lead import LeadWorkflow
from workflows.payloads import LeadOptions, LeadStart

DELAY = 30


@pytest.fixture(scope="module")
async def env() -> AsyncIterator[WorkflowEnvironment]:
    environment = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=venv_binary("temporal-test-server"), data_converter=data_converter
    )
    yield environment
    await environment.shutdown()


class StandIns:
    """The store and mail activities under their real names, recording what the workflow asks."""

    def __init__(self) -> None:
        self.snapshots: list[LeadSnapshot] = []

    @activity.defn(name="project_lead")
    async def project_lead(self, snap: LeadSnapshot) -> None:
        self.snapshots.append(snap)

    @activity.defn(name="send_email")
    async def send_email(self, job: EmailJob) -> None:
        return None

    @activity.defn(name="assign_rep")
    async def assign_rep(self, command: AssignRep) -> AssignmentFailed:
        return AssignmentFailed(command.key, command.team, "nobody in this test")


def page_views(prefix: str, count: int, at: datetime) -> EventsReceived:
    return EventsReceived(
        [TrackedEvent(f"{prefix}-{n}", "page_view", at, f"https://example.com/blog/{n}") for n in range(count)]
    )


async def test_a_burst_of_events_is_projected_in_batches_each_event_once(
    env: WorkflowEnvironment, settings: Settings
) -> None:
    stand_ins, queue = StandIns(), f"tq-{uuid.uuid4().hex[:8]}"
    start = LeadStart("lead-burst", load_active_playbook(settings).bundle, LeadOptions(DELAY, search_attributes=False))
    async with Worker(
        env.client,
        task_queue=queue,
        workflows=[LeadWorkflow],
        activities=[stand_ins.project_lead, stand_ins.send_email, stand_ins.assign_rep],
        workflow_runner=workflow_runner(),
    ):
        handle = await env.client.start_workflow(
            LeadWorkflow.run, start, id=f"lead-burst-{queue}", task_queue=queue,
            start_signal="upsert", start_signal_args=[LeadUpserted({"email": "burst@example.com"}, origin="form")],
        )  # fmt: skip
        now = datetime.now(UTC)
        for batch in range(5):
            await handle.signal(LeadWorkflow.events, page_views(f"b{batch}", 20, now))
        await handle.signal(LeadWorkflow.events, page_views("b0", 20, now))  # a retried request
        await env.sleep(timedelta(seconds=DELAY * 3))
        await handle.query(LeadWorkflow.view)  # the workflow has caught up

    projected = [p.event.id for snap in stand_ins.snapshots for p in snap.touchpoints]
    assert sorted(projected) == sorted(f"b{b}-{n}" for b in range(5) for n in range(20))
    # One projection for the new lead, then the burst coalesced by the projection delay: not one per signal.
    assert 1 < len(stand_ins.snapshots) <= 3
