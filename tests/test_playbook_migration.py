"""Playbook upgrades for running leads over HTTP (dev server + worker + API + SMTP + SQLite):
POST /v1/playbooks/{version}:migrate (dry run, refusal, apply) and GET /v1/playbooks/migrations/{id},
over 60 leads resting at three different journey steps and two leads in sales with a follow-up SLA.
"""

from __future__ import annotations

import asyncio
import copy
import os
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer

from payload_converter import data_converter
from privacy.history import decoded_history
from rules.model import LeadSnapshot
from runtime import with_lead_codec, workflow_runner
from settings import ROOT, Settings
from store import repo
from store.models import Lead, Touchpoint
from tests.test_integration import AUTH, dev_server, stack  # noqa: F401  (fixtures)
from workflows.lead import LeadWorkflow
from workflows.playbook_migration import PlaybookMigrationWorkflow

pytestmark = pytest.mark.integration
LEADS_PER_SEGMENT = 20
JOURNEY = "segments"


SEGMENTS_JOURNEY = """
- id: segments
  enroll_when: stage == "new" or stage == "mql"
  exit_when: stage == "sql"
  steps:
    - {id: welcome, type: send_email, template: welcome}
    - {id: pick, type: branch, condition: 'lead.segment == "a"', then: wait_a, else: pick_b}
    - {id: pick_b, type: branch, condition: 'lead.segment == "b"', then: wait_b, else: wait_c}
    - {id: wait_a, type: wait, duration: 30d, next: step_a}
    - {id: wait_b, type: wait, duration: 20d, next: step_b}
    - {id: wait_c, type: wait_for_event, condition: 'event.type == "email_click"', timeout: 10d, on_timeout: step_c}
    - {id: step_a, type: send_email, template: case_study, next: done}
    - {id: step_b, type: send_email, template: case_study, next: done}
    - {id: step_c, type: send_email, template: case_study}
    - {id: done, type: exit}
"""


def v1_document() -> dict[str, Any]:
    """The default playbook with one journey that leaves each segment resting at a different step."""
    doc = yaml.safe_load((ROOT / "playbooks" / "default.yaml").read_text(encoding="utf-8"))
    doc["fields"] = ["job_function", "segment"]
    doc["sla"] = {
        "policies": [
            {"id": "hot", "when": 'grade == "A"', "first_touch": "4h"},
            {"id": "standard", "first_touch": "24h"},
        ]
    }
    doc["journeys"] = yaml.safe_load(SEGMENTS_JOURNEY)
    return doc


def v2_document() -> dict[str, Any]:
    """v1 with step_b renamed, segment c's wait and mail gone, downloads worth more, one SLA policy."""
    doc = copy.deepcopy(v1_document())
    steps = doc["journeys"][0]["steps"]
    steps[2]["else"] = "step_b2"
    steps[4]["next"] = "step_b2"
    steps[:] = [s for s in steps if s["id"] not in ("wait_c", "step_c")]
    next(s for s in steps if s["id"] == "step_b")["id"] = "step_b2"
    doc["scoring"]["rules"][0]["points"] = 25  # whitepaper_download
    doc["sla"] = {"policies": [{"id": "standard", "first_touch": "24h"}]}
    return doc


async def publish(http: httpx.AsyncClient, doc: dict[str, Any], note: str) -> int:
    answer = await http.post("/v1/playbooks", json={"playbook": yaml.safe_dump(doc), "note": note}, headers=AUTH)
    assert answer.status_code == 201, answer.text
    return int(answer.json()["version"])


async def until(check, what: str, seconds: float = 90.0) -> Any:  # type: ignore[no-untyped-def]
    deadline = asyncio.get_running_loop().time() + seconds
    last = None
    while asyncio.get_running_loop().time() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(0.2)
    raise AssertionError(f"{what} never happened; last: {last}")


async def finished(http: httpx.AsyncClient, migration_id: str) -> dict[str, Any]:
    async def done() -> dict[str, Any] | None:
        answer = await http.get(f"/v1/playbooks/migrations/{migration_id}", headers=AUTH)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        return body if body["status"] == "completed" else None

    return await until(done, f"migration {migration_id} completing", 180.0)


async def views(http: httpx.AsyncClient, lead_ids: list[str]) -> dict[str, dict[str, Any]]:
    out = {}
    for lead_id in lead_ids:
        answer = await http.get(f"/v1/leads/{lead_id}", headers=AUTH)
        assert answer.status_code == 200, answer.text
        out[lead_id] = answer.json()
    return out


async def test_running_leads_move_to_a_new_playbook_version(
    monkeypatch: pytest.MonkeyPatch,
    stack: httpx.AsyncClient,  # noqa: F811
    dev_server: WorkflowEnvironment,  # noqa: F811
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    http = stack
    monkeypatch.setattr("api.deps.PLAYBOOK_CHECK_SECONDS", 0.0)  # new leads pin a publication at once
    monkeypatch.setattr("api.routers.playbook_migrations.PAGE_SIZE", 25)  # several pages, continue-as-new
    v1 = await publish(http, v1_document(), "segments")

    # 60 leads resting at three steps (a: before step_a, b: before step_b, c: waiting for a click), segment a
    # with a download (15 points); two A-grade leads in sales with the "hot" follow-up running.
    segments: dict[str, list[str]] = {"a": [], "b": [], "c": []}
    for i in range(LEADS_PER_SEGMENT):
        for segment, ids in segments.items():
            body = {"email": f"{segment}{i}@example.com", "fields": {"segment": segment}}
            created = await http.post("/v1/leads", json=body, headers=AUTH)
            assert created.status_code == 202, created.text
            ids.append(created.json()["lead_id"])
    for lead_id in segments["a"]:
        download = {"events": [{"id": f"dl-{lead_id}", "type": "download"}]}
        assert (await http.post(f"/v1/leads/{lead_id}/events", json=download, headers=AUTH)).status_code == 202
    hot = []
    for i in range(2):
        person = {"email": f"vp{i}@example.com", "title": "VP Sales", "company_size": 500, "country": "US"}
        hot.append((await http.post("/v1/leads", json=person, headers=AUTH)).json()["lead_id"])
        events = [{"id": f"hot-{i}-1", "type": "download"}, {"id": f"hot-{i}-2", "type": "webinar_attended"},
                  {"id": f"hot-{i}-3", "type": "page_view", "url": "https://example.com/pricing"}]  # fmt: skip
        assert (
            await http.post(f"/v1/leads/{hot[-1]}/events", json={"events": events}, headers=AUTH)
        ).status_code == 202
    everyone = [lead_id for ids in segments.values() for lead_id in ids] + hot

    async def all_projected() -> bool:
        async with sessions() as session:
            count = await session.scalar(
                select(func.count()).select_from(Lead).where(Lead.playbook_version == f"v{v1}", Lead.score >= 0)
            )
        return count == len(everyone)

    await until(all_projected, "every lead in the read model")

    async def settled() -> dict[str, dict[str, Any]] | None:
        seen = await views(http, everyone)
        ready = all(v["score"] == 15 for v in (seen[i] for i in segments["a"]))
        ready = ready and all(seen[i]["followup"] and seen[i]["followup"]["policy_id"] == "hot" for i in hot)
        return seen if ready else None

    before = await until(settled, "every lead at rest")

    async def events_stored() -> bool:
        # The dry run replays the events the store holds plus those the lead has not projected yet; one whose
        # projection is in flight at that moment is in neither (README: the apply never misses it). So the
        # dry run waits for the downloads to be stored, for its plans to be comparable with the apply's.
        async with sessions() as session:
            count = await session.scalar(
                select(func.count()).select_from(Touchpoint).where(Touchpoint.event_id.like("dl-%"))
            )
        return count == len(segments["a"])

    await until(events_stored, "every download in the store")
    for lead_id in segments["c"]:
        [run] = before[lead_id]["journeys"]
        assert run["waiting_for"] == "wait_c"

    v2 = await publish(http, v2_document(), "step_b renamed, segment c's wait gone")
    # A read-model row whose workflow is gone (never started here): skipped, never failed.
    ghost = "lead-" + "f" * 32
    async with sessions() as session:
        snap = LeadSnapshot(
            ghost, {"email": "ghost@example.com"}, "new", 0, None, None, None, None, None, f"v{v1}", None
        )
        await repo.project_lead(session, snap)

    # Unknown versions and bad maps are 4xx that say what to fix; steps leads wait at need a map.
    assert (await http.post("/v1/playbooks/999:migrate", json={}, headers=AUTH)).status_code == 404
    bad_map = await http.post(
        f"/v1/playbooks/{v2}:migrate", json={"step_map": {f"{JOURNEY}/step_b": f"{JOURNEY}/nowhere"}}, headers=AUTH
    )
    assert bad_map.status_code == 422 and 'no step "nowhere"' in bad_map.json()["detail"]
    refused = await http.post(f"/v1/playbooks/{v2}:migrate", json={}, headers=AUTH)
    assert refused.status_code == 422, refused.text
    assert {(u["journey"], u["step"]) for u in refused.json()["unmapped_steps"]} == {
        (JOURNEY, "step_b"),
        (JOURNEY, "wait_c"),
        (JOURNEY, "step_c"),
    }
    assert (await http.get("/v1/playbooks/migrations/playbook-migration-" + "0" * 32, headers=AUTH)).status_code == 404

    step_map = {f"{JOURNEY}/step_b": f"{JOURNEY}/step_b2", f"{JOURNEY}/wait_c": "exit", f"{JOURNEY}/step_c": "exit"}
    request = {"step_map": step_map, "recompute_score": True, "concurrency": 6}

    # The dry run lists what would change and changes nothing.
    started = await http.post(f"/v1/playbooks/{v2}:migrate", json=request, headers=AUTH)
    assert started.status_code == 202, started.text
    assert started.json()["dry_run"] is True and started.json()["leads_on_other_versions"] == {f"v{v1}": 63}
    dry = await finished(http, started.json()["migration_id"])
    assert dry["counts"] == {"planned": len(everyone), "skipped": 1} and dry["seen"] == len(everyone) + 1
    plans = {item["lead_id"]: item["plan"] for item in dry["leads"] if item["status"] == "planned"}
    assert len(plans) == len(everyone)
    a0, b0, c0 = segments["a"][0], segments["b"][0], segments["c"][0]
    assert plans[a0]["journeys"][0] | {"wait_until": None} == {
        "journey_id": JOURNEY, "from_step": "step_a", "to_journey": JOURNEY, "to_step": "step_a", "how": "same",
        "wait_until": None, "waiting_for_event": False,
    }  # fmt: skip
    assert (plans[a0]["score_before"], plans[a0]["score_after"]) == (15, 25)
    assert plans[b0]["journeys"][0]["to_step"] == "step_b2" and plans[b0]["journeys"][0]["how"] == "mapped"
    assert plans[c0]["journeys"][0]["how"] == "exited" and plans[c0]["journeys_ended"] == []
    assert "follow-up policy hot -> standard (due kept)" in plans[hot[0]]["changes"]
    unchanged = await views(http, everyone)
    assert {v["playbook_version"] for v in unchanged.values()} == {f"v{v1}"}

    # Apply: every lead switches at a safe point (between two inputs), keeps its position and remaining wait.
    # Segment b opens mail meanwhile: each open counts once, under whichever version is in force when it comes.
    applied = await http.post(f"/v1/playbooks/{v2}:migrate", json=request | {"dry_run": False}, headers=AUTH)
    assert applied.status_code == 202, applied.text
    migration_id = applied.json()["migration_id"]
    for n in range(2):
        for lead_id in segments["b"]:
            opened = {"events": [{"id": f"open-{n}-{lead_id}", "type": "email_open"}]}
            assert (await http.post(f"/v1/leads/{lead_id}/events", json=opened, headers=AUTH)).status_code == 202
    progress = await finished(http, migration_id)
    assert progress["counts"] == {"migrated": len(everyone), "skipped": 1}, progress["counts"]
    elapsed = datetime.fromisoformat(progress["finished_at"]) - datetime.fromisoformat(progress["started_at"])
    print(f"migrated {len(everyone)} leads (concurrency 6, pages of 25) in {elapsed.total_seconds():.1f} s")
    # The dry run and the apply gave the same answer (no lead moved in between but segment b's opens).
    for item in progress["leads"]:
        if item["status"] == "migrated" and item["lead_id"] not in segments["b"]:
            planned = plans[item["lead_id"]]
            for field in ("journeys", "stage_after", "score_after", "timers_after", "changes", "emails"):
                assert item["plan"][field] == planned[field], (item["lead_id"], field)
    after = await views(http, everyone)
    assert {v["playbook_version"] for v in after.values()} == {f"v{v2}"}
    journey_timer = f"journey:{JOURNEY}"
    for lead_id in segments["a"] + segments["b"]:
        [run] = after[lead_id]["journeys"]
        assert (
            run["status"] == "active"
            and after[lead_id]["timers"][journey_timer] == before[lead_id]["timers"][journey_timer]
        )
    v2_steps = [s["id"] for s in v2_document()["journeys"][0]["steps"]]
    assert {after[i]["journeys"][0]["step"] for i in segments["a"]} == {v2_steps.index("step_a")}
    assert {after[i]["journeys"][0]["step"] for i in segments["b"]} == {v2_steps.index("step_b2")}
    for lead_id in segments["c"]:
        [run] = after[lead_id]["journeys"]
        assert run["status"] == "exited" and journey_timer not in after[lead_id]["timers"]
    assert {after[i]["score"] for i in segments["a"]} == {25}
    assert {after[i]["score"] for i in segments["b"]} == {2}
    for view in after.values():  # the score stays the sum of its explained changes
        assert sum(c["points"] for c in view["recent_score_changes"]) == pytest.approx(view["score"], abs=0.5)
    assert after[a0]["recent_score_changes"][-1]["rule_id"] == "migration"
    for lead_id in hot:
        followup = after[lead_id]["followup"]
        assert followup["policy_id"] == "standard" and followup["due_at"] == before[lead_id]["followup"]["due_at"]

    async def store_caught_up() -> bool:
        async with sessions() as session:
            count = await session.scalar(
                select(func.count()).select_from(Lead).where(Lead.playbook_version == f"v{v2}")
            )
        return count == len(everyone)

    await until(store_caught_up, "the read model showing v2")

    # Asked again, nobody is left on another version.
    again = await http.post(f"/v1/playbooks/{v2}:migrate", json=request | {"dry_run": False}, headers=AUTH)
    assert again.json()["leads_on_other_versions"] == {f"v{v1}": 1}  # the ghost
    assert (await finished(http, again.json()["migration_id"]))["counts"] == {"skipped": 1}

    # Continue-as-new carries the new version (the dev server suggests it after 60 history events here).
    busy = segments["a"][1]
    for i in range(40):
        one = {"events": [{"id": f"busy-{i}", "type": "webinar_registered"}]}
        assert (await http.post(f"/v1/leads/{busy}/events", json=one, headers=AUTH)).status_code == 202

    async def continued() -> list[Any]:
        runs = [w async for w in dev_server.client.list_workflows(f"WorkflowId = '{busy}'")]
        return runs if len(runs) >= 2 else []

    runs = await until(continued, "the migrated lead continuing as new")
    view = (await views(http, [busy]))[busy]
    assert view["playbook_version"] == f"v{v2}" and view["journeys"][0]["step"] == v2_steps.index("step_a")
    assert view["timers"][journey_timer] == before[busy]["timers"][journey_timer]

    # The first run, which took the migration update, replays on today's code.
    first = next(w for w in runs if w.status.name == "CONTINUED_AS_NEW")
    sealed = await dev_server.client.get_workflow_handle(busy, run_id=first.run_id).fetch_history()
    codec = with_lead_codec(dev_server.client, settings, sessions).data_converter.payload_codec
    history = await decoded_history(sealed, codec)
    replayer = Replayer(
        workflows=[LeadWorkflow, PlaybookMigrationWorkflow],
        data_converter=data_converter,
        workflow_runner=workflow_runner(),
    )
    await replayer.replay_workflow(history)
    if os.environ.get("LEADFLOW_RECORD_HISTORIES"):
        (Path(__file__).parent / "histories" / "lead_playbook_migrated_v1.json").write_text(history.to_json())
    migration_history = await dev_server.client.get_workflow_handle(migration_id).fetch_history()
    await replayer.replay_workflow(migration_history)
    if os.environ.get("LEADFLOW_RECORD_HISTORIES"):
        (Path(__file__).parent / "histories" / "playbook_migration_v1.json").write_text(migration_history.to_json())
