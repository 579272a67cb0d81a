"""VisitorWorkflow on the time-skipping test server, with a stand-in forward activity: it holds an
anonymous visitor's events (bounded, deduplicated), forwards them in time order once stitched, and ends
when nobody identifies the visitor within the retention."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.client import WorkflowExecutionStatus
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer, Worker

from api.ingest_doors import visitor_id_for
from payload_converter import data_converter
from rules.model import TrackedEvent
from runtime import with_lead_codec, workflow_runner
from settings import Settings
from store import privacy
from tests.conftest import venv_binary
from workflows.visitor import ForwardJob, VisitorStart, VisitorWorkflow


@pytest.fixture(scope="module")
async def env() -> AsyncIterator[WorkflowEnvironment]:
    environment = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=venv_binary("temporal-test-server"), data_converter=data_converter
    )
    yield environment
    await environment.shutdown()


def event(event_id: str, days_ago: float) -> TrackedEvent:
    return TrackedEvent(
        event_id, "page_view", datetime.now(UTC) - timedelta(days=days_ago), f"https://x.test/{event_id}"
    )


async def test_held_events_go_to_the_lead_in_time_order_once_stitched(env: WorkflowEnvironment) -> None:
    forwarded: list[ForwardJob] = []

    @activity.defn(name="forward_visitor_events")
    async def forward(job: ForwardJob) -> int:
        forwarded.append(job)
        return len(job.events)

    queue = f"tq-{uuid.uuid4().hex[:8]}"
    async with Worker(env.client, task_queue=queue, workflows=[VisitorWorkflow], activities=[forward],
                      workflow_runner=workflow_runner()):  # fmt: skip
        handle = await env.client.start_workflow(
            VisitorWorkflow.run, VisitorStart("visitor-a", retention_seconds=86400), id=f"v-{uuid.uuid4().hex}",
            task_queue=queue, start_signal="events", start_signal_args=[[event("late", 1), event("first", 3)]],
        )  # fmt: skip
        await handle.signal(VisitorWorkflow.events, [event("late", 1), event("middle", 2)])  # a retry: deduped
        view = await handle.query(VisitorWorkflow.view)
        assert (view.held, view.lead_id) == (3, None) and forwarded == []
        await handle.signal(VisitorWorkflow.stitch, "lead-1")
        await handle.signal(VisitorWorkflow.events, [event("after", 0)])
        await handle.result()  # ends an hour after its last forward (time skipped)
        # Replays on today's code; LEADFLOW_RECORD_HISTORIES=1 keeps it for tests/test_replay.py.
        history = await handle.fetch_history()
        await Replayer(
            workflows=[VisitorWorkflow], data_converter=data_converter, workflow_runner=workflow_runner()
        ).replay_workflow(history)
        if os.environ.get("LEADFLOW_RECORD_HISTORIES"):
            (Path(__file__).parent / "histories" / "visitor_stitch_v1.json").write_text(history.to_json())
    assert [e.id for e in forwarded[0].events] == ["first", "middle", "late"]
    assert forwarded[0].lead_id == "lead-1" and [e.id for j in forwarded[1:] for e in j.events] == ["after"]


async def test_a_visitor_nobody_identifies_ends_after_the_retention(env: WorkflowEnvironment) -> None:
    queue = f"tq-{uuid.uuid4().hex[:8]}"
    async with Worker(env.client, task_queue=queue, workflows=[VisitorWorkflow], workflow_runner=workflow_runner()):
        handle = await env.client.start_workflow(
            VisitorWorkflow.run, VisitorStart("visitor-b", retention_seconds=30 * 86400, max_held=2),
            id=f"v-{uuid.uuid4().hex}", task_queue=queue, start_signal="events",
            start_signal_args=[[event("a", 1), event("b", 1), event("c", 1)]],
        )  # fmt: skip
        view = await handle.query(VisitorWorkflow.view)
        assert (view.held, view.dropped) == (2, 1)  # bounded: the earliest kept, the rest counted
        await env.sleep(timedelta(days=29))
        assert (await handle.describe()).status == WorkflowExecutionStatus.RUNNING
        await env.sleep(timedelta(days=2))
        await handle.result()
        assert (await handle.describe()).status == WorkflowExecutionStatus.COMPLETED


async def test_a_visitors_history_is_sealed_with_its_own_key(
    env: WorkflowEnvironment, settings: Settings, sessions: async_sessionmaker[AsyncSession]
) -> None:
    """An anonymous visitor's events (URLs, properties such as traits) are personal too: the codec seals the
    visitor workflow's payloads with a key of its own, as it does a lead's."""
    secret_url, secret_trait = "https://x.test/pricing?who=ren-secret", "trait-value-kaisha-secret"
    sealed = TrackedEvent("p1", "page_view", datetime.now(UTC), secret_url, properties={"company": secret_trait})
    forwarded: list[ForwardJob] = []

    @activity.defn(name="forward_visitor_events")
    async def forward(job: ForwardJob) -> int:
        forwarded.append(job)
        return len(job.events)

    client = with_lead_codec(env.client, settings, sessions)
    queue, visitor_id = f"tq-{uuid.uuid4().hex[:8]}", visitor_id_for(uuid.uuid4().hex, "test-key")
    async with Worker(client, task_queue=queue, workflows=[VisitorWorkflow], activities=[forward],
                      workflow_runner=workflow_runner()):  # fmt: skip
        handle = await client.start_workflow(
            VisitorWorkflow.run, VisitorStart(visitor_id, retention_seconds=86400), id=visitor_id,
            task_queue=queue, start_signal="events", start_signal_args=[[sealed]],
        )  # fmt: skip
        await handle.signal(VisitorWorkflow.stitch, "lead-" + "0" * 32)
        await handle.result()
    assert forwarded[0].events[0].properties == {"company": secret_trait}  # the activity reads it in the clear
    raw = b"".join(
        e.SerializeToString() for e in (await env.client.get_workflow_handle(visitor_id).fetch_history()).events
    )
    assert secret_trait.encode() not in raw and secret_url.encode() not in raw
    async with sessions() as session:
        assert await privacy.get_lead_key(session, visitor_id) is not None  # the visitor's own key
