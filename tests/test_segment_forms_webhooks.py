"""Issue 8 items 1 and 3 end to end: the real Segment Python SDK (segment-analytics-python) against a real
uvicorn, Temporal dev server and worker: anonymous tracking held by a visitor workflow, identify
stitching it onto the lead with its original times; write keys that open nothing else; forms
(urlencoded, consent) and signed webhooks (valid, forged, replayed).
"""

from __future__ import annotations

import asyncio
import gzip
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import uvicorn
from segment.analytics.client import Client as SegmentClient
from segment.analytics.request import APIError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import WorkflowExecutionStatus
from temporalio.testing import WorkflowEnvironment

from api.ingest_doors import visitor_id_for
from api.lead_ids import lead_id_for
from api.main import create_app
from api.routers.webhooks import sign
from payload_converter import data_converter
from privacy.history import decoded_history
from privacy.keys import LeadErased
from runtime import build_worker, with_lead_codec
from settings import Settings
from store import ingest, privacy
from tests.conftest import TEST_API_KEY, free_port, venv_binary
from workflows import search_attributes
from workflows.visitor import VisitorWorkflow

pytestmark = pytest.mark.integration
AUTH = {"X-API-Key": TEST_API_KEY}


@pytest.fixture(scope="module")
async def dev_server() -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=venv_binary("temporal"),
        search_attributes=search_attributes.ALL,
        data_converter=data_converter,
    )
    yield env
    await env.shutdown()


class Stack:
    def __init__(
        self,
        http: httpx.AsyncClient,
        base_url: str,
        settings: Settings,
        env: WorkflowEnvironment,
        sessions: async_sessionmaker[AsyncSession],
    ) -> None:
        self.http, self.base_url, self.settings, self.env, self.sessions = http, base_url, settings, env, sessions

    def lead_id(self, email: str) -> str:
        return lead_id_for(email, self.settings.secret("id_key"))

    async def write_key(self) -> str:
        created = await self.http.post("/v1/admin/write-keys", json={"name": "website"}, headers=AUTH)
        assert created.status_code == 201, created.text
        return created.json()["key"]

    async def lead(self, email: str, predicate: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        url, body = f"/v1/leads/{self.lead_id(email)}", None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            answer = await self.http.get(url, headers=AUTH)
            body = answer.json()
            if answer.status_code == 200 and predicate(body):
                return body
            await asyncio.sleep(0.1)
        raise AssertionError(f"{url} never matched; last answer: {body}")


@pytest.fixture
async def stack(
    dev_server: WorkflowEnvironment, settings: Settings, sessions: async_sessionmaker[AsyncSession]
) -> AsyncIterator[Stack]:
    settings = settings.model_copy(
        update={
            "temporal_address": dev_server.client.service_client.config.target_host,
            "task_queue": f"tq-{uuid.uuid4().hex[:8]}",
        }
    )
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning"))
    serving = asyncio.create_task(server.serve())
    base = f"http://127.0.0.1:{port}"
    async with build_worker(dev_server.client, settings, sessions):
        async with httpx.AsyncClient(base_url=base, timeout=20) as http:
            for _ in range(400):
                if server.started:
                    break
                await asyncio.sleep(0.05)
            yield Stack(http, base, settings, dev_server, sessions)
        server.should_exit = True
        await serving


def ago(days: float) -> datetime:
    return datetime.now(UTC) - timedelta(days=days)


LANDING = "https://example.com/?utm_source=LinkedIn&utm_medium=paid_social&utm_campaign=launch"


@pytest.mark.parametrize("database_url", ["sqlite", "postgres"], indirect=True)
async def test_real_segment_client_tracks_anonymously_then_identify_stitches(stack: Stack) -> None:
    key = await stack.write_key()
    anonymous_id, email = str(uuid.uuid4()), f"ken.{uuid.uuid4().hex[:6]}@example.com"
    # The SDK as a site runs it: a background thread batching messages, gzip bodies, Basic auth.
    site = SegmentClient(key, host=stack.base_url, gzip=True, max_retries=1, upload_interval=0.05)
    errors: list[Exception] = []
    site.on_error = lambda error, _batch: errors.append(error)
    # Ten days ago, before anyone knew them: a landing from a LinkedIn ad, a download, four more page views.
    site.page(anonymous_id=anonymous_id, name="Home", properties={"url": LANDING}, timestamp=ago(10))
    site.track(anonymous_id=anonymous_id, event="Whitepaper Downloaded", timestamp=ago(9.9))
    for hours in range(4):
        url = f"https://example.com/blog/{hours}"
        site.page(anonymous_id=anonymous_id, properties={"url": url}, timestamp=ago(9.8 - hours / 24))
    await asyncio.to_thread(site.flush)
    assert errors == []

    # Accepted and held durably by the visitor's workflow: no lead exists for anyone yet.
    visitor_id = visitor_id_for(f"anon:{anonymous_id}", stack.settings.secret("id_key"))
    # Its payloads are sealed with the visitor's own key (privacy/codec.py): read through the codec.
    visitor = with_lead_codec(stack.env.client, stack.settings, stack.sessions).get_workflow_handle(visitor_id)
    deadline = time.monotonic() + 20
    while (await visitor.query(VisitorWorkflow.view)).held < 6:
        assert time.monotonic() < deadline, "the visitor never held the six events"
        await asyncio.sleep(0.1)
    assert (await stack.http.get(f"/v1/leads/{stack.lead_id(email)}", headers=AUTH)).status_code == 404

    # identify with an email trait stitches them onto the lead (user id too, for later calls).
    traits = {"email": email.upper(), "firstName": "Ken", "title": "VP Marketing",
              "company": {"name": "Acme", "employee_count": 500}}  # fmt: skip
    site.identify(user_id="crm-4711", anonymous_id=anonymous_id, traits=traits)
    await asyncio.to_thread(site.flush)
    # Scored with their original times: 15 (download) + 5 x 2 (page views); the repeat-visitor bonus
    # (5 page views within the last 7 days) does not apply to views from ten days ago.
    view = await stack.lead(email, lambda v: v["score"] == 25)
    assert view["attributes"]["first_name"] == "Ken" and view["attributes"]["company"] == "Acme"
    assert view["attributes"]["company_size"] == 500 and view["attributes"]["email"] == email
    assert sorted(c["rule_id"] for c in view["recent_score_changes"]) == ["page_view"] * 5 + ["whitepaper_download"]

    # Later events by either handle reach the lead: the anonymous id (pricing page) and the user id (a click).
    site.page(anonymous_id=anonymous_id, properties={"url": "https://example.com/pricing"})
    site.track(user_id="crm-4711", event="Email Link Clicked")
    await asyncio.to_thread(site.flush)
    view = await stack.lead(email, lambda v: v["score"] == 25 + 40 + 5)
    assert view["stage"] == "sql"
    assert errors == []

    # Erasure: the person's anonymous ids lead nowhere any more, and the visitor's history (their browsing
    # before anyone knew them) is shredded with its own key once its workflow is ended.
    lead_id = stack.lead_id(email)
    async with stack.sessions() as session:
        assert set((await ingest.linked_leads(session, [visitor_id])).values()) == {lead_id}
    erased = await stack.http.delete(f"/v1/leads/{lead_id}", headers=AUTH)
    assert erased.status_code == 200 and erased.json()["visitors_shredded"] == 2, erased.text  # anonymous id, user id
    async with stack.sessions() as session:
        assert await ingest.linked_leads(session, [visitor_id]) == {}
        visitor_key = await privacy.get_lead_key(session, visitor_id)
    assert visitor_key is not None and visitor_key.erased
    ended = await stack.env.client.get_workflow_handle(visitor_id).describe()
    assert ended.status == WorkflowExecutionStatus.TERMINATED
    codec = with_lead_codec(stack.env.client, stack.settings, stack.sessions).data_converter.payload_codec
    assert codec is not None
    with pytest.raises(LeadErased):  # no codec can open it any more
        await decoded_history(await stack.env.client.get_workflow_handle(visitor_id).fetch_history(), codec)
    site.page(anonymous_id=anonymous_id, properties={"url": "https://example.com/again"})
    await asyncio.to_thread(site.flush)
    await asyncio.sleep(1)
    assert (await stack.http.get(f"/v1/leads/{lead_id}", headers=AUTH)).status_code in (404, 410)
    assert errors == []
    site.shutdown()


async def test_stitched_first_touch_is_the_original_source(stack: Stack) -> None:
    key = await stack.write_key()
    anonymous_id, email = str(uuid.uuid4()), f"mia.{uuid.uuid4().hex[:6]}@example.com"
    site = SegmentClient(key, host=stack.base_url, sync_mode=True, gzip=True, max_retries=0)
    # sync_mode posts in the calling thread: off the event loop the API runs on.
    await asyncio.to_thread(site.page, anonymous_id=anonymous_id, properties={"url": LANDING}, timestamp=ago(3))
    await asyncio.to_thread(site.identify, anonymous_id=anonymous_id, traits={"email": email})
    view = await stack.lead(email, lambda v: v["attributes"].get("source") == "linkedin")
    assert view["attributes"]["source_category"] == "paid"


async def test_a_stitched_visit_before_the_form_is_the_original_source(stack: Stack) -> None:
    """The visitor came from a LinkedIn ad three days before filling in the whitepaper form: once identify
    stitches that visit on, it is the lead's first touch; the form stays its latest source."""
    key = await stack.write_key()
    anonymous_id, email = str(uuid.uuid4()), f"noa.{uuid.uuid4().hex[:6]}@example.com"
    site = SegmentClient(key, host=stack.base_url, sync_mode=True, gzip=True, max_retries=0)
    await asyncio.to_thread(site.page, anonymous_id=anonymous_id, properties={"url": LANDING}, timestamp=ago(3))
    form = {"email": email, "source": "whitepaper"}
    assert (await stack.http.post("/v1/leads", json=form, headers=AUTH)).status_code == 202
    await stack.lead(email, lambda v: v["attributes"].get("source") == "whitepaper")
    await asyncio.to_thread(site.identify, anonymous_id=anonymous_id, traits={"email": email})
    view = await stack.lead(email, lambda v: v["attributes"].get("source") == "linkedin")
    assert (view["original_source"]["source"], view["original_source"]["campaign"]) == ("linkedin", "launch")
    assert view["latest_source"]["source"] == "whitepaper" and view["attributes"]["source_category"] == "paid"


@pytest.mark.parametrize("database_url", ["sqlite", "postgres"], indirect=True)
async def test_write_keys_open_only_the_tracking_routes(stack: Stack) -> None:
    key = await stack.write_key()
    email = f"ann.{uuid.uuid4().hex[:6]}@example.com"
    basic = httpx.BasicAuth(key, "")
    # A write key is refused everywhere else, however it is presented.
    lead = {"email": email}
    assert (await stack.http.post("/v1/leads", json=lead, auth=basic)).status_code == 401
    assert (await stack.http.post("/v1/leads", json=lead, headers={"X-API-Key": key})).status_code == 401
    assert (await stack.http.get("/v1/admin/write-keys", headers={"X-API-Key": key})).status_code == 401
    # ...and the admin key is no write key.
    admin_site = SegmentClient(TEST_API_KEY, host=stack.base_url, sync_mode=True, max_retries=0)
    with pytest.raises(APIError) as refused:
        await asyncio.to_thread(admin_site.track, user_id=email, event="Signed Up")
    assert refused.value.status == 401 and "write key" in refused.value.message

    # The bare single-message route with the key in the body (analytics.js style) and a plain body.
    body = {"writeKey": key, "userId": email, "event": "Demo Requested", "messageId": "m-1"}
    single = await stack.http.post("/v1/segment/track", content=json.dumps(body))
    assert single.status_code == 200, single.text
    assert single.json()["results"] == [{"messageId": "m-1", "status": "accepted", "reason": None}]

    # A gzip batch: each message answered on its own.
    batch = {"batch": [
        {"type": "track", "userId": email, "event": "Webinar Attended", "messageId": "m-2"},
        {"type": "track", "event": "No One", "messageId": "m-3"},
        {"type": "page", "userId": email, "messageId": "m-4", "timestamp": "yesterday"},
        {"type": "group", "userId": email, "groupId": "g", "messageId": "m-5"},
    ]}  # fmt: skip
    packed = gzip.compress(json.dumps(batch).encode())
    answer = await stack.http.post("/v1/batch", content=packed, auth=basic, headers={"Content-Encoding": "gzip"})
    assert answer.status_code == 200, answer.text
    results = {r["messageId"]: (r["status"], r["reason"]) for r in answer.json()["results"]}
    assert results["m-2"] == ("accepted", None)
    assert results["m-3"][0] == "rejected" and "anonymousId" in results["m-3"][1]
    assert results["m-4"][0] == "rejected" and "timestamp" in results["m-4"][1]
    assert results["m-5"][0] == "ignored"
    view = await stack.lead(email, lambda v: v["score"] == 20)  # webinar_attended; demo_request has no rule
    assert view["recent_score_changes"][-1]["event_id"] == "m-2"
    # A retry of the same batch is counted once (messageId is the event id), and answered so per message;
    # so is a message repeated inside one batch.
    retry = await stack.http.post("/v1/batch", content=packed, auth=basic, headers={"Content-Encoding": "gzip"})
    statuses = {r["messageId"]: r["status"] for r in retry.json()["results"]}
    assert (statuses["m-2"], retry.json()["duplicates"], retry.json()["accepted"]) == ("duplicate", 1, 0)
    twice = {"batch": [{"type": "track", "userId": email, "event": "Quote Requested", "messageId": "m-6"}] * 2}
    answer = await stack.http.post("/v1/batch", json=twice, auth=basic)
    assert [r["status"] for r in answer.json()["results"]] == ["accepted", "duplicate"], answer.text
    await asyncio.sleep(1)
    assert (await stack.lead(email, lambda v: True))["score"] == 20

    # Revoked: refused from then on.
    keys = (await stack.http.get("/v1/admin/write-keys", headers=AUTH)).json()
    for row in keys:
        assert (await stack.http.delete(f"/v1/admin/write-keys/{row['id']}", headers=AUTH)).status_code == 204
    again = await stack.http.post("/v1/batch", content=packed, auth=basic, headers={"Content-Encoding": "gzip"})
    assert again.status_code == 401
    # Unreadable bodies are 400s that say why, never 500s.
    fresh = httpx.BasicAuth(await stack.write_key(), "")
    assert (await stack.http.post("/v1/batch", content=b"{nope", auth=fresh)).status_code == 400
    bomb = gzip.compress(b" " * (5 * 1024 * 1024))
    huge = await stack.http.post("/v1/batch", content=bomb, auth=fresh, headers={"Content-Encoding": "gzip"})
    assert huge.status_code == 413


async def test_form_posts_map_fields_and_capture_consent(stack: Stack) -> None:
    form = {
        "fields": {"your-email": "email", "fname": "first_name", "org": "company", "size": "company_size",
                   "role": "fields.job_function"},
        "consent": {"field": "agree", "wording": "Yes, send me the monthly newsletter."},
        "source": "whitepaper",
        "event_name": "whitepaper download",
        "redirect_url": "https://example.com/thanks",
    }  # fmt: skip
    put = await stack.http.put("/v1/admin/forms/whitepaper", json=form, headers=AUTH)
    assert put.status_code == 200, put.text
    bad = await stack.http.put("/v1/admin/forms/broken", json={"fields": {"e": "emial"}}, headers=AUTH)
    assert bad.status_code == 422 and "fields.e" in bad.text
    assert (await stack.http.put("/v1/admin/forms/x", json=form)).status_code == 401  # admin only

    email = f"yui.{uuid.uuid4().hex[:6]}@example.com"
    fields = {"your-email": email, "fname": "Yui", "org": "Kaisha", "size": "250", "role": "it", "agree": "on",
              "honeypot-extra": "ignored"}  # fmt: skip
    posted = await stack.http.post("/v1/forms/whitepaper", data=fields, follow_redirects=False)
    assert posted.status_code == 303 and posted.headers["location"] == "https://example.com/thanks"
    view = await stack.lead(email, lambda v: v["consent"] == "opted_in")
    assert view["attributes"]["first_name"] == "Yui" and view["attributes"]["company_size"] == 250
    assert view["attributes"]["job_function"] == "it" and "honeypot-extra" not in view["attributes"]
    (consent,) = view["consents"]
    assert consent["source"] == "form" and consent["form_id"] == "form:whitepaper"
    assert consent["wording"] == "Yes, send me the monthly newsletter."
    # Issue 8's bug: tracking the form's lead by email rewrote its source to "tracking".
    visit = {"email": email, "type": "page_view", "url": "https://example.com/blog?utm_source=LinkedIn"}
    assert (await stack.http.post("/v1/events", json={"events": [visit]}, headers=AUTH)).status_code == 202
    view = await stack.lead(email, lambda v: v["attributes"].get("latest_source") == "linkedin")
    assert view["attributes"]["source"] == "whitepaper" and view["original_source"]["origin"] == "form:whitepaper"

    # JSON works too; an unticked box records no consent; a later post never blanks a known field.
    other = f"leo.{uuid.uuid4().hex[:6]}@example.com"
    answer = await stack.http.post("/v1/forms/whitepaper", json={"your-email": other, "fname": "Leo"})
    assert answer.status_code == 202 and answer.json() == {"lead_id": stack.lead_id(other), "consent": None}
    await stack.http.post("/v1/forms/whitepaper", json={"your-email": other, "fname": "", "org": "Acme"})
    view = await stack.lead(other, lambda v: v["attributes"].get("company") == "Acme")
    assert view["attributes"]["first_name"] == "Leo" and view["consent"] == "unknown"

    assert (await stack.http.post("/v1/forms/nope", json={"your-email": other})).status_code == 404
    invalid = await stack.http.post("/v1/forms/whitepaper", data={"your-email": "not-an-email"})
    assert invalid.status_code == 422 and "email" in invalid.json()["detail"]
    wrong_type = await stack.http.post("/v1/forms/whitepaper", content=b"x", headers={"Content-Type": "text/csv"})
    assert wrong_type.status_code == 415


async def test_signed_webhooks_valid_forged_and_replayed(stack: Stack) -> None:
    config = {"fields": {"payload.invitee.email": "email", "payload.invitee.name": "first_name"},
              "event_type": "meeting_booked"}  # fmt: skip
    created = await stack.http.put("/v1/admin/webhooks/calendly", json=config, headers=AUTH)
    assert created.status_code == 200, created.text
    secret = created.json()["secret"]
    assert secret and secret.startswith("whsec_")
    email = f"sam.{uuid.uuid4().hex[:6]}@example.com"
    body = json.dumps({"event": "invitee.created", "payload": {"invitee": {"email": email, "name": "Sam"}}}).encode()

    async def deliver(signature: str | None, content: bytes = body) -> httpx.Response:
        headers = {"Content-Type": "application/json"} | ({"X-Leadflow-Signature": signature} if signature else {})
        return await stack.http.post("/v1/webhooks/calendly", content=content, headers=headers)

    now = int(time.time())
    valid = await deliver(sign(secret, now, body))
    assert valid.status_code == 202, valid.text
    assert valid.json()["lead_id"] == stack.lead_id(email)
    view = await stack.lead(email, lambda v: v["attributes"].get("first_name") == "Sam")
    assert view["exists"]
    # The same delivery again inside the window is the same event (same id): counted once downstream.
    assert (await deliver(sign(secret, now, body))).json()["event_id"] == valid.json()["event_id"]

    forged = await deliver(sign("whsec_guessed", now, body))
    assert forged.status_code == 401 and "does not match" in forged.json()["detail"]
    tampered = await deliver(sign(secret, now, body), content=body.replace(b"Sam", b"Eve"))
    assert tampered.status_code == 401
    replayed = await deliver(sign(secret, now - 600, body))  # a captured delivery, ten minutes later
    assert replayed.status_code == 401 and "replays" in replayed.json()["detail"]
    assert (await deliver(None)).status_code == 401
    assert (await deliver("t=abc,v1=00")).status_code == 401

    # Rotating the secret retires the old one.
    rotated = await stack.http.put("/v1/admin/webhooks/calendly?rotate=true", json=config, headers=AUTH)
    assert rotated.json()["secret"] not in (None, secret)
    assert (await deliver(sign(secret, int(time.time()), body))).status_code == 401
    assert (await deliver(sign(rotated.json()["secret"], int(time.time()), body))).status_code == 202


async def test_identify_and_form_posts_say_where_each_attribute_came_from(stack: Stack) -> None:
    form = {"fields": {"mail": "email", "org": "company"}}
    assert (await stack.http.put("/v1/admin/forms/contact", json=form, headers=AUTH)).status_code == 200
    email = f"ren.{uuid.uuid4().hex[:6]}@example.com"
    assert (await stack.http.post("/v1/forms/contact", json={"mail": email, "org": "Kaisha"})).status_code == 202
    view = await stack.lead(email, lambda v: v["attributes"].get("company") == "Kaisha")
    assert view["attribute_origins"]["company"]["origin"] == "form:contact"

    basic = httpx.BasicAuth(await stack.write_key(), "")
    identify = {"type": "identify", "userId": email, "traits": {"email": email, "title": "CTO"}, "messageId": "i-1"}
    answer = await stack.http.post("/v1/identify", json=identify, auth=basic)
    assert answer.status_code == 200 and answer.json()["results"][0]["status"] == "accepted", answer.text
    view = await stack.lead(email, lambda v: v["attributes"].get("title") == "CTO")
    origins = {name: stamp["origin"] for name, stamp in view["attribute_origins"].items()}
    assert origins["title"] == "segment:identify" and origins["company"] == "form:contact"
