"""Every route declares its roles, and the declaration is what the server enforces: every operation of the
OpenAPI spec (and the pages outside it) is called with a key of every role and with none, over HTTP.
Keys are shown once, stored hashed, expire and are revoked."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi import APIRouter
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

from api.main import create_app
from api.roles import declared_routes
from rules.access import Role
from tests.access_fixtures import ADMIN, LEADS, Api, make_key, offline_api
from tests.test_robustness import PATH_VALUES, offline_settings

R = Role
PUBLIC = "public"
# The roles each route admits besides admin: the policy of issue 11, written out independently of the code
# so that a changed declaration shows up here. A route missing from this table must still declare its roles.
EXPECTED: dict[tuple[str, str], frozenset[Role] | str] = {
    ("POST", "/v1/leads"): frozenset({R.tracking, R.manager, R.marketer}),
    ("GET", "/v1/leads/{lead_id}"): frozenset({R.rep, R.manager, R.marketer}),
    ("GET", "/v1/leads/{lead_id}/timeline"): frozenset({R.rep, R.manager, R.marketer}),
    ("POST", "/v1/leads/{lead_id}/events"): frozenset({R.tracking}),
    ("POST", "/v1/leads/{lead_id}/touches"): frozenset({R.rep, R.manager}),
    ("POST", "/v1/leads/{lead_id}/consent"): frozenset({R.rep, R.manager, R.marketer}),
    **{("POST", f"/v1/leads/{{lead_id}}/{action}"): frozenset({R.rep, R.manager})
       for action in ("accept", "reject", "stage", "won", "lost", "disqualify", "nurture/pause", "nurture/resume")},
    ("POST", "/v1/leads/{lead_id}/reassign"): frozenset({R.manager}),
    ("POST", "/v1/leads/{lead_id}:merge"): frozenset({R.manager, R.marketer}),
    ("PATCH", "/v1/leads/{lead_id}"): frozenset({R.manager, R.marketer}),
    ("DELETE", "/v1/leads/{lead_id}"): frozenset({R.admin}),
    ("GET", "/v1/leads.csv"): frozenset({R.rep, R.manager, R.marketer}),
    ("POST", "/v1/events"): frozenset({R.tracking}),
    ("POST", "/v1/imports"): frozenset({R.marketer}),
    ("GET", "/v1/imports/{import_id}"): frozenset({R.marketer}),
    ("POST", "/v1/imports/{import_id}/resume"): frozenset({R.marketer}),
    ("GET", "/v1/imports/{import_id}/report.csv"): frozenset({R.marketer}),
    ("GET", "/v1/followups"): frozenset({R.rep, R.manager}),
    ("GET", "/v1/followups.csv"): frozenset({R.rep, R.manager}),
    ("GET", "/v1/teams"): frozenset({R.manager}),
    ("PUT", "/v1/teams/{team_key}"): frozenset({R.admin}),
    ("PUT", "/v1/reps/{rep_id}/availability"): frozenset({R.manager}),
    **{
        (method, path): frozenset({R.marketer})
        for method, path in [
            ("POST", "/v1/playbooks:backtest"), ("GET", "/v1/playbook"), ("POST", "/v1/playbooks"),
            ("GET", "/v1/playbooks"), ("GET", "/v1/playbooks/{version}"), ("GET", "/v1/playbooks/{old}/diff/{new}"),
            ("POST", "/v1/playbooks:validate"), ("POST", "/v1/playbooks:simulate"), ("GET", "/v1/templates"),
            ("POST", "/v1/templates/{name}:preview"), ("GET", "/v1/suppressions"), ("POST", "/v1/suppressions"),
            ("GET", "/v1/suppressions.csv"), ("PUT", "/v1/costs"),
            ("PUT", "/v1/costs.csv"), ("GET", "/v1/costs.csv"), ("GET", "/v1/costs"), ("DELETE", "/v1/costs/{cost_id}"),
            ("POST", "/v1/playbooks/{version}:migrate"), ("GET", "/v1/playbooks/migrations/{migration_id}"),
        ]
    },
    **{
        ("GET", f"/v1/reports/{name}{suffix}"): frozenset({R.manager, R.marketer})
        for name in ("sources", "attribution", "funnel", "time-in-stage", "velocity", "sla", "source-health", "mix",
                     "emails", "outcomes")
        for suffix in ("", ".csv")
    },
    ("GET", "/dashboard"): frozenset({R.manager, R.marketer}),
    # The pages (api/routers/pages_*.py).
    ("GET", "/queue"): frozenset({R.rep, R.manager}),
    ("POST", "/queue/{lead_id}/touch"): frozenset({R.rep, R.manager}),
    ("POST", "/queue/{lead_id}/accept"): frozenset({R.rep, R.manager}),
    ("POST", "/queue/{lead_id}/reject"): frozenset({R.rep, R.manager}),
    ("GET", "/leads"): frozenset({R.rep, R.manager, R.marketer}),
    ("GET", "/leads/{lead_id}"): frozenset({R.rep, R.manager, R.marketer}),
    ("GET", "/kpi"): frozenset({R.manager, R.marketer}),
    ("GET", "/workspace"): frozenset({R.marketer}),
    ("POST", "/workspace"): frozenset({R.marketer}),
    ("POST", "/logout"): frozenset(Role),
    ("GET", "/v1/me"): frozenset(Role),
    **{
        (method, path): frozenset({R.admin})
        for method, path in [
            ("POST", "/v1/admin/keys"), ("GET", "/v1/admin/keys"), ("DELETE", "/v1/admin/keys/{key_id}"),
            ("PUT", "/v1/admin/users/{username}"), ("GET", "/v1/admin/users"), ("DELETE", "/v1/admin/users/{username}"),
            ("GET", "/v1/audit"), ("GET", "/v1/audit.csv"), ("POST", "/v1/admin/write-keys"),
            ("GET", "/v1/admin/write-keys"), ("DELETE", "/v1/admin/write-keys/{key_id}"),
            ("PUT", "/v1/admin/forms/{form_id}"), ("GET", "/v1/admin/forms"), ("DELETE", "/v1/admin/forms/{form_id}"),
            ("PUT", "/v1/admin/webhooks/{source}"), ("GET", "/v1/admin/webhooks"),
            ("DELETE", "/v1/admin/webhooks/{source}"), ("DELETE", "/v1/suppressions/{entry_id}"),
        ]
    },
    **{
        (method, path): PUBLIC
        for method, path in [
            ("GET", "/health/live"), ("GET", "/health/ready"), ("GET", "/login"), ("POST", "/login"),
            ("GET", "/metrics"), ("POST", "/v1/email-events"), ("POST", "/v1/forms/{form_id}"),
            ("POST", "/v1/webhooks/{source}"), ("GET", "/unsubscribe/{token}"), ("POST", "/unsubscribe/{token}"),
            ("GET", "/sal/{token}"), ("POST", "/sal/{token}"),
            ("GET", "/t/c/{token}"), ("HEAD", "/t/c/{token}"), ("GET", "/t/o/{name}"), ("HEAD", "/t/o/{name}"),
            *(("POST", f"{prefix}/{kind}") for prefix in ("/v1", "/v1/segment")
               for kind in ("track", "page", "screen", "identify", "group", "alias", "batch")),
        ]
    },
}  # fmt: skip
CONCRETE = {**{name: values[0] for name, values in PATH_VALUES.items()}, "lead_id": LEADS[0][0], "token": "x",
            "import_id": "imp_00000000", "entry_id": "1", "cost_id": "1", "key_id": "ak_00000000",
            "username": "nobody"}  # fmt: skip


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    yield from offline_api(tmp_path_factory.mktemp("roles"))


def concrete(path: str) -> str:
    for name, value in CONCRETE.items():
        path = path.replace("{" + name + "}", value)
    return path


def test_every_route_declares_who_may_call_it(api: Api) -> None:
    """Default deny: a route without allow(...) or public(...) fails here (and admits only admin)."""
    undeclared = [(m, p) for m, p, d in declared_routes(api.client.app) if d is None]
    assert undeclared == [], f"declare roles on these routes (api/roles.py allow/public): {undeclared}"


def test_declarations_match_the_policy(api: Api) -> None:
    declared = {(m, p): (PUBLIC if d.public else d.roles) for m, p, d in declared_routes(api.client.app) if d}
    differs = {op: (declared[op], want) for op, want in EXPECTED.items() if op in declared and declared[op] != want}
    assert differs == {}
    # Every operation of the spec and every page is in the walk below.
    spec = api.client.get("/openapi.json").json()
    assert {(m.upper(), p) for p, ops in spec["paths"].items() for m in ops} <= set(declared)


def _detail(answer: Any) -> str:
    if not answer.headers.get("content-type", "").startswith("application/json"):
        return ""
    parsed = answer.json()
    return str(parsed.get("detail", "")) if isinstance(parsed, dict) else ""


def test_every_route_with_every_role_over_http(api: Api) -> None:
    """Denied: 403 naming the roles that may; allowed: anything but 401/that 403 (Temporal is offline here,
    so an allowed call may well answer 503 or 422: what matters is that the role check let it through)."""
    wrong = []
    for method, path, declaration in declared_routes(api.client.app):
        if declaration is None or declaration.public or method == "HEAD":
            continue
        url = concrete(path)
        body = {} if method in ("POST", "PUT") else None
        for role in Role:
            answer = api.client.request(method, url, json=body, headers=api.as_role(role))
            detail = _detail(answer)
            role_denied = answer.status_code == 403 and "needs a key or login with the role" in str(detail)
            if role is R.admin or role in declaration.roles:
                if answer.status_code == 401 or role_denied:
                    wrong.append((method, path, role.value, "allowed but got", answer.status_code, detail))
            else:
                named = all(r.value in detail for r in declaration.roles)
                if not role_denied or not named or f"yours: {role.value}" not in detail:
                    wrong.append((method, path, role.value, "denied but got", answer.status_code, detail))
        anonymous = api.client.request(method, url, json=body)
        if anonymous.status_code != 401:
            wrong.append((method, path, "no key", "got", anonymous.status_code, anonymous.text[:100]))
    assert wrong == []


def test_a_route_without_a_declaration_admits_only_admin(tmp_path: Path) -> None:
    app = create_app(offline_settings(tmp_path))
    forgotten = APIRouter()

    @forgotten.get("/v1/forgotten")
    async def forgotten_route() -> dict[str, str]:
        return {"ok": "yes"}

    app.include_router(forgotten)
    with TestClient(app, raise_server_exceptions=False) as client:
        marketer = make_key(client, R.marketer)["key"]
        assert client.get("/v1/forgotten", headers=ADMIN).status_code == 200
        refused = client.get("/v1/forgotten", headers={"X-API-Key": marketer})
        assert refused.status_code == 403
        assert "declares no role" in refused.json()["detail"]
        assert any(p == "/v1/forgotten" and d is None for _, p, d in declared_routes(app))


def test_the_spec_says_who_may_call_each_operation(api: Api) -> None:
    spec = api.client.get("/openapi.json").json()
    operation = spec["paths"]["/v1/leads/{lead_id}/touches"]["post"]
    assert operation["x-leadflow-roles"] == ["rep", "manager", "admin"]
    assert "403" in operation["responses"]
    assert spec["paths"]["/v1/forms/{form_id}"]["post"]["x-leadflow-roles"] == ["public"]


def test_a_key_is_shown_once_and_stored_hashed(api: Api) -> None:
    created = make_key(api.client, R.marketer, "shown once")
    listed = api.client.get("/v1/admin/keys", headers=ADMIN).json()
    mine = next(k for k in listed if k["id"] == created["id"])
    assert mine["key"] is None and mine["role"] == "marketer"
    url = str(api.client.app.state.leadflow.settings.resolved_database_url())
    engine = create_engine(url)
    with engine.connect() as conn:
        stored = " ".join(str(v) for row in conn.execute(text("select * from api_keys")) for v in row)
    engine.dispose()
    assert created["key"] not in stored


def test_expired_revoked_and_unknown_keys_get_401(api: Api) -> None:
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    expiring = make_key(api.client, R.marketer, "expires", expires_at=later)
    headers = {"X-API-Key": expiring["key"]}
    assert api.client.get("/v1/playbooks", headers=headers).status_code == 200
    # Its time comes (moved into the past in the store, rather than waited for).
    engine = create_engine(str(api.client.app.state.leadflow.settings.resolved_database_url()))  # type: ignore[attr-defined]
    with engine.begin() as conn:
        conn.execute(
            text("update api_keys set expires_at = '2001-01-01 00:00:00' where id = :id"), {"id": expiring["id"]}
        )
    engine.dispose()
    api.client.app.state.leadflow.key_cache.clear()  # type: ignore[attr-defined]
    expired = api.client.get("/v1/playbooks", headers=headers)
    assert expired.status_code == 401 and "expired" in expired.json()["detail"]

    revoked = make_key(api.client, R.marketer, "revoked")
    assert api.client.get("/v1/playbooks", headers={"X-API-Key": revoked["key"]}).status_code == 200
    assert api.client.delete(f"/v1/admin/keys/{revoked['id']}", headers=ADMIN).status_code == 204
    answer = api.client.get("/v1/playbooks", headers={"X-API-Key": revoked["key"]})
    assert answer.status_code == 401 and "revoked" in answer.json()["detail"]
    assert api.client.delete(f"/v1/admin/keys/{revoked['id']}", headers=ADMIN).status_code == 404

    unknown = api.client.get("/v1/playbooks", headers={"X-API-Key": "lfk_nope"})
    assert unknown.status_code == 401 and "not valid" in unknown.json()["detail"]


def test_a_rep_or_manager_key_needs_its_scope(api: Api) -> None:
    for body in (
        {"name": "x", "role": "rep"},
        {"name": "x", "role": "manager"},
        {"name": "x", "role": "marketer", "rep_id": "rep-aiko"},
    ):
        answer = api.client.post("/v1/admin/keys", json=body, headers=ADMIN)
        assert answer.status_code == 422, answer.text
        assert "rep_id" in answer.json()["detail"] or "teams" in answer.json()["detail"]


def test_a_store_outage_while_checking_a_key_is_a_503_not_a_500(tmp_path: Path) -> None:
    from sqlalchemy.ext.asyncio import create_async_engine

    from store.db import make_sessionmaker

    with TestClient(create_app(offline_settings(tmp_path)), raise_server_exceptions=False) as client:
        key = make_key(client, R.marketer)["key"]
        state = client.app.state.leadflow  # type: ignore[attr-defined]
        working, state.sessions = (
            state.sessions,
            make_sessionmaker(create_async_engine("postgresql+psycopg://nobody@127.0.0.1:9/none")),
        )
        state.key_cache.clear()
        try:
            answer = client.get("/v1/playbooks", headers={"X-API-Key": key})
            assert answer.status_code == 503 and answer.headers["retry-after"] == "2"
            assert "store" in answer.json()["detail"]
            client.cookies.set("leadflow_session", "x")
            assert client.get("/dashboard").status_code == 503
        finally:
            state.sessions = working


def test_me_says_who_the_caller_is(api: Api) -> None:
    answer = api.client.get("/v1/me", headers=api.as_role(R.rep)).json()
    assert answer == {"kind": "key", "id": api.key_ids[R.rep], "name": "rep key", "role": "rep",
                      "rep_id": "rep-aiko", "teams": []}  # fmt: skip
    assert api.client.get("/v1/me", headers=ADMIN).json()["id"] == "admin-key"
