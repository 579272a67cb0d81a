"""LeadWorkflow's drain before continue-as-new keeps answering updates (shell test, stand-in activities).

Found through merges (a merged lead's history is long, and a touch for the duplicate lands on it): the drain
waited for every update handler to finish before applying the inbox, while an update (log_touch, merge)
waits for its own input to be applied. A touch arriving during the drain hung until its caller gave up.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
import yaml
from temporalio import activity
from temporalio.client import WorkflowHandle
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from payload_converter import data_converter
from rules.model import EventsReceived, LeadSnapshot, LeadUpserted, TouchLogged, TrackedEvent
from runtime import workflow_runner
from tests.conftest import venv_binary
from tests.test_rules_dedupe import COUNTING
from workflows import search_attributes
from workflows.lead import LeadWorkflow
from workflows.payloads import LeadOptions, LeadStart, LeadView, PlaybookBundle

TEST_SECONDS = 120


@pytest.fixture(scope="module")
async def dev_server() -> AsyncIterator[WorkflowEnvironment]:
    environment = await WorkflowEnvironment.start_local(
        dev_server_existing_path=venv_binary("temporal"),
        search_attributes=search_attributes.ALL,
        data_converter=data_converter,
        dev_server_extra_args=["--dynamic-config-value", "limit.historyCount.suggestContinueAsNew=30"],
    )
    yield environment
    await environment.shutdown()


class StoreStandIn:
    """project_lead that holds every projection until released: the drain has something to wait for."""

    def __init__(self) -> None:
        self.release = asyncio.Event()

    @activity.defn(name="project_lead")
    async def project_lead(self, snap: LeadSnapshot) -> None:
        await self.release.wait()


async def view_of(handle: WorkflowHandle, predicate, seconds: float = 10.0) -> LeadView:  # type: ignore[no-untyped-def,type-arg]
    async with asyncio.timeout(seconds):
        while True:
            view: LeadView = await handle.query(LeadWorkflow.view)
            if predicate(view):
                return view
            await asyncio.sleep(0.05)


async def test_a_touch_during_the_drain_is_applied_and_answered(dev_server: WorkflowEnvironment) -> None:
    async with asyncio.timeout(TEST_SECONDS):
        client, queue, store = dev_server.client, f"tq-{uuid.uuid4().hex[:8]}", StoreStandIn()
        lead_id = f"lead-{uuid.uuid4().hex[:12]}"  # not a sealed lead id: plain payloads, no key ring needed
        async with Worker(
            client,
            task_queue=queue,
            workflows=[LeadWorkflow],
            activities=[store.project_lead],
            workflow_runner=workflow_runner(),
        ):
            handle = await client.start_workflow(
                LeadWorkflow.run,
                LeadStart(lead_id, PlaybookBundle("drain", yaml.safe_load(COUNTING)), LeadOptions(1, False)),
                id=lead_id,
                task_queue=queue,
                start_signal="upsert",
                start_signal_args=[LeadUpserted({"email": "dee@example.com"})],
            )
            # One workflow task per event until the server suggests continue-as-new: the lead drains, and its
            # projections are held, so the drain lasts; from then on a signal waits for them (as before).
            for i in range(1, 60):
                now = datetime.now(UTC)
                await handle.signal(LeadWorkflow.events, EventsReceived([TrackedEvent(f"e-{i}", "download", now)]))
                try:
                    await view_of(handle, lambda v, i=i: v.score == i, seconds=3)
                except TimeoutError:
                    break
            else:
                pytest.fail("the lead never started draining")
            # A touch now: it is applied and answered at once, with the event that was waiting.
            touch = TouchLogged("touch-1", "call", datetime.now(UTC), "rep-aiko")
            answered = await asyncio.wait_for(handle.execute_update(LeadWorkflow.log_touch, touch), 10)
            assert answered.score == i
            store.release.set()
            first_run = (await handle.describe()).run_id
            latest = client.get_workflow_handle(lead_id)
            async with asyncio.timeout(30):
                while (await latest.describe()).run_id == first_run:  # noqa: ASYNC110 (polling the server)
                    await asyncio.sleep(0.1)
            assert (await latest.query(LeadWorkflow.view)).score == i
