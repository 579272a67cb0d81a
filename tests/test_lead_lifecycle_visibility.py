"""Temporal's own visibility follows a cancelled follow-up (issue 9 item 3): on the dev server (the
time-skipping server has no visibility store), a lead disqualified while its follow-up is pending leaves
``LeadSlaStatus = 'pending'`` for ``'cancelled'`` and has no ``LeadSlaDueAt`` any more."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from api.lead_ids import lead_id_for
from payload_converter import data_converter
from rules.model import LeadUpserted
from runtime import build_worker, load_active_playbook, with_lead_codec
from settings import Settings
from tests.conftest import venv_binary
from tests.lifecycle_fixtures import lifecycle_playbook
from tests.test_lead_lifecycle import pricing_page
from tests.test_lead_workflow import wait_view
from workflows import search_attributes
from workflows.lead import LeadWorkflow
from workflows.payloads import LeadOptions, LeadStart

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
async def dev_server() -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=venv_binary("temporal"),
        search_attributes=search_attributes.ALL,
        data_converter=data_converter,
    )
    yield env
    await env.shutdown()


async def listed(client: Client, query: str, lead_id: str, present: bool) -> bool:
    for _ in range(100):
        ids = [w.id async for w in client.list_workflows(f"WorkflowId = '{lead_id}' AND {query}")]
        if (lead_id in ids) == present:
            return True
        await asyncio.sleep(0.1)
    return False


async def test_a_disqualified_leads_follow_up_shows_cancelled_in_visibility(
    dev_server: WorkflowEnvironment, settings: Settings, sessions: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    playbook = tmp_path / "lifecycle.yaml"
    playbook.write_text(lifecycle_playbook("every_time"), encoding="utf-8")
    settings = settings.model_copy(update={"task_queue": f"tq-{uuid.uuid4().hex[:8]}", "playbook_path": playbook})
    client = with_lead_codec(dev_server.client, settings, sessions)
    lead_id = lead_id_for("vis@example.com", settings.secret("id_key"))
    async with build_worker(client, settings, sessions):
        handle = await client.start_workflow(
            LeadWorkflow.run,
            LeadStart(lead_id, load_active_playbook(settings).bundle, LeadOptions(projection_delay_seconds=1)),
            id=lead_id,
            task_queue=settings.task_queue,
            start_signal="upsert",
            start_signal_args=[LeadUpserted({"email": "vis@example.com", "company": "Vis"})],
        )
        await pricing_page(handle, "vis-pricing")
        await wait_view(handle, lambda v: v.followup is not None)
        assert await listed(client, "LeadSlaStatus = 'pending' AND LeadSlaDueAt IS NOT NULL", lead_id, True)

        await handle.signal(LeadWorkflow.upsert, LeadUpserted({"company": "Rival Inc"}))
        view = await wait_view(handle, lambda v: v.stage == "disqualified")
        assert view.followup.status == "cancelled"
        assert await listed(client, "LeadSlaStatus = 'cancelled'", lead_id, True)
        assert await listed(client, "LeadSlaStatus IN ('pending', 'overdue')", lead_id, False)
        assert await listed(client, "LeadSlaDueAt IS NOT NULL", lead_id, False)
