"""Right to erasure end to end: dev server + worker + API + real SMTP + the store (SQLite and PostgreSQL).

Erasing a lead must leave its email, name and company nowhere: not in any table of the store, not in
the email ledger, not in the raw bytes of Temporal's history (fetched by a client without the codec);
while before the erasure the same history, decoded by the codec, holds them.
"""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import WorkflowExecutionStatus, WorkflowHistory
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment

from activities.email import Mailer
from activities.rendering import EmailRenderer
from privacy.codec import ENCODING
from privacy.history import decoded_history
from privacy.keys import LeadErased
from rules.model import SendEmail
from runtime import with_lead_codec
from settings import Settings
from store import repo
from store.models import Base
from tests.conftest import Inbox, venv_binary
from tests.test_integration import AUTH, SEED_EVENTS, dev_server, eventually, stack
from workflows import search_attributes as sa

pytestmark = pytest.mark.integration
__all__ = ["dev_server", "stack"]  # fixtures shared with tests/test_integration.py

EMAIL, FIRST, LAST, COMPANY, PHONE = "annabelle.quist@example.com", "Annabelle", "Quist", "Zephyrcorp", "+1 555 0199"
PERSONAL = (EMAIL, FIRST, LAST, COMPANY, PHONE)


async def store_text(sessions: async_sessionmaker[AsyncSession]) -> str:
    """Every value in every table of the store, as text."""
    found: list[str] = []
    async with sessions() as session:
        for table in Base.metadata.sorted_tables:
            for row in (await session.execute(select(table))).all():
                found.extend(str(value) for value in row if value is not None)
    return "\n".join(found)


async def temporal_cli_show(dev_server: WorkflowEnvironment, workflow_id: str) -> dict[str, Any]:
    address = dev_server.client.service_client.config.target_host
    process = await asyncio.create_subprocess_exec(
        venv_binary("temporal"), "workflow", "show", "--workflow-id", workflow_id, "--address", address,
        "--output", "json", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    return json.loads(out)


def history_bytes(history: WorkflowHistory) -> bytes:
    return b"".join(event.SerializeToString() for event in history.events)


@pytest.mark.parametrize("database_url", ["sqlite", "postgres"], indirect=True)
async def test_erasure_leaves_nothing_readable(
    settings: Settings,
    stack: httpx.AsyncClient,
    smtp: tuple[Inbox, int],
    sessions: async_sessionmaker[AsyncSession],
    dev_server: WorkflowEnvironment,
) -> None:
    http, (inbox, _) = stack, smtp
    lead = {"email": EMAIL, "first_name": FIRST, "last_name": LAST, "company": COMPANY, "phone": PHONE,
            "title": "VP Marketing", "company_size": 500, "country": "us", "source": "whitepaper"}  # fmt: skip
    lead_id = (await http.post("/v1/leads", json=lead, headers=AUTH)).json()["lead_id"]
    events = {"events": [{**e, "name": f"{FIRST}'s visit"} for e in SEED_EVENTS["events"]]}
    assert (await http.post(f"/v1/leads/{lead_id}/events", json=events, headers=AUTH)).status_code == 202
    await eventually(http, f"/v1/leads/{lead_id}", lambda v: v["owner"] is not None)
    await inbox.wait_for(lambda m: m["X-Leadflow-Kind"] == "rep_new_lead")
    assert [m["X-Leadflow-Kind"] for m in inbox.to(EMAIL)] == ["nurture"]
    for _ in range(100):  # the projection lands shortly after the workflow decided
        async with sessions() as session:
            row = await repo.get_lead(session, lead_id)
        if row is not None and row["owner_rep_id"]:
            break
        await asyncio.sleep(0.05)
    before = await store_text(sessions)
    assert all(value in before for value in PERSONAL)

    # Temporal holds the lead sealed: a client without the codec reads none of it...
    plain_client = dev_server.client
    handle = plain_client.get_workflow_handle(lead_id)
    sealed = await handle.fetch_history()
    assert not [value for value in PERSONAL if value.encode() in history_bytes(sealed)]
    # ...while ids and search attributes stay readable for the UI and the CLI...
    described = await handle.describe()
    assert described.id == lead_id and described.workflow_type == "LeadWorkflow"
    assert described.typed_search_attributes.get(sa.LEAD_STAGE) == "sql"
    assert described.typed_search_attributes.get(sa.LEAD_OWNER) == "rep-aiko"
    # The CLI too: `temporal workflow show` lists the events with their ids and search attributes.
    shown = await temporal_cli_show(dev_server, lead_id)
    assert shown["events"][0]["workflowExecutionStartedEventAttributes"]["workflowType"]["name"] == "LeadWorkflow"
    upserts = [e["upsertWorkflowSearchAttributesEventAttributes"]["searchAttributes"]["indexedFields"]
               for e in shown["events"] if "upsertWorkflowSearchAttributesEventAttributes" in e]  # fmt: skip
    stages = [base64.b64decode(fields["LeadStage"]["data"]) for fields in upserts if "LeadStage" in fields]
    assert b'"sql"' in stages, stages
    started = shown["events"][0]["workflowExecutionStartedEventAttributes"]["input"]["payloads"][0]
    assert base64.b64decode(started["metadata"]["encoding"]) == ENCODING
    # ...and the codec opens it all.
    codec = with_lead_codec(plain_client, settings, sessions).data_converter.payload_codec
    assert codec is not None
    opened = history_bytes(await decoded_history(sealed, codec))
    assert all(value.encode() in opened for value in (EMAIL, FIRST, LAST, COMPANY, PHONE))

    erased = await http.delete(f"/v1/leads/{lead_id}", headers=AUTH)
    assert erased.status_code == 200, erased.text
    assert erased.json()["key_destroyed"] and erased.json()["suppressed"]
    assert (await handle.describe()).status == WorkflowExecutionStatus.COMPLETED

    # Nothing readable is left: the store (every table, the ledger included) and the raw history.
    after = await store_text(sessions)
    assert not [value for value in PERSONAL if value in after]
    final = await handle.fetch_history()
    assert len(final.events) > len(sealed.events)
    assert not [value for value in PERSONAL if value.encode() in history_bytes(final)]
    # The key is gone: no codec anywhere can open the history any more.
    with pytest.raises(LeadErased):
        await decoded_history(final, with_lead_codec(plain_client, settings, sessions).data_converter.payload_codec)  # type: ignore[arg-type]
    # Counts for reports survive.
    async with sessions() as session:
        row = await repo.get_lead(session, lead_id)
        ledger = await repo.list_emails(session, lead_id=lead_id)
    assert row is not None and (row["stage"], row["score"], row["source"], row["email"]) == (
        "sql",
        60,
        "whitepaper",
        None,
    )
    assert [e["template"] for e in ledger] and all(e["to_addr"] == "(erased)" for e in ledger)

    # The person cannot be brought back by a new post or by tracking: a clear 410, no workflow, no mail.
    again = await http.post("/v1/leads", json={"email": EMAIL.upper()}, headers=AUTH)
    assert again.status_code == 410 and "erased" in again.json()["detail"]
    tracked = await http.post("/v1/events", json={"events": [{"email": EMAIL, "type": "page_view"}]}, headers=AUTH)
    assert tracked.status_code == 410
    assert (await handle.describe()).status == WorkflowExecutionStatus.COMPLETED
    # Its live state is gone for good; what the store kept is still there, anonymous.
    assert (await http.get(f"/v1/leads/{lead_id}", headers=AUTH)).status_code == 410
    timeline = await http.get(f"/v1/leads/{lead_id}/timeline", headers=AUTH)
    assert timeline.status_code == 200 and not [value for value in PERSONAL if value in timeline.text]
    # Asking again is safe; an unknown lead is a 404.
    assert (await http.delete(f"/v1/leads/{lead_id}", headers=AUTH)).status_code == 200
    assert (await http.delete(f"/v1/leads/lead-{'0' * 32}", headers=AUTH)).status_code == 404
    assert (await http.delete(f"/v1/leads/{lead_id}")).status_code == 401
    assert [m["X-Leadflow-Kind"] for m in inbox.to(EMAIL)] == ["nurture"]


async def test_send_refuses_a_suppressed_address_even_for_a_journey_already_waiting(
    settings: Settings, sessions: async_sessionmaker[AsyncSession], smtp: tuple[Inbox, int]
) -> None:
    from activities.erasure import erase_person

    inbox, _ = smtp
    mailer = Mailer(settings, sessions, EmailRenderer(settings.templates_dir))
    lead_id = "lead-" + "c" * 32
    context = {"lead": {"first_name": FIRST, "company": COMPANY}}
    assert await mailer.send(SendEmail("k-1", "nurture", "welcome", EMAIL, context), lead_id) == "sent"
    await erase_person(sessions, None, lead_id, EMAIL, settings.secret("id_key"))
    # The next step of the journey was decided before the erasure; the send activity still refuses it.
    with pytest.raises(ApplicationError) as refused:
        await mailer.send(SendEmail("k-2", "nurture", "case_study", EMAIL.upper(), context), lead_id)
    assert refused.value.type == "Suppressed" and refused.value.non_retryable
    assert len(inbox.to(EMAIL)) == 1
    async with sessions() as session:
        [refused_row] = [e for e in await repo.list_emails(session, lead_id=lead_id) if e["key"] == "k-2"]
    assert refused_row["status"] == "suppressed" and EMAIL not in str(refused_row)
