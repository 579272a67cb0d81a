"""End to end over HTTP: Temporal dev server + worker + API (uvicorn) + real SMTP server + SQLite store.

A copy of the default playbook with a 3-second first-touch SLA lets a real clock show both outcomes:
a touch in time (met) and no touch (overdue, manager escalated).
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
import yaml
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer

from api.lead_ids import lead_id_for
from api.main import create_app
from payload_converter import data_converter
from privacy.history import decoded_history
from runtime import build_worker, with_lead_codec, workflow_runner
from settings import ROOT, Settings
from store import repo
from tests.conftest import TEST_API_KEY, Inbox, free_port, venv_binary
from workflows import search_attributes
from workflows.lead import LeadWorkflow

pytestmark = pytest.mark.integration
AUTH = {"X-API-Key": TEST_API_KEY}


@pytest.fixture(scope="session")
async def dev_server() -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=venv_binary("temporal"),
        search_attributes=search_attributes.ALL,
        data_converter=data_converter,
        dev_server_extra_args=["--dynamic-config-value", "limit.historyCount.suggestContinueAsNew=60"],
    )
    yield env
    await env.shutdown()


def fast_sla_playbook(path: Path) -> Path:
    doc = yaml.safe_load((ROOT / "playbooks" / "default.yaml").read_text())
    doc["sla"] = {"policies": [{"id": "fast", "first_touch": "3s"}]}
    path.write_text(yaml.safe_dump(doc))
    return path


@pytest.fixture
async def stack(
    dev_server: WorkflowEnvironment, settings: Settings, sessions: async_sessionmaker[AsyncSession], tmp_path: Path
) -> AsyncIterator[httpx.AsyncClient]:
    settings = settings.model_copy(
        update={
            "temporal_address": dev_server.client.service_client.config.target_host,
            "task_queue": f"tq-{uuid.uuid4().hex[:8]}",
            "playbook_path": fast_sla_playbook(tmp_path / "playbook.yaml"),
        }
    )
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning"))
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


async def eventually(http: httpx.AsyncClient, url: str, predicate, tries: int = 200) -> Any:  # type: ignore[no-untyped-def]
    body: Any = None
    deadline = asyncio.get_running_loop().time() + 30
    for _ in range(tries):
        if asyncio.get_running_loop().time() > deadline:
            break
        response = await http.get(url, headers=AUTH)
        body = response.json()
        if response.status_code == 200 and predicate(body):
            return body
        await asyncio.sleep(0.05)
    raise AssertionError(f"{url} never matched; last answer: {body}")


SEED_EVENTS = {
    "events": [
        {"id": "ev-1", "type": "download", "name": "whitepaper"},
        {"id": "ev-2", "type": "email_click"},
        {"id": "ev-3", "type": "page_view", "url": "https://example.com/pricing"},
    ]
}


@pytest.mark.parametrize("database_url", ["sqlite", "postgres"], indirect=True)
async def test_lead_journey_over_http(
    monkeypatch: pytest.MonkeyPatch,
    settings: Settings,
    stack: httpx.AsyncClient,
    smtp: tuple[Inbox, int],
    sessions: async_sessionmaker[AsyncSession],
    dev_server: WorkflowEnvironment,
) -> None:
    http, (inbox, _) = stack, smtp
    monkeypatch.setattr("api.deps.PLAYBOOK_CHECK_SECONDS", 0.0)  # see a publication at once
    lead = {"email": "Ann.Lee@Example.com", "first_name": "Ann", "company": "Acme", "title": "VP Marketing",
            "company_size": 500, "country": "us", "source": "whitepaper",
            "utm": {"source": "google", "medium": "cpc", "campaign": "q4-whitepaper"}}  # fmt: skip

    # No key, bad key, bad input: clear 4xx answers.
    assert (await http.post("/v1/leads", json=lead)).status_code == 401
    assert (await http.post("/v1/leads", json=lead, headers={"X-API-Key": "wrong"})).status_code == 401
    bad = await http.post("/v1/leads", json={"email": "not-an-email", "company_size": "many"}, headers=AUTH)
    assert bad.status_code == 422
    assert {e["field"] for e in bad.json()["errors"]} == {"email", "company_size"}

    created = await http.post("/v1/leads", json=lead, headers=AUTH)
    assert created.status_code == 202
    lead_id = created.json()["lead_id"]
    assert lead_id == lead_id_for("ann.lee@example.com", settings.secret("id_key")) and "ann" not in lead_id
    # Posting the same person again merges into the same lead.
    again = await http.post("/v1/leads", json={"email": " ann.lee@example.COM ", "phone": "+1 555 0100"}, headers=AUTH)
    assert again.json()["lead_id"] == lead_id
    view = await eventually(http, f"/v1/leads/{lead_id}", lambda v: v["attributes"].get("phone"))
    assert view["attributes"]["company"] == "Acme" and view["attributes"]["country"] == "US"
    assert view["attributes"]["utm_campaign"] == "q4-whitepaper"
    assert (view["stage"], view["grade"]) == ("new", "A")

    # Behaviour: whitepaper, click, pricing page -> score 60 -> SQL -> routed round-robin.
    posted = await http.post(f"/v1/leads/{lead_id}/events", json=SEED_EVENTS, headers=AUTH)
    assert posted.status_code == 202 and posted.json()["accepted"] == 3
    retry = await http.post(f"/v1/leads/{lead_id}/events", json=SEED_EVENTS, headers=AUTH)
    assert (retry.json()["accepted"], retry.json()["duplicates"], retry.json()["leads"]) == (0, 3, [lead_id])
    assert [(r["index"], r["id"], r["status"]) for r in retry.json()["results"]] == [
        (0, "ev-1", "duplicate"),
        (1, "ev-2", "duplicate"),
        (2, "ev-3", "duplicate"),
    ]
    view = await eventually(http, f"/v1/leads/{lead_id}", lambda v: v["owner"] is not None)
    assert (view["stage"], view["score"]) == ("sql", 60)
    assert view["owner"]["rep"]["id"] == "rep-aiko" and view["followup"]["status"] == "pending"
    assert [c["rule_id"] for c in view["recent_score_changes"]] == [
        "whitepaper_download",
        "email_click",
        "pricing_page",
    ]

    await inbox.wait_for(lambda m: m["X-Leadflow-Kind"] == "rep_new_lead")
    assert [m["X-Leadflow-Kind"] for m in inbox.to("ann.lee@example.com")] == ["nurture"]

    # The rep calls in time: SLA met.
    touched = await http.post(f"/v1/leads/{lead_id}/touches", json={"kind": "call", "rep_id": "rep-aiko"}, headers=AUTH)
    assert touched.status_code == 200, touched.text
    assert touched.json()["followup"]["status"] == "met"
    bad_touch = await http.post(f"/v1/leads/{lead_id}/touches", json={"kind": "telepathy"}, headers=AUTH)
    assert bad_touch.status_code == 422 and "kind" in bad_touch.text

    # A second lead arrives through tracking only (create-on-first-event) and nobody calls: overdue in 3 s.
    tracked = await http.post("/v1/events", headers=AUTH, json={"events": [
        {"email": "bo@example.org", **e} for e in SEED_EVENTS["events"]]})  # fmt: skip
    assert tracked.status_code == 202
    bo_id = tracked.json()["leads"][0]
    await http.post("/v1/leads", headers=AUTH, json={"email": "bo@example.org", "title": "Director of IT",
                                                      "company": "Bo Corp", "company_size": 300})  # fmt: skip
    overdue = await eventually(http, "/v1/followups?status=overdue", lambda b: b["items"], tries=400)
    assert [(f["lead_id"], f["status"]) for f in overdue["items"]] == [(bo_id, "overdue")]
    escalation = await inbox.wait_for(lambda m: m["X-Leadflow-Kind"] == "sla_escalation")
    assert "mina.manager@example.com" in escalation[0]["X-Envelope-To"] and "Bo Corp" in escalation[0]["Subject"]
    met = await eventually(http, "/v1/followups?status=met", lambda b: b["items"])
    assert [f["lead_id"] for f in met["items"]] == [lead_id]

    # Events for a lead that does not exist: 404 with a way forward.
    unknown = await http.post(f"/v1/leads/lead-{'0' * 32}/events", json=SEED_EVENTS, headers=AUTH)
    assert unknown.status_code == 404 and "/v1/events" in unknown.json()["detail"]
    assert (await http.get("/v1/leads/not-a-lead-id", headers=AUTH)).status_code == 422

    # The store holds the touchpoints as accepted and the projected state.
    async with sessions() as session:
        touchpoints = await repo.list_touchpoints(session, lead_id)
        row = await repo.get_lead(session, lead_id)
    assert sorted(t["event_id"] for t in touchpoints if not t["type"].startswith("touch")) == ["ev-1", "ev-2", "ev-3"]
    assert any(t["type"] == "touch.call" for t in touchpoints)
    assert row is not None and (row["stage"], row["owner_rep_id"], row["email"]) == (
        "sql",
        "rep-aiko",
        "ann.lee@example.com",
    )

    # Temporal's own visibility lists leads by the custom search attributes.
    for _ in range(100):
        ids = [w.id async for w in dev_server.client.list_workflows("LeadSlaStatus = 'overdue'")]
        if bo_id in ids:
            break
        await asyncio.sleep(0.1)
    assert bo_id in ids and lead_id not in ids

    # A published playbook version is pinned by leads created after it; older leads keep theirs.
    draft = (ROOT / "playbooks" / "default.yaml").read_text()
    published = await http.post("/v1/playbooks", json={"playbook": draft, "author": "test"}, headers=AUTH)
    assert published.status_code == 201
    newer = (await http.post("/v1/leads", json={"email": "cy@example.com"}, headers=AUTH)).json()["lead_id"]
    assert (await eventually(http, f"/v1/leads/{newer}", lambda v: True))["playbook_version"] == "v1"
    assert (await http.get(f"/v1/leads/{lead_id}", headers=AUTH)).json()["playbook_version"].startswith("file-")

    # The managers' dashboard shows the overdue follow-up, the funnel and the sources.
    assert (await http.get("/dashboard")).status_code == 401
    page = await http.get("/dashboard", auth=("manager", TEST_API_KEY))
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    overdue_table = page.text.split('id="overdue"')[1].split("</table>")[0]
    assert "Bo Corp" in overdue_table and "Acme" not in overdue_table
    assert "whitepaper" in page.text.split('id="sources"')[1]


async def test_a_busy_lead_continues_as_new_and_keeps_everything(
    stack: httpx.AsyncClient,
    dev_server: WorkflowEnvironment,
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    http = stack
    created = await http.post("/v1/leads", json={"email": "busy@example.com", "company": "Busy"}, headers=AUTH)
    lead_id = created.json()["lead_id"]
    download = {"events": [{"id": "busy-download", "type": "download"}]}
    assert (await http.post(f"/v1/leads/{lead_id}/events", json=download, headers=AUTH)).status_code == 202
    # One request per event: each one is a signal and a workflow task; the server suggests continue-as-new
    # after 60 history events here (a few thousand in production).
    for i in range(70):
        one = {"events": [{"id": f"busy-{i}", "type": "webinar_registered"}]}
        assert (await http.post(f"/v1/leads/{lead_id}/events", json=one, headers=AUTH)).status_code == 202
    # Visibility lags: the new run can show before the old one's status does. Wait for the status itself.
    continued: list = []
    for _ in range(300):
        runs = [w async for w in dev_server.client.list_workflows(f"WorkflowId = '{lead_id}'")]
        continued = [w for w in runs if w.status.name == "CONTINUED_AS_NEW"]
        if continued:
            break
        await asyncio.sleep(0.1)
    assert continued, "the lead never continued as new"
    first = continued[0]
    sealed = await dev_server.client.get_workflow_handle(lead_id, run_id=first.run_id).fetch_history()
    # Lead payloads are sealed per lead (privacy/codec.py); recorded histories are kept plain.
    history = await decoded_history(
        sealed, with_lead_codec(dev_server.client, settings, sessions).data_converter.payload_codec
    )
    await Replayer(
        workflows=[LeadWorkflow], data_converter=data_converter, workflow_runner=workflow_runner()
    ).replay_workflow(history)
    if os.environ.get("LEADFLOW_RECORD_HISTORIES"):
        (Path(__file__).parent / "histories" / "lead_continue_as_new_v2.json").write_text(history.to_json())
    # The new run carries the state: attributes, score, and the ids of events already counted.
    again = await http.post(f"/v1/leads/{lead_id}/events", json=download, headers=AUTH)
    assert again.json()["duplicates"] == 1
    view = await eventually(http, f"/v1/leads/{lead_id}", lambda v: v["attributes"].get("company") == "Busy")
    assert view["score"] == 15 and [c["rule_id"] for c in view["recent_score_changes"]] == ["whitepaper_download"]
    assert view["journeys"][0]["journey_id"] == "welcome_nurture" and "journey:welcome_nurture" in view["timers"]


async def test_tracking_a_form_lead_by_email_keeps_its_original_source(
    stack: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession]
) -> None:
    """The bug: POST /v1/events merged `source: tracking` into every lead it touched."""
    http = stack
    form = {"email": "wp@example.com", "company": "Paper Co", "source": "Whitepaper", "budget": "¥50,000",
            "utm": {"source": "google", "medium": "cpc", "campaign": "q4-whitepaper"}}  # fmt: skip
    lead_id = (await http.post("/v1/leads", json=form, headers=AUTH)).json()["lead_id"]
    await eventually(http, f"/v1/leads/{lead_id}", lambda v: v["exists"])
    # Visited after the form (the latest source follows the touches' own times).
    click = {"email": "wp@example.com", "type": "page_view", "at": datetime.now(UTC).isoformat(),
             "url": "https://example.com/blog?utm_source=LinkedIn&utm_medium=social&utm_campaign=launch"}  # fmt: skip
    posted = await http.post("/v1/events", json={"events": [click]}, headers=AUTH)
    assert posted.status_code == 202 and posted.json()["accepted"] == 1, posted.text
    view = await eventually(http, f"/v1/leads/{lead_id}", lambda v: v["score"] > 0)
    attributes = view["attributes"]
    assert attributes["source"] == "whitepaper"  # was "tracking"
    assert attributes["source_category"] == "paid"
    assert (attributes["latest_source"], attributes["latest_source_category"]) == ("linkedin", "social")
    assert view["original_source"]["source"] == "whitepaper" and view["latest_source"]["campaign"] == "launch"
    assert (attributes["budget"], attributes["budget_currency"]) == (50000, "JPY")
    assert view["attribute_origins"]["company"]["origin"] == "api"

    # A blind retry (no client id) is recognised by its derived id; a bad event is rejected alone.
    unsendable = {"email": "用户@example.com", "type": "x"}
    retry = await http.post(
        "/v1/events", headers=AUTH, json={"events": [click, {"email": "nope", "type": "x"}, unsendable]}
    )
    assert [(r["status"], r["reason"] is not None) for r in retry.json()["results"]] == [
        ("duplicate", False),
        ("rejected", True),
        ("rejected", True),
    ]
    assert "email" in retry.json()["results"][1]["reason"] and "SMTP_UTF8" in retry.json()["results"][2]["reason"]

    # A second visit's UTM replaces the first whole; known fields are never blanked.
    again = {"email": "wp@example.com", "company": None, "utm": {"source": "newsletter"}}
    assert (await http.post("/v1/leads", json=again, headers=AUTH)).status_code == 202
    view = await eventually(http, f"/v1/leads/{lead_id}", lambda v: v["attributes"].get("utm_source") == "newsletter")
    assert not {"utm_medium", "utm_campaign"} & set(view["attributes"]) and view["attributes"]["company"] == "Paper Co"
    assert view["attributes"]["source"] == "whitepaper"

    # A lead created by tracking alone has `tracking` as its original source.
    only = await http.post("/v1/events", headers=AUTH, json={"events": [{"email": "anon@example.com", "type": "x"}]})
    anon = await eventually(http, f"/v1/leads/{only.json()['leads'][0]}", lambda v: v["exists"])
    assert (anon["attributes"]["source"], anon["attributes"]["source_category"]) == ("tracking", "direct")

    # The store has what the workflow projected: the lead's sources and the touchpoint's unit.
    for _ in range(100):
        async with sessions() as session:
            row = await repo.get_lead(session, lead_id)
            touchpoints = await repo.list_touchpoints(session, lead_id)
        if row and touchpoints and row["utm_source"] == "newsletter":
            break
        await asyncio.sleep(0.1)
    assert row is not None and (row["source"], row["original_source"], row["source_category"]) == (
        "whitepaper",
        "whitepaper",
        "paid",
    )
    assert [(t["channel"], t["source"], t["medium"], t["campaign"]) for t in touchpoints] == [
        ("social", "linkedin", "social", "launch")
    ]
