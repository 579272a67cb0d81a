"""Every write through the API or the pages is recorded: who, what (route, target, a summary), when, from
where; never a secret or a whole address. (Before issue 11 nothing recorded who changed a team or a
playbook: each test here failed then.)"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from typing import Any

import pytest

from rules.access import Role
from tests.access_fixtures import ADMIN, Api, make_key, offline_api

TEAM = {"name": "Field Sales", "manager_name": "Mina", "manager_email": "mina.manager@example.com",
        "reps": [{"id": "rep-zoe", "name": "Zoe Park", "email": "zoe.park@example.com"}]}  # fmt: skip


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    yield from offline_api(tmp_path_factory.mktemp("audit"))


def entries(api: Api, query: str = "") -> list[dict[str, Any]]:
    answer = api.client.get(f"/v1/audit{query}", headers=ADMIN)
    assert answer.status_code == 200, answer.text
    return answer.json()["items"]


def test_a_team_change_is_recorded_with_who_what_when_and_where(api: Api) -> None:
    assert api.client.put("/v1/teams/field", json=TEAM, headers=ADMIN).status_code == 200
    entry = entries(api, "?route=PUT /v1/teams")[0]
    assert entry["actor_id"] == "admin-key" and entry["actor_role"] == "admin"
    assert entry["method"] == "PUT" and entry["route"] == "/v1/teams/{team_key}"
    assert entry["target"] == "team_key=field"
    assert entry["summary"] == "name=Field Sales, manager_name, manager_email, reps[1]"
    assert entry["status"] == 200 and entry["client_ip"] == "testclient" and entry["at"]
    assert "mina.manager@example.com" not in str(entry) and "Mina" not in str(entry)


def test_a_playbook_publish_by_a_marketer_names_the_key(api: Api) -> None:
    marketer = api.as_role(Role.marketer)
    api.client.post("/v1/playbooks", json={"playbook": "name: x", "note": "try"}, headers=marketer)
    entry = entries(api, f"?actor={api.key_ids[Role.marketer]}")[0]
    assert entry["route"] == "/v1/playbooks" and entry["actor_kind"] == "key"
    assert entry["summary"] == "playbook, note" and entry["status"] == 422


def test_refused_writes_are_recorded_too(api: Api) -> None:
    tracking = api.as_role(Role.tracking)
    assert api.client.post("/v1/playbooks", json={"playbook": "x"}, headers=tracking).status_code == 403
    entry = entries(api, f"?actor={api.key_ids[Role.tracking]}&status_min=400")[0]
    assert entry["status"] == 403 and entry["actor_role"] == "tracking"


def test_no_secret_and_no_whole_address_is_kept(api: Api) -> None:
    created = make_key(api.client, Role.marketer, "for the audit")
    api.client.post("/v1/suppressions", json={"address": "ann.lee@example.com"}, headers=ADMIN)
    api.client.put(
        "/v1/admin/users/ann.lee@example.com",
        json={"role": "marketer", "password": "correct horse battery"},
        headers=ADMIN,
    )
    everything = str(entries(api, "?limit=1000"))
    assert created["key"] not in everything
    assert "correct horse battery" not in everything
    assert "ann.lee@example.com" not in everything and "a***@example.com" in everything
    key_entry = entries(api, "?route=POST /v1/admin/keys")[0]
    assert key_entry["target"] == f"id={created['id']}"  # the id from the answer, never the key beside it


def test_reads_are_not_recorded_but_exports_are(api: Api) -> None:
    before = api.client.get("/v1/audit?limit=1", headers=ADMIN).json()["total"]
    api.client.get("/v1/teams", headers=ADMIN)
    api.client.get("/v1/followups", headers=api.as_role(Role.rep))
    assert api.client.get("/v1/audit?limit=1", headers=ADMIN).json()["total"] == before
    assert api.client.get("/v1/leads.csv?stage=sql", headers=api.as_role(Role.manager)).status_code == 200
    entry = entries(api, "?limit=1")[0]
    assert (entry["method"], entry["route"], entry["summary"]) == ("GET", "/v1/leads.csv", "export: stage=sql")
    assert entry["actor_id"] == api.key_ids[Role.manager]


def test_the_log_is_for_admins_and_exports_as_csv(api: Api) -> None:
    assert api.client.get("/v1/audit", headers=api.as_role(Role.manager)).status_code == 403
    answer = api.client.get("/v1/audit.csv?route=/v1/teams", headers=ADMIN)
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(answer.text)))
    assert rows and rows[0]["route"] == "/v1/teams/{team_key}" and rows[0]["actor_id"] == "admin-key"
    assert list(rows[0])[:3] == ["id", "at", "actor_kind"]


def test_accepted_tracking_events_are_touchpoints_not_audit_entries(api: Api) -> None:
    """Refused event posts are recorded; accepted ones are the lead's touchpoints (api/audit.py)."""
    marketer = api.as_role(Role.marketer)
    body = {"events": [{"type": "page_view", "email": "ann@example.com"}]}
    assert api.client.post("/v1/events", json=body, headers=marketer).status_code == 403
    assert entries(api, f"?actor={api.key_ids[Role.marketer]}&route=/v1/events")[0]["status"] == 403


async def test_the_middleware_skips_accepted_events_only(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The middleware alone, around a stand-in app answering as the event route would (no Temporal here)."""
    from types import SimpleNamespace

    from api.audit import AuditMiddleware
    from api.roles import PRINCIPAL
    from rules.access import Principal
    from store.db import make_engine, make_sessionmaker, run_migrations

    url = f"sqlite:///{tmp_path / 'a.db'}"
    run_migrations(url)
    engine = make_engine(url)
    sessions = make_sessionmaker(engine)
    tracker = Principal("key", "ak_track", "site", Role.tracking)

    async def post(status: int) -> None:
        async def app(scope, receive, send):  # type: ignore[no-untyped-def]
            scope[PRINCIPAL] = tracker
            scope["route"] = SimpleNamespace(path="/v1/events")
            await receive()
            await send({"type": "http.response.start", "status": status, "headers": []})
            await send({"type": "http.response.body", "body": b"{}"})

        async def receive():  # type: ignore[no-untyped-def]
            return {"type": "http.request", "body": b'{"events": []}', "more_body": False}

        async def send(message):  # type: ignore[no-untyped-def]
            return None

        holder = SimpleNamespace(state=SimpleNamespace(leadflow=SimpleNamespace(sessions=sessions)))
        scope = {"type": "http", "method": "POST", "path": "/v1/events", "headers": [], "app": holder,
                 "client": ("10.0.0.9", 1)}  # fmt: skip
        await AuditMiddleware(app)(scope, receive, send)

    from store import audit as audit_store

    await post(202)
    await post(422)
    async with sessions() as session:
        total, items = await audit_store.list_entries(session, audit_store.AuditFilter(), limit=10, offset=0)
    await engine.dispose()
    assert total == 1 and items[0]["status"] == 422 and items[0]["client_ip"] == "10.0.0.9"
