"""Metrics and logs of a real stack: dev server + worker + API (uvicorn) + SMTP + SQLite.

One lead with a known name and address goes through the API and the worker; the relay refuses its
address (so the SDK logs the failed send with the address in the error). The JSON logs of both sides
must carry the request, lead and workflow ids and neither the address nor the name; /metrics must show
what happened, by route template and never by lead id.
"""

from __future__ import annotations

import asyncio
import io
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from aiosmtpd.controller import Controller
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.testing import WorkflowEnvironment

from api.main import create_app
from runtime import build_worker
from settings import Settings
from tests.conftest import TEST_API_KEY, Inbox, free_port
from tests.test_integration import SEED_EVENTS, dev_server, eventually, fast_sla_playbook
from tests.test_observability_logging import json_logs, lines

pytestmark = pytest.mark.integration
AUTH = {"X-API-Key": TEST_API_KEY}
__all__ = ["dev_server", "json_logs"]  # fixtures, imported to be shared

PERSON = {"email": "zelda.quux@example.net", "first_name": "Zelda", "last_name": "Quux", "phone": "+44 20 7946 0958"}


class RefusingInbox(Inbox):
    """A relay that refuses one mailbox for good (550) and accepts the rest."""

    refused = PERSON["email"]

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # type: ignore[no-untyped-def]
        if address.lower() == self.refused:
            return "550 5.1.1 mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"


@pytest.fixture
def relay() -> Iterator[tuple[RefusingInbox, int]]:
    inbox, port = RefusingInbox(), free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    yield inbox, port
    controller.stop()


@pytest.fixture
async def observed_stack(
    dev_server: WorkflowEnvironment,
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    relay: tuple[RefusingInbox, int],
    json_logs: io.StringIO,
    tmp_path: Path,
) -> AsyncIterator[httpx.AsyncClient]:
    settings = settings.model_copy(
        update={
            "temporal_address": dev_server.client.service_client.config.target_host,
            "task_queue": f"tq-{uuid.uuid4().hex[:8]}",
            "playbook_path": fast_sla_playbook(tmp_path / "playbook.yaml"),
            "smtp_port": relay[1],
        }
    )
    port = free_port()
    config = uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_config=None)
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve())
    async with build_worker(dev_server.client, settings, sessions):
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=20) as http:
            for _ in range(200):
                if server.started:
                    break
                await asyncio.sleep(0.05)
            yield http
        server.should_exit = True
        await serving


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_logs_carry_ids_and_no_personal_data_metrics_count_by_template(
    observed_stack: httpx.AsyncClient, relay: tuple[RefusingInbox, int], json_logs: io.StringIO
) -> None:
    http, (inbox, _) = observed_stack, relay
    route = "/v1/leads/{lead_id}/events"
    before = {
        "accepted": sample("leadflow_events_accepted_total", route=route),
        "duplicate": sample("leadflow_events_duplicate_total", route=route),
        "rejected": sample("leadflow_events_rejected_total", route=route, status="422"),
        "created": sample("leadflow_leads_created_total"),
        "to_sql": sample("leadflow_stage_changes_total", from_stage="new", to_stage="sql"),
        "refused": sample("leadflow_emails_total", kind="nurture", outcome="failed"),
        "notified": sample("leadflow_emails_total", kind="rep_new_lead", outcome="sent"),
        "failures": sample("leadflow_activity_failures_total", activity_type="send_email", error_type="SmtpRejected"),
        "breached": sample("leadflow_sla_total", outcome="breached"),
        "escalated": sample("leadflow_sla_total", outcome="escalated"),
    }

    lead = {**PERSON, "company": "Acme", "title": "VP Marketing", "company_size": 500, "country": "us"}
    created = await http.post("/v1/leads", json=lead, headers={**AUTH, "X-Request-ID": "req-obs-create"})
    assert created.status_code == 202 and created.headers["x-request-id"] == "req-obs-create"
    lead_id = created.json()["lead_id"]
    posted = await http.post(f"/v1/leads/{lead_id}/events", json=SEED_EVENTS, headers=AUTH)
    assert posted.json()["accepted"] == 3
    assert (await http.post(f"/v1/leads/{lead_id}/events", json=SEED_EVENTS, headers=AUTH)).json()["duplicates"] == 3
    bad = await http.post(f"/v1/leads/{lead_id}/events", json={"events": [{"type": ""}]}, headers=AUTH)
    assert bad.status_code == 422
    await inbox.wait_for(lambda m: m["X-Leadflow-Kind"] == "rep_new_lead")
    # Nobody calls: the 3 s SLA is breached and escalated to the manager.
    await inbox.wait_for(lambda m: m["X-Leadflow-Kind"] == "sla_escalation", seconds=30)
    await eventually(http, "/v1/followups?status=overdue", lambda b: any(f["lead_id"] == lead_id for f in b["items"]))
    assert not inbox.to(PERSON["email"])  # the relay refused the nurture email for good

    exposed = (await http.get("/metrics")).text  # no API key: scraped on an internal network
    families = {f.name: f for f in text_string_to_metric_families(exposed)}
    routes = {s.labels.get("route") for s in families["leadflow_http_request_duration_seconds"].samples}
    assert {"/v1/leads", route, "/v1/followups"} <= routes
    assert lead_id not in exposed and "leadflow_temporal_calls_in_flight" in families
    assert sample("leadflow_events_accepted_total", route=route) - before["accepted"] == 3
    assert sample("leadflow_events_duplicate_total", route=route) - before["duplicate"] == 3
    assert sample("leadflow_events_rejected_total", route=route, status="422") - before["rejected"] == 1
    assert sample("leadflow_leads_created_total") - before["created"] == 1
    assert sample("leadflow_stage_changes_total", from_stage="new", to_stage="sql") - before["to_sql"] == 1
    assert sample("leadflow_emails_total", kind="nurture", outcome="failed") - before["refused"] == 1
    assert sample("leadflow_emails_total", kind="rep_new_lead", outcome="sent") - before["notified"] == 1
    assert sample("leadflow_activity_failures_total", activity_type="send_email", error_type="SmtpRejected") - before[
        "failures"] == 1  # fmt: skip
    for _ in range(100):  # the projection of the breach follows the escalation email
        if sample("leadflow_sla_total", outcome="breached") > before["breached"]:
            break
        await asyncio.sleep(0.1)
    assert sample("leadflow_sla_total", outcome="breached") - before["breached"] == 1
    assert sample("leadflow_sla_total", outcome="escalated") - before["escalated"] == 1

    text = json_logs.getvalue()
    logged = lines(json_logs)
    assert "zelda" not in text.lower() and "quux" not in text.lower() and "7946" not in text
    assert any(r.get("request_id") == "req-obs-create" and r["logger"] == "leadflow.access" for r in logged)
    access = [r for r in logged if r["logger"] == "leadflow.access" and r.get("lead_id") == lead_id]
    assert access and all(r["route"] == route and lead_id not in r["message"] for r in access)
    # The SDK's report of the refused send, from the worker, with the lead's ids and the address masked.
    refused = [r for r in logged if r.get("workflow_id") == lead_id and "SmtpRejected" in r.get("exception", "")]
    assert refused and refused[0]["lead_id"] == lead_id and "[redacted]" in refused[0]["exception"]
