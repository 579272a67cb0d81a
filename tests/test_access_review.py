"""Holes found reviewing roles (issue 11): a manager's dashboard listed every team's follow-ups and mail;
a session opened with an API key skipped the pages' CSRF check; the login took unlimited guesses."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from rules.access import Role
from tests.access_fixtures import ADMIN, LEADS, Api, offline_api, seed_store
from tests.test_robustness import offline_settings

PASSWORD = "a long enough passphrase"


@pytest.fixture
def api(tmp_path) -> Iterator[Api]:  # type: ignore[no-untyped-def]
    yield from offline_api(tmp_path)


@pytest.fixture
def client(tmp_path) -> Iterator[TestClient]:  # type: ignore[no-untyped-def]
    settings = offline_settings(tmp_path, session_cookie_secure=False, login_max_failures=3)
    seed_store(settings.resolved_database_url())
    with TestClient(create_app(settings), raise_server_exceptions=False, follow_redirects=False) as test_client:
        body = {"role": "manager", "teams": ["inside-sales"], "password": PASSWORD}
        assert test_client.put("/v1/admin/users/mina", json=body, headers=ADMIN).status_code == 200
        yield test_client


def sign_in(client: TestClient, username: str, password: str) -> int:
    page = client.get("/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
    return client.post("/login", data={"username": username, "password": password, "csrf_token": token}).status_code


def test_a_managers_dashboard_lists_only_their_teams_leads(api: Api) -> None:
    page = api.client.get("/dashboard", headers=api.as_role(Role.manager))
    assert page.status_code == 200
    assert "ann@example.com" in page.text and "bob@example.com" in page.text
    assert "chie@example.jp" not in page.text  # yui's lead, team japan
    everyone = api.client.get("/dashboard", headers=api.as_role(Role.marketer))
    assert "chie@example.jp" in everyone.text


def test_a_session_opened_with_an_api_key_needs_the_csrf_token_on_page_writes(api: Api) -> None:
    api.client.follow_redirects = False
    assert sign_in(api.client, "", api.keys[Role.manager]) == 303
    forged = api.client.post("/logout")
    assert forged.status_code == 403 and "CSRF" in forged.json()["detail"]


def test_the_login_refuses_guesses_after_too_many_failures(client: TestClient) -> None:
    for _ in range(3):
        assert sign_in(client, "mina", "a wrong guess") == 401
    page = client.get("/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
    locked = client.post("/login", data={"username": "mina", "password": PASSWORD, "csrf_token": token})
    assert locked.status_code == 429 and int(locked.headers["retry-after"]) > 0
    assert "leadflow_session" not in locked.headers.get("set-cookie", "")
    assert "Too many" in locked.text


def test_basic_credentials_open_pages_to_read_but_never_to_write(api: Api) -> None:
    # A browser resends Basic credentials on its own, a forged cross-site form included, with no CSRF token.
    basic = ("anyone", api.keys[Role.manager])
    api.client.cookies.clear()
    assert api.client.get("/dashboard", auth=basic).status_code == 200
    forged = api.client.post("/logout", auth=basic)
    assert forged.status_code == 403 and "/login" in forged.json()["detail"]


SALES_ROUTES = ["accept", "reject", "stage", "won", "lost", "disqualify", "reassign", "nurture/pause", "nurture/resume"]
SALES_BODIES = {"reject": {"reason": "not_a_fit"}, "stage": {"stage": "opportunity"}, "lost": {"reason": "timing"},
                "won": {"amount": "10", "currency": "USD"}, "disqualify": {"reason": "spam"},
                "reassign": {"team": "inside-sales"}}  # fmt: skip


def test_the_sales_routes_reach_only_the_callers_own_leads(api: Api) -> None:
    """The hand-off (api/routers/lead_sales.py): a rep acts on the leads they own, a manager on their teams'
    (Temporal is offline here, so an allowed call answers 503: the scope check let it through); only managers
    reassign; the signed-link pages need no key but a token leadflow signed."""
    own, others, other_team = LEADS[0][0], LEADS[1][0], LEADS[2][0]  # aiko's; ben's (same team); yui's (japan)
    for route in SALES_ROUTES:
        body = SALES_BODIES.get(route, {})
        rep, manager = api.as_role(Role.rep), api.as_role(Role.manager)
        if route == "reassign":
            denied = api.client.post(f"/v1/leads/{own}/{route}", json=body, headers=rep)
            assert denied.status_code == 403 and "manager" in denied.json()["detail"]
        else:
            assert api.client.post(f"/v1/leads/{own}/{route}", json=body, headers=rep).status_code == 503, route
            foreign = api.client.post(f"/v1/leads/{others}/{route}", json=body, headers=rep)
            assert foreign.status_code == 403 and "not among the leads you own" in foreign.json()["detail"], route
        assert api.client.post(f"/v1/leads/{others}/{route}", json=body, headers=manager).status_code == 503, route
        outside = api.client.post(f"/v1/leads/{other_team}/{route}", json=body, headers=manager)
        assert outside.status_code == 403 and "your teams own" in outside.json()["detail"], route
        assert (
            api.client.post(f"/v1/leads/{own}/{route}", json=body, headers=api.as_role(Role.marketer)).status_code
            == 403
        )
        assert api.client.post(f"/v1/leads/{own}/{route}", json=body).status_code == 401
    assert api.client.get("/sal/lead-" + "a" * 32 + ".1.xxxxxxxxxxxx.yyyyyyyyyyyyyyyyyyyyyy").status_code == 404
