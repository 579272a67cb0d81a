"""Merges and email changes end to end: dev server + worker + API + real SMTP + SQLite (and PostgreSQL).

Updates run on the dev server (the time-skipping server hangs on updates, DESIGN's pitfalls)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.testing import WorkflowEnvironment

from runtime import with_lead_codec
from settings import Settings
from store import assignments, lead_aliases, privacy, repo
from tests.conftest import Inbox
from tests.test_integration import AUTH, SEED_EVENTS, dev_server, eventually, stack  # noqa: F401  (fixtures)
from workflows.lead import LeadWorkflow
from workflows.payloads import LeadView

pytestmark = pytest.mark.integration


async def post_lead(http: httpx.AsyncClient, **attributes: Any) -> str:
    created = await http.post("/v1/leads", json=attributes, headers=AUTH)
    assert created.status_code == 202, created.text
    lead_id: str = created.json()["lead_id"]
    await eventually(http, f"/v1/leads/{lead_id}", lambda v: v["exists"])
    return lead_id


@pytest.mark.parametrize("database_url", ["sqlite", "postgres"], indirect=True)
async def test_a_duplicate_merges_into_the_survivor_and_its_traffic_follows(
    stack: httpx.AsyncClient,  # noqa: F811
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    dev_server: WorkflowEnvironment,  # noqa: F811
    smtp: tuple[Inbox, int],
) -> None:
    http, (inbox, _) = stack, smtp
    ann = await post_lead(http, email="ann@example.com", first_name="Ann", title="Engineer")
    old = await post_lead(
        http, email="ann.old@example.com", company="Acme", title="VP Marketing", company_size=500, phone="+1 555 0100"
    )
    # The old record went to sales (owner rep-aiko, a follow-up that goes overdue) and unsubscribed.
    assert (await http.post(f"/v1/leads/{old}/events", json=SEED_EVENTS, headers=AUTH)).status_code == 202
    before = await eventually(http, f"/v1/leads/{old}", lambda v: v["owner"] is not None)
    rep = before["owner"]["rep"]["id"]
    opted_out = await http.post(f"/v1/leads/{old}/consent", json={"status": "opted_out"}, headers=AUTH)
    assert opted_out.status_code == 200, opted_out.text
    await http.post(f"/v1/leads/{ann}/events", json={"events": [{"id": "a-1", "type": "download"}]}, headers=AUTH)
    ann_before = await eventually(http, f"/v1/leads/{ann}", lambda v: v["score"] > 0)

    merged = await http.post(f"/v1/leads/{ann}:merge", json={"duplicate_id": old, "note": "same person"}, headers=AUTH)
    assert merged.status_code == 200, merged.text
    view = merged.json()
    assert view["lead_id"] == ann and view["merged_from"] == [old]
    assert view["score"] == ann_before["score"] + before["score"]
    assert view["score"] == round(sum(c["points"] for c in view["recent_score_changes"]))
    assert view["consent"] == "opted_out"  # the stricter wins
    assert view["attributes"]["email"] == "ann@example.com" and view["attributes"]["company"] == "Acme"
    assert view["stage"] == "sql"
    # The survivor had no owner: it asks for the duplicate's rep by name, whose capacity was released first.
    owned = await eventually(http, f"/v1/leads/{ann}", lambda v: v["owner"] is not None)
    assert owned["owner"]["rep"]["id"] == rep

    # The duplicate's workflow ended pointing at the survivor; its id and email now reach the survivor.
    client = with_lead_codec(dev_server.client, settings, sessions)
    closed: LeadView = await client.get_workflow_handle(old).query(LeadWorkflow.view)
    assert closed.merged_into == ann and closed.owner is None and closed.followup is None
    assert (await http.get(f"/v1/leads/{old}", headers=AUTH)).json()["lead_id"] == ann
    posted = await http.post(
        f"/v1/leads/{old}/events", json={"events": [{"id": "o-9", "type": "download"}]}, headers=AUTH
    )
    assert posted.status_code == 202 and posted.json()["accepted"] == 1, posted.text
    tracked = await http.post(
        "/v1/events",
        json={"events": [{"email": "ann.old@example.com", "id": "o-10", "type": "download"}]},
        headers=AUTH,
    )
    assert tracked.json()["leads"] == [ann]
    again = await http.post("/v1/leads", json={"email": "Ann.Old@example.com", "title": "VP Sales"}, headers=AUTH)
    assert again.json()["lead_id"] == ann
    later = await eventually(http, f"/v1/leads/{ann}", lambda v: v["attributes"].get("title") == "VP Sales")
    assert later["attributes"]["email"] == "ann@example.com"  # an old address never takes the lead's over
    assert {c["event_id"] for c in later["recent_score_changes"]} >= {"o-9", "o-10"}
    touched = await http.post(f"/v1/leads/{old}/touches", json={"kind": "call", "rep_id": rep}, headers=AUTH)
    assert touched.status_code == 200 and touched.json()["lead_id"] == ann

    # The store: the duplicate's assignment closed and its follow-up cancelled; one timeline.
    async with sessions() as session:
        assert await assignments.list_assignments(session, lead_id=old, open_only=True) == []
        followups = await repo.list_followups(session, status=None, limit=50, offset=0)
        assert {f["status"] for f in followups if f["lead_id"] == old} == {"cancelled"}
        assert await lead_aliases.resolve(session, [old]) == {old: ann}
    timeline = (await http.get(f"/v1/leads/{old}/timeline", headers=AUTH)).json()
    assert timeline["lead"]["id"] == ann and {"ev-1", "ev-3", "a-1"} <= {t["event_id"] for t in timeline["touchpoints"]}
    assert inbox.to("ann@example.com")  # the survivor's own welcome went out before the merge

    # Refusals say what to fix.
    itself = await http.post(f"/v1/leads/{ann}:merge", json={"duplicate_id": ann}, headers=AUTH)
    assert itself.status_code == 422 and "itself" in itself.json()["detail"]
    twice = await http.post(f"/v1/leads/{ann}:merge", json={"duplicate_id": old}, headers=AUTH)
    assert twice.status_code == 409 and "already merged" in twice.json()["detail"]
    into_merged = await http.post(f"/v1/leads/{old}:merge", json={"duplicate_id": ann}, headers=AUTH)
    assert into_merged.status_code == 409
    unknown = await http.post(f"/v1/leads/{ann}:merge", json={"duplicate_id": f"lead-{'0' * 32}"}, headers=AUTH)
    assert unknown.status_code == 404 and "no lead" in unknown.json()["detail"]
    no_survivor = await http.post(f"/v1/leads/lead-{'1' * 32}:merge", json={"duplicate_id": ann}, headers=AUTH)
    assert no_survivor.status_code == 404, no_survivor.text
    bad = await http.post(f"/v1/leads/{ann}:merge", json={"duplicate_id": "ann"}, headers=AUTH)
    assert bad.status_code == 422 and "duplicate_id" in bad.text
    gone = await post_lead(http, email="gone@example.com")
    assert (await http.delete(f"/v1/leads/{gone}", headers=AUTH)).status_code == 200
    erased = await http.post(f"/v1/leads/{ann}:merge", json={"duplicate_id": gone}, headers=AUTH)
    assert erased.status_code == 410, erased.text

    # Erasing the survivor erases the person: the merged duplicate's key and address go too.
    assert (await http.delete(f"/v1/leads/{ann}", headers=AUTH)).status_code == 200
    async with sessions() as session:
        duplicate_key = await privacy.get_lead_key(session, old)
        assert duplicate_key is not None and duplicate_key.erased
        assert await privacy.lead_email(session, old) is None


async def test_an_email_change_keeps_one_lead_and_the_old_address_still_reaches_it(
    stack: httpx.AsyncClient,  # noqa: F811
) -> None:
    http = stack
    bo = await post_lead(http, email="bo@example.com", first_name="Bo")
    other = await post_lead(http, email="bo.other@example.com")

    changed = await http.patch(
        f"/v1/leads/{bo}", json={"email": "bo@newjob.example", "company": "NewJob"}, headers=AUTH
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["attributes"]["email"] == "bo@newjob.example" and changed.json()["lead_id"] == bo
    # The new address and the old one both reach the same lead; neither changes its address back.
    for email in ("bo@newjob.example", "bo@example.com"):
        answer = await http.post("/v1/leads", json={"email": email, "title": f"via {email}"}, headers=AUTH)
        assert answer.json()["lead_id"] == bo
        view = await eventually(http, f"/v1/leads/{bo}", lambda v, e=email: v["attributes"].get("title") == f"via {e}")
        assert view["attributes"]["email"] == "bo@newjob.example"
    tracked = await http.post(
        "/v1/events", json={"events": [{"email": "bo@newjob.example", "type": "download"}]}, headers=AUTH
    )
    assert tracked.json()["leads"] == [bo]

    # An address another lead holds: 409 naming the way to one lead.
    taken = await http.patch(f"/v1/leads/{bo}", json={"email": "bo.other@example.com"}, headers=AUTH)
    assert taken.status_code == 409 and other in taken.json()["detail"] and ":merge" in taken.json()["detail"]
    unknown = await http.patch(f"/v1/leads/lead-{'2' * 32}", json={"email": "x@example.com"}, headers=AUTH)
    assert unknown.status_code == 404
    invalid = await http.patch(f"/v1/leads/{bo}", json={"email": "not-an-email"}, headers=AUTH)
    assert invalid.status_code == 422 and "email" in invalid.text
