"""LeadWorkflow on Temporal's time-skipping test server: days of SLA timers in seconds, real SMTP, real store."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client, WorkflowHandle, WorkflowHistory
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer

from api.lead_ids import lead_id_for
from payload_converter import data_converter, shared_type_adapter
from privacy.history import decoded_history
from rules.model import EventsReceived, LeadUpserted, TrackedEvent
from runtime import build_worker, load_active_playbook, with_lead_codec, workflow_runner
from settings import Settings
from store import repo
from tests.conftest import Inbox, venv_binary
from workflows.lead import LeadWorkflow
from workflows.payloads import CURRENT_SHAPE, LeadOptions, LeadStart, LeadView

HISTORIES = Path(__file__).parent / "histories"

# Grade B (manager title 40 + 50 staff 15 + served country 10 = 65): the default 24 h first-touch policy.
GRADE_B_LEAD = {"first_name": "Ken", "last_name": "Mori", "company": "Mori Works", "title": "Marketing Manager",
                "company_size": 50, "country": "US"}  # fmt: skip


@pytest.fixture(scope="session")
async def env() -> AsyncIterator[WorkflowEnvironment]:
    environment = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=venv_binary("temporal-test-server"), data_converter=data_converter
    )
    yield environment
    await environment.shutdown()


async def start_sql_lead(client: Client, settings: Settings, email: str, shape: str | None = None) -> WorkflowHandle:
    """Create a lead and send it the seed's events: whitepaper, email click, pricing page -> SQL. ``shape``: as
    the API starts a lead today (CURRENT_SHAPE), or as it did before (None)."""
    playbook = load_active_playbook(settings)
    lead_id = lead_id_for(email, settings.secret("id_key"))
    # The time-skipping server has no visibility store: no search attributes there.
    options = LeadOptions(projection_delay_seconds=1, search_attributes=False)
    start = LeadStart(lead_id, playbook.bundle, options, shape=shape)
    handle = await client.start_workflow(
        LeadWorkflow.run,
        start,
        id=lead_id,
        task_queue=settings.task_queue,
        start_signal="upsert",
        start_signal_args=[LeadUpserted({"email": email, **GRADE_B_LEAD})],
    )
    now = datetime.now(UTC)  # decide() clamps event times to the workflow's (skipped) clock
    events = [
        TrackedEvent("e1", "download", now, name="whitepaper"),
        TrackedEvent("e2", "email_click", now),
        TrackedEvent("e3", "page_view", now, url="https://example.com/pricing"),
    ]
    await handle.signal(LeadWorkflow.events, EventsReceived(events))
    return handle


async def wait_view(handle: WorkflowHandle, predicate, attempts: int = 200) -> LeadView:  # type: ignore[no-untyped-def]
    view: LeadView | None = None
    for _ in range(attempts):
        view = await handle.query(LeadWorkflow.view)
        if predicate(view):
            return view
        await asyncio.sleep(0.05)
    raise AssertionError(f"condition never held; last view: {view}")


async def replays_and_is_kept(client: Client, history: WorkflowHistory, name: str) -> None:
    """The history just made replays on today's code (as after an eviction); LEADFLOW_RECORD_HISTORIES=1 keeps it
    for the replay tests as tests/histories/``name``, decoded (recorded histories replay without a key)."""
    decoded = await decoded_history(history, client.data_converter.payload_codec)
    await Replayer(
        workflows=[LeadWorkflow], data_converter=data_converter, workflow_runner=workflow_runner()
    ).replay_workflow(decoded)
    if os.environ.get("LEADFLOW_RECORD_HISTORIES"):
        (HISTORIES / name).write_text(decoded.to_json())


async def test_sla_breach_escalates_to_manager_after_24_simulated_hours(
    env: WorkflowEnvironment, settings: Settings, sessions: async_sessionmaker[AsyncSession], smtp: tuple[Inbox, int]
) -> None:
    inbox, _ = smtp
    task_queue = f"tq-{uuid.uuid4().hex[:8]}"
    settings = settings.model_copy(update={"task_queue": task_queue})
    # Lead payloads are sealed per lead: the test's client needs the codec too.
    client = with_lead_codec(env.client, settings, sessions)
    async with build_worker(client, settings, sessions):
        handle = await start_sql_lead(client, settings, "ken@example.com")
        view = await wait_view(handle, lambda v: v.owner is not None)
        assert (view.stage, view.score, view.grade) == ("sql", 60, "B")
        assert view.owner.rep.id == "rep-aiko" and view.owner.rep.team == "inside-sales"
        assert view.followup.status == "pending" and view.followup.policy_id == "default"
        assert view.followup.due_at - view.followup.started_at == timedelta(hours=24)

        # The nurture welcome and the rep's notice really arrive at the SMTP server.
        await inbox.wait_for(lambda m: m["X-Leadflow-Kind"] == "rep_new_lead")
        welcome = inbox.to("ken@example.com")
        assert len(welcome) == 1 and "Thanks for your interest, Ken" in welcome[0]["Subject"]
        assert {p.get_content_type() for p in welcome[0].walk()} >= {"text/plain", "text/html"}
        notice = inbox.to("aiko@example.com")[0]
        assert "Mori Works" in notice["Subject"] and "score 60" in notice["Subject"]

        # Nobody touches the lead: 24 simulated hours pass in seconds.
        await env.sleep(timedelta(hours=24, minutes=1))
        view = await wait_view(handle, lambda v: v.followup.status == "overdue")
        assert view.followup.escalated_at is not None and view.followup.reminded_at is not None
        escalation = await inbox.wait_for(lambda m: m["X-Leadflow-Kind"] == "sla_escalation")
        assert "mina.manager@example.com" in escalation[0]["X-Envelope-To"]
        assert "Aiko Sato has not contacted Mori Works" in escalation[0]["Subject"]
        assert [m["X-Leadflow-Kind"] for m in inbox.to("aiko@example.com")] == ["rep_new_lead", "sla_reminder"]

        # The read model shows the overdue follow-up.
        async def overdue() -> list[dict]:
            async with sessions() as session:
                return await repo.list_followups(session, status="overdue", limit=10, offset=0)

        for _ in range(100):
            rows = await overdue()
            if rows:
                break
            await env.sleep(timedelta(seconds=1))
        assert [(r["lead_id"], r["rep_id"]) for r in rows] == [(handle.id, "rep-aiko")]

        # 24 h after the escalation the lead is reassigned to the next rep, who gets a fresh SLA.
        await env.sleep(timedelta(hours=24, minutes=1))
        view = await wait_view(handle, lambda v: v.owner.rep.id == "rep-ben")
        assert view.followup.status == "pending" and view.followup.key.endswith(":followup:2")
        await inbox.wait_for(lambda m: "ben@example.com" in m["X-Envelope-To"])

        await replays_and_is_kept(client, await handle.fetch_history(), "lead_sla_breach_reassign_v3.json")


# A touch logged in time is tested on the dev server (tests/test_integration.py): the time-skipping
# test server hangs on workflow updates (temporalio/sdk-dotnet#72, temporalio/features#551).


async def test_new_leads_reuse_the_process_wide_type_adapters(
    env: WorkflowEnvironment, settings: Settings, sessions: async_sessionmaker[AsyncSession]
) -> None:
    """Every workflow instance gets its own payload converter; the adapters behind it are built once per process."""
    task_queue = f"tq-{uuid.uuid4().hex[:8]}"
    settings = settings.model_copy(update={"task_queue": task_queue})
    client = with_lead_codec(env.client, settings, sessions)
    async with build_worker(client, settings, sessions):
        first = await start_sql_lead(client, settings, "first-adapter@example.com")
        await wait_view(first, lambda v: v.owner is not None)
        before = shared_type_adapter.cache_info()
        others = [await start_sql_lead(client, settings, f"adapter-{n}@example.com") for n in range(3)]
        for handle in others:
            await wait_view(handle, lambda v: v.owner is not None)
        after = shared_type_adapter.cache_info()
    # Three more leads decoded their start input, signals and activity results through the shared cache...
    assert after.hits - before.hits >= 3 * 3
    # ...without building a single new adapter.
    assert after.misses == before.misses


async def test_the_rep_is_notified_in_the_workflow_task_that_assigned_them(
    env: WorkflowEnvironment, settings: Settings, sessions: async_sessionmaker[AsyncSession], smtp: tuple[Inbox, int]
) -> None:
    """The assignment runs as a local activity: the rep's email is scheduled in the workflow task that
    decided the assignment, not one server round trip (an activity task and a new workflow task) later."""
    inbox, _ = smtp
    settings = settings.model_copy(update={"task_queue": f"tq-{uuid.uuid4().hex[:8]}"})
    client = with_lead_codec(env.client, settings, sessions)
    async with build_worker(client, settings, sessions):
        handle = await start_sql_lead(client, settings, "lea@example.com")
        view = await wait_view(handle, lambda v: v.owner is not None)
        await inbox.wait_for(lambda m: m["X-Leadflow-Kind"] == "rep_new_lead")
        history = await handle.fetch_history()
    scheduled = {
        e.activity_task_scheduled_event_attributes.activity_type.name: e.activity_task_scheduled_event_attributes
        for e in history.events
        if e.HasField("activity_task_scheduled_event_attributes")
    }
    markers = [
        e.marker_recorded_event_attributes
        for e in history.events
        if e.HasField("marker_recorded_event_attributes")
        and e.marker_recorded_event_attributes.marker_name == "core_local_activity"
    ]
    assert "assign_rep" not in scheduled and len(markers) == 1
    notify = [
        e.activity_task_scheduled_event_attributes
        for e in history.events
        if e.HasField("activity_task_scheduled_event_attributes")
        and e.activity_task_scheduled_event_attributes.activity_type.name == "send_email"
    ][-1]
    assert notify.workflow_task_completed_event_id == markers[0].workflow_task_completed_event_id
    assert view.owner.rep.id.startswith("rep-")
    await replays_and_is_kept(client, history, "lead_assign_local_activity_v3.json")


async def test_a_new_lead_records_one_patch_marker(
    env: WorkflowEnvironment, settings: Settings, sessions: async_sessionmaker[AsyncSession], smtp: tuple[Inbox, int]
) -> None:
    """Each patch a workflow consults records a marker and an upsert of TemporalChangeVersion (a visibility
    write on the server): a new lead, created and assigned, records one for all of today's shape, not five."""
    inbox, _ = smtp
    settings = settings.model_copy(update={"task_queue": f"tq-{uuid.uuid4().hex[:8]}"})
    client = with_lead_codec(env.client, settings, sessions)
    async with build_worker(client, settings, sessions):
        handle = await start_sql_lead(client, settings, "nora@example.com")
        await wait_view(handle, lambda v: v.owner is not None)
        await inbox.wait_for(lambda m: m["X-Leadflow-Kind"] == "rep_new_lead")
        history = await handle.fetch_history()
    patches = [
        e.marker_recorded_event_attributes
        for e in history.events
        if e.HasField("marker_recorded_event_attributes")
        and e.marker_recorded_event_attributes.marker_name == "core_patch"
    ]
    version_upserts = [
        e
        for e in history.events
        if e.HasField("upsert_workflow_search_attributes_event_attributes")
        and "TemporalChangeVersion"
        in e.upsert_workflow_search_attributes_event_attributes.search_attributes.indexed_fields
    ]
    assert len(patches) == 1 and len(version_upserts) == 1
    await replays_and_is_kept(client, history, "lead_one_patch_v4.json")


async def test_a_lead_started_in_todays_shape_records_no_patch_marker(
    env: WorkflowEnvironment, settings: Settings, sessions: async_sessionmaker[AsyncSession], smtp: tuple[Inbox, int]
) -> None:
    """The API starts a lead with today's shape in its input (LeadStart.new): the run consults no patch, so it
    records no marker and no TemporalChangeVersion upsert (each a history event, the upsert a visibility write
    on the server) and takes today's behaviour all the same (the assignment as a local activity)."""
    inbox, _ = smtp
    settings = settings.model_copy(update={"task_queue": f"tq-{uuid.uuid4().hex[:8]}"})
    client = with_lead_codec(env.client, settings, sessions)
    async with build_worker(client, settings, sessions):
        handle = await start_sql_lead(client, settings, "nils@example.com", shape=CURRENT_SHAPE)
        view = await wait_view(handle, lambda v: v.owner is not None)
        await inbox.wait_for(lambda m: m["X-Leadflow-Kind"] == "rep_new_lead")
        history = await handle.fetch_history()
    markers = [
        e.marker_recorded_event_attributes.marker_name
        for e in history.events
        if e.HasField("marker_recorded_event_attributes")
    ]
    upserts = [
        set(e.upsert_workflow_search_attributes_event_attributes.search_attributes.indexed_fields)
        for e in history.events
        if e.HasField("upsert_workflow_search_attributes_event_attributes")
    ]
    assert "core_patch" not in markers and "core_local_activity" in markers, markers
    assert not any("TemporalChangeVersion" in keys for keys in upserts)
    assert view.stage == "sql" and view.owner is not None
    await replays_and_is_kept(client, history, "lead_shape_in_start_v5.json")
