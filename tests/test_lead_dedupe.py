"""LeadWorkflow counts a repeated event id once for the dedupe window, across continue-as-new.

The time-skipping server shows the window (a month passes in seconds); the dev server, which suggests
continue-as-new after 40 history events here, shows the seen ids travelling to the next run.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
import yaml
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client, WorkflowHandle
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer

from payload_converter import data_converter
from privacy.history import decoded_history
from rules.dedupe import WINDOW_DAYS
from rules.model import EventsReceived, LeadUpserted, TrackedEvent
from runtime import build_worker, with_lead_codec, workflow_runner
from settings import Settings
from tests.conftest import venv_binary
from tests.test_lead_workflow import HISTORIES, env, wait_view  # noqa: F401  (env: the time-skipping server)
from tests.test_rules_dedupe import COUNTING
from workflows import search_attributes
from workflows.lead import LeadWorkflow
from workflows.payloads import LeadOptions, LeadStart, PlaybookBundle

CAN_TEST_SECONDS = 240


@pytest.fixture(scope="module")
async def dev_server() -> AsyncIterator[WorkflowEnvironment]:
    environment = await WorkflowEnvironment.start_local(
        dev_server_existing_path=venv_binary("temporal"),
        search_attributes=search_attributes.ALL,
        data_converter=data_converter,
        dev_server_extra_args=["--dynamic-config-value", "limit.historyCount.suggestContinueAsNew=40"],
    )
    yield environment
    await environment.shutdown()


def downloads(*ids: str) -> EventsReceived:
    now = datetime.now(UTC)  # decide() clamps event times to the workflow's clock
    return EventsReceived([TrackedEvent(event_id, "download", now) for event_id in ids])


async def start_counting_lead(client: Client, settings: Settings, search_attrs: bool) -> WorkflowHandle:
    """A lead on a playbook where every counted download adds one point and nothing else happens."""
    bundle = PlaybookBundle("dedupe-test", yaml.safe_load(COUNTING))
    lead_id = f"lead-{uuid.uuid4().hex[:12]}"
    return await client.start_workflow(
        LeadWorkflow.run,
        LeadStart(lead_id, bundle, LeadOptions(projection_delay_seconds=1, search_attributes=search_attrs)),
        id=lead_id,
        task_queue=settings.task_queue,
        start_signal="upsert",
        start_signal_args=[LeadUpserted({"email": f"{lead_id}@example.com"})],
    )


async def test_a_repeated_id_is_counted_once_for_the_window_not_just_500_ids(
    env: WorkflowEnvironment,  # noqa: F811
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    settings = settings.model_copy(update={"task_queue": f"tq-{uuid.uuid4().hex[:8]}"})
    client = with_lead_codec(env.client, settings, sessions)  # lead payloads are sealed per lead
    async with build_worker(client, settings, sessions):
        handle = await start_counting_lead(client, settings, search_attrs=False)
        await handle.signal(LeadWorkflow.events, downloads(*[f"ev-{i}" for i in range(501)]))
        await wait_view(handle, lambda v: v.score == 501)
        # The first id again, with a new one: once the new one counted, so would have the repeat.
        await handle.signal(LeadWorkflow.events, downloads("ev-0", "ev-new"))
        view = await wait_view(handle, lambda v: v.score >= 502)
        assert view.score == 502

        # Just inside the window (whole days after the day of receipt) it is still a repeat.
        await env.sleep(timedelta(days=WINDOW_DAYS - 1))
        await handle.signal(LeadWorkflow.events, downloads("ev-0", "ev-later"))
        view = await wait_view(handle, lambda v: v.score >= 503)
        assert view.score == 503
        # Past the window the id is forgotten, as README says.
        await env.sleep(timedelta(days=2))
        await handle.signal(LeadWorkflow.events, downloads("ev-1"))
        view = await wait_view(handle, lambda v: v.score >= 504)
        assert view.score == 504


async def test_seen_ids_travel_across_continue_as_new(
    dev_server: WorkflowEnvironment, settings: Settings, sessions: async_sessionmaker[AsyncSession]
) -> None:
    async with asyncio.timeout(CAN_TEST_SECONDS):  # a stuck run fails with a traceback, never hangs the suite
        settings = settings.model_copy(update={"task_queue": f"tq-{uuid.uuid4().hex[:8]}"})
        client = with_lead_codec(dev_server.client, settings, sessions)
        async with build_worker(client, settings, sessions):
            handle = await start_counting_lead(client, settings, search_attrs=True)
            await handle.signal(LeadWorkflow.events, downloads(*[f"ev-{i}" for i in range(501)]))
            await wait_view(handle, lambda v: v.score == 501)
            first_run = (await handle.describe()).run_id
            # One signal (and workflow task) per event, until the server suggests continue-as-new.
            latest = client.get_workflow_handle(handle.id)
            for i in range(60):
                await latest.signal(LeadWorkflow.events, downloads(f"more-{i}"))
                await wait_view(latest, lambda v, i=i: v.score == 502 + i)
                if i >= 20 and (await latest.describe()).run_id != first_run:
                    break
            assert (await latest.describe()).run_id != first_run, "the lead never continued as new"
            score = (await latest.query(LeadWorkflow.view)).score

            await latest.signal(LeadWorkflow.events, downloads("ev-0", "more-0", f"more-{i}", "ev-after"))
            view = await wait_view(latest, lambda v: v.score > score)
            assert view.score == score + 1

            # Both runs replay; the second starts from a state carrying the window (the shape replay must read).
            replayer = Replayer(
                workflows=[LeadWorkflow], data_converter=data_converter, workflow_runner=workflow_runner()
            )
            # Recorded histories stay plain (they replay without a key): decoded before replaying and keeping.
            codec = client.data_converter.payload_codec
            assert codec is not None
            first = await client.get_workflow_handle(handle.id, run_id=first_run).fetch_history()
            await replayer.replay_workflow(await decoded_history(first, codec))
            carried = await decoded_history(await latest.fetch_history(), codec)
            await replayer.replay_workflow(carried)
            # LEADFLOW_RECORD_HISTORIES=1 keeps the second run for tests/test_replay.py.
            if os.environ.get("LEADFLOW_RECORD_HISTORIES"):
                (HISTORIES / "lead_dedupe_carried_v2.json").write_text(carried.to_json())
