"""A rule that raises at run time is recorded on its lead and skipped: the worker keeps serving every lead
(time-skipping server, real SMTP, real store)."""

from __future__ import annotations

import asyncio
import copy
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client, WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from api.lead_ids import lead_id_for
from payload_converter import data_converter
from rules.model import EventsReceived, LeadUpserted, TrackedEvent
from rules.playbook import document_hash
from runtime import build_worker, load_active_playbook, with_lead_codec
from settings import Settings
from tests.conftest import Inbox, venv_binary
from workflows.lead import LeadWorkflow
from workflows.payloads import LeadOptions, LeadStart, LeadView, PlaybookBundle

# Grade B and SQL after the seed's three events on the default playbook.
LEAD = {"first_name": "Ken", "last_name": "Mori", "company": "Mori Works", "title": "Marketing Manager",
        "company_size": 50, "country": "US"}  # fmt: skip
WINDOW_RULE = {"id": "webinar_window", "points": 5, "when": 'count("webinar_attended", days=lead.window) >= 1'}


@pytest.fixture(scope="module")
async def env() -> AsyncIterator[WorkflowEnvironment]:
    environment = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=venv_binary("temporal-test-server"), data_converter=data_converter
    )
    yield environment
    await environment.shutdown()


def window_bundle(settings: Settings) -> PlaybookBundle:
    """The default playbook plus a rule whose window comes from a lead field (fine at validation)."""
    document = copy.deepcopy(load_active_playbook(settings).bundle.document)
    document["fields"] = [*document.get("fields", []), "window"]
    document["scoring"]["rules"].append(WINDOW_RULE)
    return PlaybookBundle(version=f"window-{document_hash(document)[:8]}", document=document)


async def start_lead(
    client: Client, settings: Settings, bundle: PlaybookBundle, email: str, window: int
) -> WorkflowHandle:
    lead_id = lead_id_for(email, settings.secret("id_key"))
    start = LeadStart(lead_id, bundle, LeadOptions(projection_delay_seconds=1, search_attributes=False))
    handle = await client.start_workflow(
        LeadWorkflow.run,
        start,
        id=lead_id,
        task_queue=settings.task_queue,
        start_signal="upsert",
        start_signal_args=[LeadUpserted({"email": email, "window": window, **LEAD})],
    )
    now = datetime.now(UTC)
    events = [
        TrackedEvent("w1", "webinar_attended", now),
        TrackedEvent("e1", "download", now, name="whitepaper"),
        TrackedEvent("e2", "email_click", now),
        TrackedEvent("e3", "page_view", now, url="https://example.com/pricing"),
    ]
    await handle.signal(LeadWorkflow.events, EventsReceived(events))
    return handle


async def owned_view(handle: WorkflowHandle) -> LeadView:
    for _ in range(300):
        view: LeadView = await handle.query(LeadWorkflow.view)
        if view.owner is not None:
            return view
        await asyncio.sleep(0.05)
    raise AssertionError(f"lead {handle.id} never got an owner")


async def test_a_raising_rule_is_recorded_and_the_worker_serves_every_lead(
    env: WorkflowEnvironment, settings: Settings, sessions: async_sessionmaker[AsyncSession], smtp: tuple[Inbox, int]
) -> None:
    inbox, _ = smtp
    settings = settings.model_copy(update={"task_queue": f"tq-{uuid.uuid4().hex[:8]}"})
    bundle = window_bundle(settings)
    client = with_lead_codec(env.client, settings, sessions)  # lead payloads are sealed per lead
    async with build_worker(client, settings, sessions):
        # A window of a million days overflowed the date arithmetic: that lead's workflow task failed for ever.
        bad = await start_lead(client, settings, bundle, "bad-window@example.com", 1_000_000)
        good = await start_lead(client, settings, bundle, "good-window@example.com", 30)
        bad_view, good_view = await asyncio.wait_for(asyncio.gather(owned_view(bad), owned_view(good)), timeout=60)

        # The rule runs (and raises) for each of the four events; each time it is recorded and skipped.
        assert [(e.rule_id, e.event_id) for e in bad_view.rule_errors] == [
            ("webinar_window", event_id) for event_id in ("w1", "e1", "e2", "e3")
        ]
        assert "days" in bad_view.rule_errors[0].message
        # Every other rule scored; only the raising one was skipped (for the good lead it adds 5 per event).
        assert bad_view.stage == good_view.stage == "sql" and good_view.score == bad_view.score + 5 * 4
        assert good_view.rule_errors == []
        # The worker kept sending both leads' emails.
        for email in ("bad-window@example.com", "good-window@example.com"):
            await inbox.wait_for(lambda m, email=email: email in m["X-Envelope-To"])
