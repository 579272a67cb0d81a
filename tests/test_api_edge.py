"""The API edge refuses what can never succeed: times outside the documented range, values and bodies larger
than one Temporal signal can carry. Each answer is a 4xx naming the field or the limit, never a 500 after the
workflow already applied the change, and never a Retry-After on a request that can never succeed."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.client import WorkflowHandle
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import ActivityEnvironment, WorkflowEnvironment
from temporalio.worker import Worker

from activities.email import EmailJob
from activities.leads import LeadActivities
from api import errors
from api.main import create_app
from rules.model import EventsReceived, LeadSnapshot, LeadUpserted, TrackedEvent
from runtime import load_active_playbook, workflow_runner
from settings import Settings
from store.models import UTCDateTime
from tests.conftest import TEST_API_KEY
from tests.test_integration import dev_server, stack  # noqa: F401  (fixtures)
from tests.test_robustness import offline_settings
from workflows.lead import LeadWorkflow
from workflows.payloads import LeadOptions, LeadStart, LeadView

AUTH = {"X-API-Key": TEST_API_KEY}
LEAD = "lead-" + "0" * 32
YEAR_ONE = "0001-01-01T00:00:00+14:00"
YEAR_9999 = "9999-12-31T23:59:59-14:00"


@pytest.fixture(scope="module")
def offline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    settings = offline_settings(tmp_path_factory.mktemp("edge"))
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        team = {"name": "Edge", "reps": [{"id": "rep-edge", "name": "Rep", "email": "rep@example.com"}]}
        assert client.put("/v1/teams/edge", json=team, headers=AUTH).status_code == 200
        yield client


# ---------------------------------------------------------------- times


@pytest.mark.parametrize("away_until", [YEAR_9999, YEAR_ONE, "2100-01-01T00:00:00Z", "1999-12-31T23:59:59Z"])
def test_availability_outside_the_range_is_422_naming_the_field(offline: TestClient, away_until: str) -> None:
    answer = offline.put("/v1/reps/rep-edge/availability", json={"away_until": away_until}, headers=AUTH)
    assert answer.status_code == 422, answer.text
    assert answer.json()["errors"][0]["field"] == "away_until"
    assert "2000" in answer.json()["detail"] and "2099" in answer.json()["detail"]


def test_availability_within_the_range_is_stored(offline: TestClient) -> None:
    answer = offline.put("/v1/reps/rep-edge/availability", json={"away_until": "2099-12-31T23:59:59-14:00"},
                         headers=AUTH)  # fmt: skip
    assert answer.status_code == 200, answer.text
    assert offline.put("/v1/reps/rep-edge/availability", json={"away_until": None}, headers=AUTH).status_code == 200


def test_team_rep_away_until_is_bounded_too(offline: TestClient) -> None:
    body = {"name": "Edge", "reps": [{"id": "rep-x", "name": "X", "email": "x@example.com", "away_until": YEAR_9999}]}
    answer = offline.put("/v1/teams/edge2", json=body, headers=AUTH)
    assert answer.status_code == 422 and answer.json()["errors"][0]["field"] == "reps.0.away_until"


@pytest.mark.parametrize("at", [YEAR_ONE, YEAR_9999, 2180, "2180", 1.5e9, True])
def test_event_and_touch_times_are_strict_strings_in_range(offline: TestClient, at: object) -> None:
    events = offline.post(f"/v1/leads/{LEAD}/events", json={"events": [{"type": "page_view", "at": at}]}, headers=AUTH)
    assert events.status_code == 422 and events.json()["errors"][0]["field"] == "events.0.at", events.text
    identified = offline.post("/v1/events", json={"events": [{"type": "x", "email": "a@example.com", "at": at}]},
                              headers=AUTH)  # fmt: skip
    assert identified.status_code == 422 and identified.json()["errors"][0]["field"] == "events.0.at"
    touch = offline.post(f"/v1/leads/{LEAD}/touches", json={"kind": "call", "at": at}, headers=AUTH)
    assert touch.status_code == 422 and touch.json()["errors"][0]["field"] == "at", touch.text


def test_store_type_refuses_an_unrepresentable_time_with_a_clear_error() -> None:
    from sqlalchemy.dialects import postgresql, sqlite

    year_one = datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=14)))
    for dialect in (sqlite.dialect(), postgresql.dialect()):
        with pytest.raises(ValueError, match="cannot be stored"):
            UTCDateTime().process_bind_param(year_one, dialect)
    late = datetime(9999, 12, 31, 23, 59, tzinfo=timezone(timedelta(hours=-14)))
    with pytest.raises(ValueError, match="cannot be stored"):
        UTCDateTime().process_bind_param(late, sqlite.dialect())


async def test_project_lead_fails_non_retryably_on_a_snapshot_that_can_never_be_stored(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    now = datetime.now(UTC)
    bad = LeadSnapshot("lead-bad", {"email": "bad@example.com"}, "new", 0, None, None, None, now,
                       datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=14))), "v1", None)  # fmt: skip
    with pytest.raises(ApplicationError) as raised:
        await ActivityEnvironment().run(LeadActivities(sessions).project_lead, bad)
    assert raised.value.non_retryable and raised.value.type == "UnstorableSnapshot"
    assert "cannot be stored" in str(raised.value)


# ---------------------------------------------------------------- sizes


def test_a_huge_custom_field_value_is_422_naming_the_field(offline: TestClient) -> None:
    answer = offline.post("/v1/leads", json={"email": "big@example.com", "fields": {"notes": "x" * 3_000_000}},
                          headers=AUTH)  # fmt: skip
    # The body limit answers first for a 3 MB value; a value over the field limit but under the body limit is a 422.
    assert answer.status_code == 413 and "retry-after" not in answer.headers
    answer = offline.post("/v1/leads", json={"email": "big@example.com", "fields": {"notes": "x" * 5000}}, headers=AUTH)
    assert answer.status_code == 422 and "retry-after" not in answer.headers
    assert answer.json()["errors"][0]["field"] == "fields.notes"
    props = {"events": [{"type": "x", "properties": {"blob": "y" * 5000}}]}
    answer = offline.post(f"/v1/leads/{LEAD}/events", json=props, headers=AUTH)
    assert answer.status_code == 422 and answer.json()["errors"][0]["field"] == "events.0.properties.blob"


def test_a_body_over_the_limit_is_413_naming_the_limit_before_it_is_parsed(offline: TestClient) -> None:
    events = {"events": [{"type": "page_view", "url": "https://example.com/" + "p" * 1900,
                          "properties": {f"p{i}": "v" * 1000 for i in range(10)}} for _ in range(500)]}  # fmt: skip
    answer = offline.post(f"/v1/leads/{LEAD}/events", json=events, headers=AUTH)
    assert answer.status_code == 413, answer.text
    assert "retry-after" not in answer.headers
    assert "1048576 bytes" in answer.json()["detail"]
    # Not parsed: broken JSON over the limit gets the same 413, not a 422 about the JSON.
    broken = offline.post("/v1/leads", content=b"{" * 2_000_000, headers={**AUTH, "content-type": "application/json"})
    assert broken.status_code == 413
    # A chunked body without Content-Length is counted as it arrives.
    chunks = (b"[" * 65536 for _ in range(40))
    streamed = offline.post("/v1/leads", content=chunks, headers={**AUTH, "content-type": "application/json"})
    assert streamed.status_code == 413


def test_the_streamed_csv_upload_is_not_held_to_the_signal_body_limit(offline: TestClient) -> None:
    """A CSV import streams to disk with a limit of its own: 2 MB reaches the importer's own checks."""
    csv = b"name,company\n" + b"Ann,Acme\n" * 250_000
    answer = offline.post("/v1/imports", content=csv, headers={**AUTH, "content-type": "text/csv"})
    assert answer.status_code == 422, answer.text
    assert "email" in answer.json()["detail"]


def test_an_anonymous_oversized_body_still_gets_401(offline: TestClient) -> None:
    answer = offline.post("/v1/leads", content=b"x" * 2_000_000, headers={"content-type": "application/json"})
    assert answer.status_code == 401


@pytest.mark.parametrize(
    ("code", "message", "status"),
    [
        (RPCStatusCode.INVALID_ARGUMENT, "Blob data size exceeds limit.", 413),
        (RPCStatusCode.RESOURCE_EXHAUSTED, "grpc: received message larger than max (6291456 vs. 4194304)", 413),
        (RPCStatusCode.INVALID_ARGUMENT, "something else is invalid", 400),
        (RPCStatusCode.RESOURCE_EXHAUSTED, "namespace rate limit exceeded", 429),
        (RPCStatusCode.UNAVAILABLE, "connection refused", 503),
    ],
)
def test_temporal_refusals_that_can_never_succeed_carry_no_retry_after(
    code: RPCStatusCode, message: str, status: int
) -> None:
    answer = errors.rpc_answer(RPCError(message, code, b""))
    assert answer.status_code == status
    assert ("retry-after" in answer.headers) == (status in (429, 503))


# ---------------------------------------------------------------- over HTTP with Temporal


@pytest.mark.integration
async def test_extreme_times_never_reach_a_lead(stack: httpx.AsyncClient) -> None:  # noqa: F811
    http = stack
    lead = (await http.post("/v1/leads", json={"email": "times@example.com"}, headers=AUTH)).json()["lead_id"]
    view = await _view(http, lead)
    for at in (YEAR_ONE, YEAR_9999):
        answer = await http.post(f"/v1/leads/{lead}/events", json={"events": [{"type": "pricing", "at": at}]},
                                 headers=AUTH)  # fmt: skip
        assert answer.status_code == 422, answer.text
        touch = await http.post(f"/v1/leads/{lead}/touches", json={"kind": "call", "at": at}, headers=AUTH)
        assert touch.status_code == 422, touch.text
    # Within the range but before the lead existed: the workflow's update validator refuses it.
    created = datetime.fromisoformat(view["created_at"])
    early = (created - timedelta(days=2)).isoformat()
    touch = await http.post(f"/v1/leads/{lead}/touches", json={"kind": "call", "at": early}, headers=AUTH)
    assert touch.status_code == 422 and "predate" in touch.json()["detail"], touch.text
    after = await _view(http, lead)
    assert after["score"] == view["score"] and after["updated_at"] == view["updated_at"]
    # The lead still takes a good touch.
    good = await http.post(f"/v1/leads/{lead}/touches", json={"kind": "call"}, headers=AUTH)
    assert good.status_code == 200, good.text


@pytest.mark.integration
async def test_a_huge_custom_field_is_refused_without_retry_after(stack: httpx.AsyncClient) -> None:  # noqa: F811
    answer = await stack.post("/v1/leads", json={"email": "huge@example.com", "fields": {"notes": "x" * 3_000_000}},
                              headers=AUTH)  # fmt: skip
    assert answer.status_code in (413, 422) and "retry-after" not in answer.headers, answer.text
    many = {"events": [{"type": "x", "email": "many@example.com", "properties": {"p": "y" * 12_000}}] * 500}
    answer = await stack.post("/v1/events", json=many, headers=AUTH)
    assert answer.status_code in (413, 422) and "retry-after" not in answer.headers, answer.text


async def _view(http: httpx.AsyncClient, lead: str) -> dict:  # type: ignore[type-arg]
    for _ in range(200):
        answer = await http.get(f"/v1/leads/{lead}", headers=AUTH)
        if answer.status_code == 200:
            return answer.json()
        await asyncio.sleep(0.05)
    raise AssertionError(f"{lead} never answered: {answer.text}")


# ---------------------------------------------------------------- a projection that can never succeed


@pytest.mark.integration
async def test_a_projection_that_can_never_succeed_is_recorded_and_the_lead_moves_on(
    dev_server: WorkflowEnvironment,  # noqa: F811
    settings: Settings,
) -> None:
    attempts: list[str] = []

    @activity.defn(name="project_lead")
    async def project_lead(snap: LeadSnapshot) -> None:
        attempts.append(snap.lead_id)
        raise ApplicationError("a time in this snapshot cannot be stored", type="UnstorableSnapshot",
                               non_retryable=True)  # fmt: skip

    @activity.defn(name="send_email")
    async def send_email(job: EmailJob) -> None:
        return None

    task_queue = f"tq-{uuid.uuid4().hex[:8]}"
    playbook = load_active_playbook(settings)
    lead_id = f"lead-{uuid.uuid4().hex}"
    client = dev_server.client
    async with Worker(client, task_queue=task_queue, workflows=[LeadWorkflow], activities=[project_lead, send_email],
                      workflow_runner=workflow_runner()):  # fmt: skip
        handle = await client.start_workflow(
            LeadWorkflow.run,
            LeadStart(lead_id, playbook.bundle, LeadOptions(projection_delay_seconds=1, search_attributes=False)),
            id=lead_id,
            task_queue=task_queue,
            start_signal="upsert",
            start_signal_args=[LeadUpserted({"email": "stuck@example.com"})],
        )
        view = await _until(handle, lambda v: v.projection_error is not None)
        assert "cannot be stored" in view.projection_error
        assert attempts == [lead_id]  # non-retryable: one attempt, not an endless retry
        # The lead keeps deciding: a later event still moves its score.
        before = view.score
        await handle.signal(LeadWorkflow.events, EventsReceived([TrackedEvent("e1", "download", datetime.now(UTC),
                                                                              name="whitepaper")]))  # fmt: skip
        await _until(handle, lambda v: v.score > before)
        await handle.terminate()


async def _until(handle: WorkflowHandle, predicate) -> LeadView:  # type: ignore[no-untyped-def]
    view: LeadView | None = None
    for _ in range(300):
        view = await handle.query(LeadWorkflow.view)
        if predicate(view):
            return view
        await asyncio.sleep(0.05)
    raise AssertionError(f"the lead never matched: {view}")


def test_a_page_offset_beyond_any_database_integer_is_422_not_500(offline: TestClient) -> None:
    """Found by schemathesis: an offset past 64 bits reached the database and answered 500."""
    for path in ("/v1/suppressions", "/v1/followups"):
        answer = offline.get(path, params={"offset": "5946646146002061856079872"}, headers=AUTH)
        assert answer.status_code == 422, (path, answer.text)
        assert "offset" in answer.text


def test_a_rep_or_manager_address_leadflow_cannot_send_to_is_422_naming_it(offline: TestClient) -> None:
    """A rep's notifications would fail at send time (a Unicode local part without LEADFLOW_SMTP_UTF8): refused
    at the edge, as a lead's address is (issue 6 item 5)."""
    rep = {"id": "rep-utf8", "name": "Li", "email": "用户@example.com"}
    answer = offline.put("/v1/teams/utf8", json={"name": "U", "reps": [rep]}, headers=AUTH)
    assert answer.status_code == 422, answer.text
    assert answer.json()["errors"][0]["field"] == "reps.0.email" and "LEADFLOW_SMTP_UTF8" in answer.text
    manager = {"name": "U", "manager_email": "用户@example.com", "reps": []}
    answer = offline.put("/v1/teams/utf8", json=manager, headers=AUTH)
    assert answer.status_code == 422 and answer.json()["errors"][0]["field"] == "manager_email", answer.text
    idn = {"id": "rep-idn", "name": "Jörg", "email": "jorg@bücher.example"}
    assert offline.put("/v1/teams/utf8", json={"name": "U", "reps": [idn]}, headers=AUTH).status_code == 200
