"""LeadWorkflow keeps a bounded score history (rules/score_history.py) across continue-as-new, while the
store, written by its projections, keeps every change once: on the dev server (which suggests
continue-as-new after 40 history events here) with the real worker and store."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
import yaml
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.testing import WorkflowEnvironment

from payload_converter import data_converter
from privacy.history import decoded_history
from rules.model import EventsReceived, LeadUpserted, TrackedEvent
from rules.score_history import CARRIED_FORWARD, KEPT_SCORE_CHANGES
from runtime import build_worker, with_lead_codec
from settings import Settings
from store import repo
from tests.conftest import venv_binary
from tests.test_lead_workflow import wait_view
from tests.test_rules_dedupe import COUNTING
from workflows import search_attributes
from workflows.lead import LeadWorkflow
from workflows.payloads import LeadOptions, LeadStart, PlaybookBundle

TEST_SECONDS = 240


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
    now = datetime.now(UTC)
    return EventsReceived([TrackedEvent(event_id, "download", now) for event_id in ids])


async def test_a_busy_lead_carries_a_bounded_score_history_and_the_store_keeps_every_change_once(
    dev_server: WorkflowEnvironment, settings: Settings, sessions: async_sessionmaker[AsyncSession]
) -> None:
    async with asyncio.timeout(TEST_SECONDS):  # a stuck run fails with a traceback, never hangs the suite
        settings = settings.model_copy(update={"task_queue": f"tq-{uuid.uuid4().hex[:8]}"})
        client = with_lead_codec(dev_server.client, settings, sessions)
        lead_id = f"lead-{uuid.uuid4().hex}"  # a lead id's shape: its payloads are sealed
        async with build_worker(client, settings, sessions):
            handle = await client.start_workflow(
                LeadWorkflow.run,
                LeadStart(lead_id, PlaybookBundle("counting", yaml.safe_load(COUNTING)), LeadOptions(1, False)),
                id=lead_id, task_queue=settings.task_queue,
                start_signal="upsert", start_signal_args=[LeadUpserted({"email": f"{lead_id}@example.com"})],
            )  # fmt: skip
            await handle.signal(LeadWorkflow.events, downloads(*[f"ev-{i}" for i in range(450)]))
            await wait_view(handle, lambda v: v.score == 450)
            first_run = (await handle.describe()).run_id
            latest = client.get_workflow_handle(lead_id)
            for i in range(60):  # one workflow task per signal, until the server suggests continue-as-new
                await latest.signal(LeadWorkflow.events, downloads(f"more-{i}"))
                await wait_view(latest, lambda v, i=i: v.score == 451 + i)
                if i >= 20 and (await latest.describe()).run_id != first_run:
                    break
            assert (await latest.describe()).run_id != first_run, "the lead never continued as new"
            score = (await latest.query(LeadWorkflow.view)).score
            codec = client.data_converter.payload_codec
            assert codec is not None
            carried = await decoded_history(await latest.fetch_history(), codec)
            started = carried.events[0].workflow_execution_started_event_attributes
            (start,) = await data_converter.decode(started.input.payloads, [LeadStart])
            assert start.state is not None
            changes = start.state.score_changes
            # Bounded: the latest changes and one carried-forward line, which still explains the score.
            assert len(changes) <= KEPT_SCORE_CHANGES + 2 and changes[0].rule_id == CARRIED_FORWARD
            assert round(sum(c.points for c in changes)) == round(start.state.score)

            for _ in range(200):  # the store, written by projections, has every change once
                async with sessions() as session:
                    stored = await repo.list_score_changes(session, lead_id)
                if len(stored) >= score:
                    break
                await asyncio.sleep(0.05)
            assert [row["seq"] for row in stored] == list(range(1, score + 1))
            assert all(row["rule_id"] == "download" for row in stored) and sum(r["points"] for r in stored) == score
