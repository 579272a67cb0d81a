"""The suppression list: checked right before every send (a journey already waiting cannot mail a suppressed
address or domain), and the admin API to list, add, lift and export it."""

from __future__ import annotations

import asyncio
import csv
import io
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.testing import WorkflowEnvironment

from api.main import create_app
from privacy.addresses import address_hash
from rules.access import Role
from runtime import build_worker
from settings import Settings
from store import privacy, repo, suppressions
from store.db import make_engine, make_sessionmaker
from tests.access_fixtures import make_key
from tests.conftest import Inbox
from tests.test_lead_email_policy import LEAD, running_lead
from tests.test_lead_workflow import env, wait_view  # noqa: F401  (env: the shared time-skipping server)
from tests.test_robustness import AUTH, offline_settings

NOW = datetime(2026, 3, 2, tzinfo=UTC)


async def test_a_domain_suppressed_while_a_journey_waits_gets_no_more_mail(
    env: WorkflowEnvironment,  # noqa: F811
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    smtp: tuple[Inbox, int],
) -> None:
    inbox, _ = smtp
    settings = settings.model_copy(update={"task_queue": f"tq-{uuid.uuid4().hex[:8]}"})
    async with build_worker(env.client, settings, sessions), running_lead(env, settings, sessions) as handle:
        await inbox.wait_for(lambda m: LEAD in m["X-Envelope-To"])
        await wait_view(handle, lambda v: "journey:welcome_nurture" in v.timers)  # 3 days to the case study

        # The whole domain goes on the list while the journey waits; consent still says "send".
        async with sessions() as session:
            await suppressions.add(
                session, value="@Example.COM", scope="domain", reason="manual", key=settings.secret("id_key"), now=NOW
            )
        await env.sleep(timedelta(days=3, minutes=1))
        view = await wait_view(handle, lambda v: v.journeys[0].status == "completed")
        assert view.consent == "unknown" and view.nurture_holds == []  # the rules sent it; the activity refused
        for _ in range(100):
            async with sessions() as session:
                rows = await repo.list_emails(session, lead_id=handle.id)
            if any(r["status"] == "suppressed" for r in rows):
                break
            await asyncio.sleep(0.1)
        assert sorted((r["template"], r["status"]) for r in rows) == [("case_study", "suppressed"), ("welcome", "sent")]
        assert len(inbox.to(LEAD)) == 1


@pytest.mark.parametrize("database_url", ["sqlite", "postgres"], indirect=True)
async def test_erasing_an_unsubscribed_person_leaves_only_the_hash(sessions: async_sessionmaker[AsyncSession]) -> None:
    async with sessions() as session:
        entry, created = await suppressions.add(
            session, value="Ann@Example.com", scope="address", reason="unsubscribed", key="k", now=NOW,
            note="one-click", lead_id="lead-" + "a" * 32,
        )  # fmt: skip
        assert created and (entry.address, entry.reason) == ("ann@example.com", "unsubscribed")
        await privacy.suppress(session, address_hash("ann@example.com", "k"), "erased", NOW)
        [erased], total = await suppressions.list_entries(session)
    assert total == 1 and (erased.reason, erased.address, erased.note, erased.lead_id) == ("erased", None, None, None)


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    settings = offline_settings(tmp_path)

    async def erased_entry() -> None:
        engine = make_engine(settings.resolved_database_url())
        async with make_sessionmaker(engine)() as session:
            await privacy.suppress(session, address_hash("gone@example.com", settings.secret("id_key")), "erased", NOW)
        await engine.dispose()

    asyncio.run(erased_entry())
    with TestClient(create_app(settings), raise_server_exceptions=False) as test_client:
        yield test_client


def test_operators_list_add_lift_and_export_the_list(client: TestClient) -> None:
    added = client.post("/v1/suppressions", json={"address": "Bo@Example.org", "note": "asked by phone"}, headers=AUTH)
    assert added.status_code == 201, added.text
    assert {k: added.json()[k] for k in ("scope", "address", "reason", "note")} == {
        "scope": "address", "address": "bo@example.org", "reason": "manual", "note": "asked by phone"}  # fmt: skip
    again = client.post("/v1/suppressions", json={"address": "bo@example.org", "reason": "complaint"}, headers=AUTH)
    assert again.status_code == 200 and again.json()["id"] == added.json()["id"] and again.json()["reason"] == "manual"
    domain = client.post("/v1/suppressions", json={"domain": "@Bücher.Example", "reason": "hard_bounce"}, headers=AUTH)
    assert domain.status_code == 201 and domain.json()["address"] == "xn--bcher-kva.example"
    formula = client.post("/v1/suppressions", json={"address": "=cmd@example.net"}, headers=AUTH)
    assert formula.status_code == 201, formula.text

    listed = client.get("/v1/suppressions", headers=AUTH).json()
    assert listed["total"] == 4 and [e["address"] for e in listed["items"]][-1] is None  # the erased person
    assert [e["address"] for e in client.get("/v1/suppressions?scope=domain", headers=AUTH).json()["items"]] == [
        "xn--bcher-kva.example"
    ]
    assert client.get("/v1/suppressions?q=ORG", headers=AUTH).json()["total"] == 1
    assert client.get("/v1/suppressions?reason=erased", headers=AUTH).json()["total"] == 1

    exported = client.get("/v1/suppressions.csv", headers=AUTH)
    assert exported.status_code == 200 and exported.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert {r["address"] for r in rows} == {"bo@example.org", "xn--bcher-kva.example", "'=cmd@example.net", ""}
    assert "gone@example.com" not in exported.text

    assert client.delete(f"/v1/suppressions/{added.json()['id']}", headers=AUTH).status_code == 204
    assert client.delete(f"/v1/suppressions/{added.json()['id']}", headers=AUTH).status_code == 404
    erased_id = client.get("/v1/suppressions?reason=erased", headers=AUTH).json()["items"][0]["id"]
    refused = client.delete(f"/v1/suppressions/{erased_id}", headers=AUTH)
    assert refused.status_code == 409 and "erased" in refused.json()["detail"]
    assert client.get("/v1/suppressions", headers=AUTH).json()["total"] == 3


def test_only_an_admin_lifts_an_entry(client: TestClient) -> None:
    """Marketers keep the list (read, add, export); lifting an entry resumes mail to a person who unsubscribed,
    bounced or complained, so it is the admin's (issue 7: "list, add, remove (admin)")."""
    marketer = {"X-API-Key": make_key(client, Role.marketer)["key"]}
    added = client.post("/v1/suppressions", json={"address": "cy@example.org"}, headers=marketer)
    assert added.status_code == 201, added.text
    assert client.get("/v1/suppressions.csv", headers=marketer).status_code == 200
    refused = client.delete(f"/v1/suppressions/{added.json()['id']}", headers=marketer)
    assert refused.status_code == 403 and "admin" in refused.json()["detail"], refused.text
    assert client.get("/v1/suppressions?q=cy@", headers=AUTH).json()["total"] == 1
    assert client.delete(f"/v1/suppressions/{added.json()['id']}", headers=AUTH).status_code == 204


def test_bad_entries_get_a_4xx_that_says_what_to_fix(client: TestClient) -> None:
    cases = [
        ({}, "either address or domain"),
        ({"address": "a@example.com", "domain": "example.com"}, "either address or domain"),
        ({"address": "not an address"}, "address"),
        ({"address": "a@example.com\r\nBcc: b@example.com"}, "address"),
        ({"domain": "no spaces.com"}, "domain"),
        ({"domain": "localhost"}, "domain"),
        ({"address": "a@example.com", "reason": "erased"}, "reason"),
    ]
    for body, detail in cases:
        answer = client.post("/v1/suppressions", json=body, headers=AUTH)
        assert answer.status_code == 422 and detail in answer.json()["detail"], (body, answer.text)
    assert client.get("/v1/suppressions").status_code == 401
    assert client.get("/v1/suppressions?reason=bogus", headers=AUTH).status_code == 422
