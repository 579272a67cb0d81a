"""The sales hand-off over HTTP (dev server + worker + API + real SMTP + SQLite): a rep accepts through the API,
a manager reassigns, the next rep rejects through the signed link in their notification, the first rep
accepts from the follow-up queue page (CSRF-checked), the manager pauses and resumes nurture, then two
"lost" arrive at once: one wins, the other is refused. Who did what shows on the timeline, and the history
all this made replays on today's code within a deadline (tests/replay_guard.py)."""

from __future__ import annotations

import asyncio
import os
import re
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import WorkflowHistory, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment

from privacy.history import decoded_history
from rules.model import Actor, LeadUpserted, SalesChange
from runtime import build_worker, load_active_playbook, with_lead_codec
from settings import Settings
from tests.conftest import Inbox
from tests.replay_guard import replay_within_deadline
from tests.test_integration import AUTH, SEED_EVENTS, dev_server, eventually, stack  # noqa: F401  (fixtures)
from tests.test_lead_workflow import start_sql_lead, wait_view
from workflows.lead import LeadWorkflow
from workflows.payloads import LeadOptions, LeadStart

pytestmark = pytest.mark.integration
HISTORIES = Path(__file__).parent / "histories"
PASSWORD = "a long enough passphrase"
LEAD = {"email": "kai@example.com", "first_name": "Kai", "company": "Kai Works", "title": "Director",
        "company_size": 300, "country": "US"}  # fmt: skip


async def key(http: httpx.AsyncClient, role: str, **scope: Any) -> dict[str, str]:
    made = await http.post("/v1/admin/keys", json={"name": f"{role} {scope}", "role": role, **scope}, headers=AUTH)
    assert made.status_code == 201, made.text
    return {"X-API-Key": made.json()["key"]}


async def sign_in(http: httpx.AsyncClient, username: str) -> str:
    """A page session for ``username``; returns the session's CSRF token."""
    page = await http.get("/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
    answer = await http.post("/login", data={"username": username, "password": PASSWORD, "csrf_token": token})
    assert answer.status_code == 303, answer.text
    queue = await http.get("/queue")
    return re.search(r'name="csrf_token" value="([^"]+)"', queue.text).group(1)  # type: ignore[union-attr]


def awaiting(page: httpx.Response) -> str:
    """The queue page's "awaiting acceptance" table (the lead may sit in the overdue one too)."""
    assert page.status_code == 200, page.text
    return page.text.split('<table id="awaiting_acceptance">', 1)[1].split("</table>", 1)[0]


def link_path(message: Any, action: str) -> str:
    body = message.get_body(("plain",)).get_content()
    url = re.search(rf"(https?://\S+/sal/\S+\?action={action})", body).group(1)  # type: ignore[union-attr]
    parsed = urlparse(url)
    return f"{parsed.path}?{parsed.query}"


async def test_accept_reassign_reject_by_link_accept_from_the_queue_pause_and_two_lost_at_once(
    stack: httpx.AsyncClient,  # noqa: F811
    dev_server: WorkflowEnvironment,  # noqa: F811
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    smtp: tuple[Inbox, int],
    tmp_path: Path,
) -> None:
    http, (inbox, _) = stack, smtp
    created = await http.post("/v1/leads", json=LEAD, headers=AUTH)
    lead_id = created.json()["lead_id"]
    assert (await http.post(f"/v1/leads/{lead_id}/events", json=SEED_EVENTS, headers=AUTH)).status_code == 202
    view = await eventually(http, f"/v1/leads/{lead_id}", lambda v: v["owner"] is not None)
    first = view["owner"]["rep"]["id"]
    second = "rep-ben" if first == "rep-aiko" else "rep-aiko"
    assert view["acceptance"]["status"] == "pending" and view["acceptance"]["rep_id"] == first
    rep_first, rep_second = await key(http, "rep", rep_id=first), await key(http, "rep", rep_id=second)
    manager = await key(http, "manager", teams=["inside-sales"])
    await eventually(http, f"/v1/leads/{lead_id}/timeline", lambda t: t["lead"] and t["lead"]["owner_rep_id"])

    # The owner accepts through the API; the same again is a conflict, another rep may not touch the lead.
    accepted = await http.post(f"/v1/leads/{lead_id}/accept", json={"note": "on it"}, headers=rep_first)
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["acceptance"]["status"] == "accepted"
    again = await http.post(f"/v1/leads/{lead_id}/accept", headers=rep_first)
    assert again.status_code == 409 and "waits for acceptance" in again.json()["detail"]
    assert (await http.post(f"/v1/leads/{lead_id}/accept", headers=rep_second)).status_code == 403
    # A rep may not reassign; bad bodies are 422s that say what to fix.
    assert (
        await http.post(f"/v1/leads/{lead_id}/reassign", json={"team": "japan"}, headers=rep_first)
    ).status_code == 403
    for body, field in (({}, "rep_id or team"), ({"rep_id": "rep-nobody"}, "no active rep")):
        bad = await http.post(f"/v1/leads/{lead_id}/reassign", json=body, headers=manager)
        assert bad.status_code == 422 and field in bad.text

    # The manager hands the lead to the other rep, whose notice carries signed links.
    moved = await http.post(
        f"/v1/leads/{lead_id}/reassign", json={"rep_id": second, "note": "territory"}, headers=manager
    )
    assert moved.status_code == 200, moved.text
    await eventually(http, f"/v1/leads/{lead_id}", lambda v: v["owner"] and v["owner"]["rep"]["id"] == second)
    notice = (
        await inbox.wait_for(lambda m: m["X-Leadflow-Kind"] == "rep_new_lead" and second[4:] in m["X-Envelope-To"])
    )[0]
    reject = link_path(notice, "reject")
    page = await http.get(reject)  # a mail scanner's GET changes nothing
    assert page.status_code == 200 and "Reject this lead?" in page.text and "not_a_fit" in page.text
    assert (await http.get(f"/v1/leads/{lead_id}", headers=AUTH)).json()["acceptance"]["status"] == "pending"
    unexplained = await http.post(reject, data={"action": "reject", "reason": "other"})
    assert unexplained.status_code == 422 and "needs a note" in unexplained.text
    forged = await http.post(reject.replace("/sal/lead-", "/sal/lead-0"), data={"action": "reject"})
    assert forged.status_code == 404
    done = await http.post(reject, data={"action": "reject", "reason": "other", "note": "my sister's firm"})
    assert done.status_code == 200 and "Rejected" in done.text
    # Rerouted, excluding the rep who rejected: back to the first rep, awaiting acceptance again.
    view = await eventually(http, f"/v1/leads/{lead_id}", lambda v: v["owner"] and v["owner"]["rep"]["id"] == first)
    assert view["acceptance"]["status"] == "pending"
    stale = await http.get(reject)
    assert stale.status_code == 409 and "no longer current" in stale.text

    # The first rep accepts from the queue page: CSRF-checked, the same update, and the lead leaves the list.
    user = {"role": "rep", "rep_id": first, "password": PASSWORD}
    assert (await http.put(f"/v1/admin/users/{first}", json=user, headers=AUTH)).status_code == 200
    async with httpx.AsyncClient(base_url=str(http.base_url), timeout=20) as browser:
        csrf = await sign_in(browser, first)
        for _ in range(200):
            if f'data-lead="{lead_id}"' in awaiting(await browser.get("/queue")):
                break
            await asyncio.sleep(0.05)
        assert f'data-lead="{lead_id}"' in awaiting(await browser.get("/queue"))
        forged_form = await browser.post(f"/queue/{lead_id}/accept", data={"back": "/queue?"})
        assert forged_form.status_code == 403 and "CSRF" in forged_form.text
        posted = await browser.post(f"/queue/{lead_id}/accept", data={"csrf_token": csrf, "back": "/queue?"})
        assert posted.status_code == 303 and "answered=accept" in posted.headers["location"]
        for _ in range(200):
            if f'data-lead="{lead_id}"' not in awaiting(await browser.get("/queue")):
                break
            await asyncio.sleep(0.05)
        assert f'data-lead="{lead_id}"' not in awaiting(await browser.get("/queue"))

    # Nurture paused and resumed by hand; a second pause is a conflict.
    paused = await http.post(f"/v1/leads/{lead_id}/nurture/pause", json={"reason": "asked"}, headers=manager)
    assert paused.status_code == 200 and paused.json()["nurture_paused"]["by"].startswith("manager")
    assert (await http.post(f"/v1/leads/{lead_id}/nurture/pause", headers=manager)).status_code == 409
    resumed = await http.post(f"/v1/leads/{lead_id}/nurture/resume", headers=manager)
    assert resumed.status_code == 200 and resumed.json()["nurture_paused"] is None

    # Two "lost" at once: both pass validation, the first applied wins, the second is refused when its turn comes.
    bad = await http.post(f"/v1/leads/{lead_id}/lost", json={"reason": "bored"}, headers=rep_first)
    assert bad.status_code == 422 and "not one of" in bad.json()["detail"]
    lost = [
        http.post(f"/v1/leads/{lead_id}/lost", json={"reason": reason}, headers=who)
        for reason, who in (("competitor", rep_first), ("timing", manager))
    ]
    answers = await asyncio.gather(*lost)
    assert sorted(a.status_code for a in answers) == [200, 409], [a.text for a in answers]
    winner = next(a for a in answers if a.status_code == 200).json()
    assert winner["stage"] == "lost" and winner["outcome"]["kind"] == "lost"
    won = await http.post(f"/v1/leads/{lead_id}/won", json={"amount": "100.00", "currency": "USD"}, headers=manager)
    assert won.status_code == 409 and "already lost" in won.json()["detail"]

    # The timeline names who did each change (the callers' keys and login, never a body's name).
    timeline = await eventually(
        http,
        f"/v1/leads/{lead_id}/timeline",
        # The lead row and its touchpoints are read one after the other: wait for both.
        lambda t: (
            {"sales.accept", "sales.reassign", "sales.reject", "sales.lost"} <= {p["type"] for p in t["touchpoints"]}
            and t["lead"]["outcome"] == "lost"
        ),
    )
    by_type = {p["type"]: p for p in timeline["touchpoints"] if p["type"].startswith("sales.")}
    assert by_type["sales.reject"]["properties"]["by_kind"] == "link"
    assert by_type["sales.reassign"]["name"].startswith("manager")
    assert timeline["lead"]["lost_reason"] in ("competitor", "timing")

    # The histories all this made (the dev server here suggests continue-as-new after 60 events, so a few runs)
    # replay on today's code within a deadline: a hang fails, never freezes the suite.
    codec = with_lead_codec(dev_server.client, settings, sessions).data_converter.payload_codec
    runs = [await decoded_history(run, codec) for run in await run_histories(dev_server.client, lead_id)]
    updates = [sum(1 for e in run.events if e.HasField("workflow_execution_update_accepted_event_attributes"))
               for run in runs]  # fmt: skip
    # accept, reassign, reject, accept, pause, resume, lost, and the second lost when it passed validation before
    # the first applied (validator refusals leave no event).
    assert sum(updates) >= 7, updates
    for number, run in enumerate(runs):
        kept = tmp_path / f"run_{number}.json"
        kept.write_text(run.to_json())
        replay_within_deadline(kept)
    if os.environ.get("LEADFLOW_RECORD_HISTORIES"):  # the run with the most updates joins the replay tests
        richest = runs[updates.index(max(updates))]
        (HISTORIES / "lead_sales_handoff_v1.json").write_text(richest.to_json())


async def run_histories(client: Any, workflow_id: str) -> list[WorkflowHistory]:
    """Every run of a workflow, oldest first (each run's start names the run it continues)."""
    histories: list[WorkflowHistory] = []
    run_id: str | None = None
    while True:
        history = await client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()
        histories.insert(0, history)
        started = history.events[0].workflow_execution_started_event_attributes
        if not started.continued_execution_run_id:
            return histories
        run_id = started.continued_execution_run_id


async def test_an_update_nobody_answers_is_a_503_with_retry_after_not_a_500(
    stack: httpx.AsyncClient,  # noqa: F811
    dev_server: WorkflowEnvironment,  # noqa: F811
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A lead whose workflow no worker runs (a stopped or overloaded worker): the update times out."""
    monkeypatch.setattr("api.routers.leads.UPDATE_TIMEOUT", __import__("datetime").timedelta(seconds=2))
    lead_id = "lead-" + uuid.uuid4().hex
    client = with_lead_codec(dev_server.client, settings, sessions)
    start = LeadStart(lead_id, load_active_playbook(settings).bundle, LeadOptions(search_attributes=False))
    await client.start_workflow(
        LeadWorkflow.run, start, id=lead_id, task_queue=f"nobody-{uuid.uuid4().hex[:8]}",
        start_signal="upsert", start_signal_args=[LeadUpserted({"email": "stuck@example.com"})],
    )  # fmt: skip
    for path, body in ((f"/v1/leads/{lead_id}/touches", {"kind": "call"}), (f"/v1/leads/{lead_id}/accept", {})):
        answer = await stack.post(path, json=body, headers=AUTH)
        assert answer.status_code == 503, answer.text
        assert int(answer.headers["retry-after"]) > 0 and "did not answer" in answer.json()["detail"]


def test_the_recorded_sales_history_replays_within_a_deadline() -> None:
    path = HISTORIES / "lead_sales_handoff_v1.json"
    if not path.exists():
        pytest.skip("record it with LEADFLOW_RECORD_HISTORIES=1")
    WorkflowHistory.from_json(path.stem, path.read_text())  # well formed
    replay_within_deadline(path)


async def test_two_lost_updates_waiting_for_a_cold_worker_both_pass_validation_and_one_is_refused(
    dev_server: WorkflowEnvironment,  # noqa: F811
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    tmp_path: Path,
) -> None:
    """The shape the lost branch hung on: reassign, pause, resume, then two "lost" at once, here delivered to a
    worker starting cold (both in its first activation, so both validators pass before either applies:
    temporalio/sdk-python#1591's case). One wins, the other is refused when applied; the history replays."""
    settings = settings.model_copy(update={"task_queue": f"tq-{uuid.uuid4().hex[:8]}"})
    client = with_lead_codec(dev_server.client, settings, sessions)
    manager = Actor("key", "ak_mgr", "manager", "mina's key")

    def change(action: str, **fields: Any) -> SalesChange:
        return SalesChange(f"c-{uuid.uuid4().hex}", action, manager, datetime.now(UTC), **fields)  # type: ignore[arg-type]

    async with build_worker(client, settings, sessions):
        handle = await start_sql_lead(client, settings, f"cold-{uuid.uuid4().hex[:6]}@example.com")
        view = await wait_view(handle, lambda v: v.owner is not None)
        other = "rep-ben" if view.owner.rep.id == "rep-aiko" else "rep-aiko"
        await handle.execute_update(LeadWorkflow.sales_change, change("reassign", rep_id=other, team="inside-sales"))
        await wait_view(handle, lambda v: v.owner is not None and v.owner.rep.id == other)
        await handle.execute_update(LeadWorkflow.sales_change, change("pause_nurture"))
        await handle.execute_update(LeadWorkflow.sales_change, change("resume_nurture"))
    # No worker: both updates wait at the server, then reach a fresh worker together.
    lost = [
        asyncio.create_task(handle.execute_update(LeadWorkflow.sales_change, change("lost", reason=reason)))
        for reason in ("competitor", "timing")
    ]
    await asyncio.sleep(1.0)
    async with build_worker(client, settings, sessions):
        answers = await asyncio.wait_for(asyncio.gather(*lost, return_exceptions=True), 60)
        final = await handle.query(LeadWorkflow.view)
    won = [a for a in answers if not isinstance(a, BaseException)]
    refused = [a for a in answers if isinstance(a, WorkflowUpdateFailedError)]
    assert len(won) == 1 and len(refused) == 1, answers
    assert isinstance(refused[0].cause, ApplicationError) and refused[0].cause.type == "SalesConflict"
    assert "already lost" in refused[0].cause.message
    assert final.stage == "lost" and final.outcome is not None and final.outcome.reason == won[0].outcome.reason

    codec = client.data_converter.payload_codec
    runs = [await decoded_history(run, codec) for run in await run_histories(dev_server.client, handle.id)]
    for number, run in enumerate(runs):
        kept = tmp_path / f"cold_{number}.json"
        kept.write_text(run.to_json())
        replay_within_deadline(kept)
    if os.environ.get("LEADFLOW_RECORD_HISTORIES"):
        (HISTORIES / "lead_sales_lost_twice_cold_v1.json").write_text(runs[-1].to_json())
