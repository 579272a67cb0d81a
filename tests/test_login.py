"""The pages' login: a user with a scrypt password hash signs in; the session cookie is HttpOnly,
SameSite=Lax (Secure behind HTTPS); forms and API writes by session carry the CSRF token; a rep's login
cannot open a manager's page."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from store.access import hash_password, password_matches
from tests.access_fixtures import ADMIN, seed_store
from tests.conftest import TEST_API_KEY
from tests.test_robustness import offline_settings

PASSWORD = "a long enough passphrase"
BROWSER = {"accept": "text/html,application/xhtml+xml"}


@pytest.fixture
def client(tmp_path) -> Iterator[TestClient]:  # type: ignore[no-untyped-def]
    settings = offline_settings(tmp_path, session_cookie_secure=False)
    seed_store(settings.resolved_database_url())
    with TestClient(create_app(settings), raise_server_exceptions=False, follow_redirects=False) as test_client:
        for name, body in {
            "mina": {"role": "manager", "teams": ["inside-sales"]},
            "aiko": {"role": "rep", "rep_id": "rep-aiko"},
        }.items():
            answer = test_client.put(f"/v1/admin/users/{name}", json={**body, "password": PASSWORD}, headers=ADMIN)
            assert answer.status_code == 200, answer.text
        yield test_client


def sign_in(client: TestClient, username: str, password: str = PASSWORD) -> tuple[int, str]:
    page = client.get("/login?next=/dashboard")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
    answer = client.post(
        "/login", data={"username": username, "password": password, "csrf_token": token, "next": "/dashboard"}
    )
    return answer.status_code, answer.headers.get("set-cookie", "")


def test_passwords_are_kept_as_salted_scrypt() -> None:
    stored = hash_password(PASSWORD)
    assert stored.startswith("scrypt$") and PASSWORD not in stored and stored != hash_password(PASSWORD)
    assert password_matches(PASSWORD, stored) and not password_matches("wrong", stored)


def test_a_browser_without_a_session_goes_to_the_login_page(client: TestClient) -> None:
    answer = client.get("/dashboard", headers=BROWSER)
    assert answer.status_code == 303 and answer.headers["location"] == "/login?next=/dashboard"
    assert client.get("/dashboard").status_code == 401  # a script gets a 401, as before


def test_sign_in_opens_a_session_with_a_safe_cookie(client: TestClient) -> None:
    status, cookie = sign_in(client, "mina")
    assert status == 303
    assert "leadflow_session=" in cookie and "HttpOnly" in cookie and "SameSite=lax" in cookie
    assert "Secure" not in cookie  # http://127.0.0.1 in tests; see the Secure test below
    page = client.get("/dashboard", headers=BROWSER)
    assert page.status_code == 200 and "leadflow" in page.text


def test_wrong_password_and_forged_form_are_refused(client: TestClient) -> None:
    assert sign_in(client, "mina", "not the password")[0] == 401
    assert sign_in(client, "nobody")[0] == 401
    client.get("/login")
    forged = client.post("/login", data={"username": "mina", "password": PASSWORD, "csrf_token": "forged"})
    assert forged.status_code == 403
    assert "leadflow_session" not in forged.headers.get("set-cookie", "")


def test_a_reps_login_cannot_open_a_managers_page(client: TestClient) -> None:
    assert sign_in(client, "aiko")[0] == 303
    refused = client.get("/dashboard", headers=BROWSER)
    assert refused.status_code == 403 and "manager" in refused.json()["detail"]


def test_api_writes_by_session_need_the_csrf_token(client: TestClient) -> None:
    sign_in(client, "mina")
    body = {"away_until": "2099-01-01T00:00:00+00:00"}
    refused = client.put("/v1/reps/rep-ben/availability", json=body)
    assert refused.status_code == 401 and "X-CSRF-Token" in refused.json()["detail"]
    # Reads need no token; the pages put the session's token in their forms and scripts.
    assert client.get("/v1/followups").status_code == 200
    from store import access

    async def token() -> str:
        async with client.app.state.leadflow.sessions() as session:  # type: ignore[attr-defined]
            cookie = client.cookies["leadflow_session"]
            signed_in = await access.session_principal(session, cookie, __import__("datetime").datetime.now(
                __import__("datetime").UTC))  # fmt: skip
            assert signed_in is not None
            return signed_in.csrf_token

    csrf = client.portal.call(token)  # type: ignore[union-attr]
    assert client.put("/v1/reps/rep-ben/availability", json=body, headers={"X-CSRF-Token": csrf}).status_code == 200


def test_logout_needs_the_token_and_ends_the_session(client: TestClient) -> None:
    sign_in(client, "mina")
    assert client.post("/logout", data={"csrf_token": "forged"}).status_code == 403
    page = client.get("/dashboard", headers=BROWSER)
    assert page.status_code == 200
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert csrf, "the dashboard's sign-out form carries the CSRF token"
    assert client.post("/logout", data={"csrf_token": csrf.group(1)}).status_code == 303
    assert client.get("/dashboard", headers=BROWSER).status_code == 303


def test_the_cookie_is_secure_behind_https(tmp_path) -> None:  # type: ignore[no-untyped-def]
    settings = offline_settings(tmp_path, public_base_url="https://leadflow.example.com")
    seed_store(settings.resolved_database_url())
    app = create_app(settings)
    with TestClient(
        app, base_url="https://testserver", raise_server_exceptions=False, follow_redirects=False
    ) as test_client:
        body = {"role": "admin", "password": PASSWORD}
        assert test_client.put("/v1/admin/users/root", json=body, headers=ADMIN).status_code == 200
        status, cookie = sign_in(test_client, "root")
    assert status == 303 and "Secure" in cookie


def test_sign_ins_are_audited_without_the_password(client: TestClient) -> None:
    sign_in(client, "mina")
    sign_in(client, "mina", "wrong password here")
    items = client.get("/v1/audit?route=POST /login", headers=ADMIN).json()["items"]
    assert [i["summary"].split(":")[0] for i in items[:2]] == ["sign-in refused", "signed in"]
    assert all("password" not in i["summary"] and PASSWORD not in str(i) for i in items)
    assert items[1]["actor_kind"] == "user" and items[1]["actor_role"] == "manager"


def test_an_api_key_signs_in_with_no_user_name_until_it_is_revoked(client: TestClient) -> None:
    created = client.post(
        "/v1/admin/keys", json={"name": "aiko", "role": "rep", "rep_id": "rep-aiko"}, headers=ADMIN
    ).json()
    assert sign_in(client, "", created["key"])[0] == 303
    assert client.get("/v1/me").json()["id"] == created["id"]
    assert client.get("/dashboard", headers=BROWSER).status_code == 403  # a rep's key: not a manager's page
    assert client.delete(f"/v1/admin/keys/{created['id']}", headers=ADMIN).status_code == 204
    assert client.get("/v1/me").status_code == 401  # the key's sessions end with it
    client.cookies.clear()
    assert sign_in(client, "", TEST_API_KEY)[0] == 303
    assert client.get("/dashboard", headers=BROWSER).status_code == 200
    assert sign_in(client, "", "lfk_not_a_key")[0] == 401
