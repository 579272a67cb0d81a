"""Lifecycle on Temporal's time-skipping test server (issue 9 item 3), with the real store and SMTP: a lead
recycled with an overdue follow-up ends it as cancelled (workflow state and read model), and a journey that
enrols recycled leads with ``reenroll: every_time`` nurtures it again each time it is recycled."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client, WorkflowHandle
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer

from api.lead_ids import lead_id_for
from payload_converter import data_converter
from privacy.history import decoded_history
from rules.model import EventsReceived, LeadUpserted, TrackedEvent
from runtime import build_worker, load_active_playbook, with_lead_codec, workflow_runner
from settings import Settings
from store import repo
from tests.conftest import Inbox, venv_binary
from tests.lifecycle_fixtures import lifecycle_playbook
from tests.test_lead_workflow import wait_view
from workflows.lead import LeadWorkflow
from workflows.payloads import LeadOptions, LeadStart

EMAIL = "rin@example.com"
HISTORIES = Path(__file__).parent / "histories"


@pytest.fixture(scope="module")
async def env() -> AsyncIterator[WorkflowEnvironment]:
    environment = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=venv_binary("temporal-test-server"), data_converter=data_converter
    )
    yield environment
    await environment.shutdown()


@pytest.fixture
def lifecycle_settings(settings: Settings, tmp_path: Path) -> Settings:
    playbook = tmp_path / "lifecycle.yaml"
    playbook.write_text(lifecycle_playbook("every_time"), encoding="utf-8")
    return settings.model_copy(update={"task_queue": f"tq-{uuid.uuid4().hex[:8]}", "playbook_path": playbook})


async def start_lead(client: Client, settings: Settings) -> WorkflowHandle:
    bundle = load_active_playbook(settings).bundle
    lead_id = lead_id_for(EMAIL, settings.secret("id_key"))
    start = LeadStart(lead_id, bundle, LeadOptions(projection_delay_seconds=1, search_attributes=False))
    return await client.start_workflow(
        LeadWorkflow.run,
        start,
        id=lead_id,
        task_queue=settings.task_queue,
        start_signal="upsert",
        start_signal_args=[LeadUpserted({"email": EMAIL, "company": "Rin Labs"})],
    )


async def pricing_page(handle: WorkflowHandle, event_id: str) -> None:
    # decide() clamps event times to the workflow's (skipped) clock.
    event = TrackedEvent(event_id, "page_view", datetime.now(UTC), url="https://x.test/pricing")
    await handle.signal(LeadWorkflow.events, EventsReceived([event]))


async def stored_followups(  # type: ignore[no-untyped-def]
    env: WorkflowEnvironment, sessions: async_sessionmaker[AsyncSession], lead_id: str, predicate
) -> dict[str, str]:
    rows: dict[str, str] = {}
    for _ in range(100):
        async with sessions() as session:
            listed = await repo.list_followups(session, status=None, limit=50, offset=0)
        rows = {r["key"]: r["status"] for r in listed if r["lead_id"] == lead_id}
        if predicate(rows):
            return rows
        await env.sleep(timedelta(seconds=1))
    raise AssertionError(f"the store never showed it: {rows}")


async def test_recycling_cancels_the_overdue_follow_up_and_every_recycling_nurtures_again(
    env: WorkflowEnvironment,
    lifecycle_settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    smtp: tuple[Inbox, int],
) -> None:
    inbox, _ = smtp
    settings = lifecycle_settings
    client = with_lead_codec(env.client, settings, sessions)
    async with build_worker(client, settings, sessions):
        handle = await start_lead(client, settings)
        await pricing_page(handle, "pricing-1")
        view = await wait_view(handle, lambda v: v.owner is not None)
        assert (view.stage, view.owner.rep.id, view.followup.status) == ("sql", "rep-aiko", "pending")

        # Nobody calls: the follow-up goes overdue and the manager hears of it.
        await env.sleep(timedelta(hours=24, minutes=1))
        view = await wait_view(handle, lambda v: v.followup.status == "overdue")
        await inbox.wait_for(lambda m: m["X-Leadflow-Kind"] == "sla_escalation")

        # 30 days in SQL: recycled. The follow-up ends as cancelled, in the lead and in the read model.
        await env.sleep(timedelta(days=30))
        view = await wait_view(handle, lambda v: v.stage == "recycled")
        assert view.owner is None
        assert view.followup.status == "cancelled" and view.followup.cancel_reason == "the lead has no owner any more"
        assert not {"sla_remind", "sla_due", "sla_reassign"} & set(view.timers)
        rows = await stored_followups(env, sessions, handle.id, lambda r: "overdue" not in r.values())
        assert set(rows.values()) == {"cancelled"}, rows
        async with sessions() as session:
            assert await repo.list_followups(session, status="overdue", limit=10, offset=0) == []
        (run,) = view.journeys
        assert (run.journey_id, run.status, run.enrolments) == ("recycled_nurture", "active", 1)
        await inbox.wait_for(lambda m: EMAIL in m["X-Envelope-To"] and m["X-Leadflow-Kind"] == "nurture")

        # Back to SQL (the journey exits), a new rep, and 30 days later recycled again: nurtured again.
        await pricing_page(handle, "pricing-2")
        view = await wait_view(handle, lambda v: v.owner is not None and v.stage == "sql")
        assert view.journeys[0].status == "exited"
        await env.sleep(timedelta(days=30, minutes=1))
        view = await wait_view(handle, lambda v: v.stage == "recycled")
        (run,) = view.journeys
        assert (run.status, run.enrolments) == ("active", 2)
        welcomes = await inbox.wait_for(
            lambda m: len([x for x in inbox.to(EMAIL) if x["X-Leadflow-Kind"] == "nurture"]) >= 2
        )
        assert len([m for m in inbox.to(EMAIL) if m["X-Leadflow-Kind"] == "nurture"]) == 2, welcomes
        rows = await stored_followups(env, sessions, handle.id, lambda r: len(r) >= 2 and "pending" not in r.values())
        assert "overdue" not in rows.values() and "pending" not in rows.values(), rows

        # This shape (the follow-up patch, a recycling, a re-enrolment) replays on today's code and joins the
        # replay tests (LEADFLOW_RECORD_HISTORIES=1 records it, decoded: recorded histories replay without a key).
        history = await decoded_history(await handle.fetch_history(), client.data_converter.payload_codec)
        await Replayer(
            workflows=[LeadWorkflow], data_converter=data_converter, workflow_runner=workflow_runner()
        ).replay_workflow(history)
        if os.environ.get("LEADFLOW_RECORD_HISTORIES"):
            (HISTORIES / "lead_recycled_reenrolled_v1.json").write_text(history.to_json())
