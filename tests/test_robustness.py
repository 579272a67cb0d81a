"""Bad input never gets a 500: every endpoint of the OpenAPI spec, hostile bodies and path values, with
Temporal down (503 is the honest answer there) and a real store."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from fastapi.testclient import TestClient

from activities.unsubscribe import unsubscribe_token
from api.main import create_app
from settings import ROOT, Settings
from store.db import run_migrations
from tests.conftest import TEST_API_KEY

AUTH = {"X-API-Key": TEST_API_KEY}
BILLION_LAUGHS = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)},"
    f" *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n"
    for i in range(9)
)
HOSTILE_BODIES: list[Any] = [
    None,
    "not json at all",
    [],
    {},
    {"unexpected": True},
    {"email": "a" * 5000 + "@example.com"},
    {"email": "x@example.com\r\nBcc: victim@example.com"},
    {"email": "ok@example.com", "company_size": -1, "country": "Japan", "fields": {"Bad Key": 1}},
    {"email": "ok@example.com", "fields": {f"f{i}": i for i in range(60)}},
    {"events": []},
    {"events": [{"type": "page_view"}] * 501},
    {"events": [{"type": "Page View!", "at": "yesterday"}]},
    {"events": [{"type": "page_view", "at": "2026-01-01T00:00:00"}]},  # no time zone
    {"events": [{"type": "page_view", "email": "nobody"}]},
    {"kind": "telepathy"},
    {"name": "Team", "reps": [{"id": "Bad Id", "name": "x", "email": "nope"}]},
    {"away_until": "soon"},
    {"playbook": "a: [unclosed"},
    {"playbook": "\x00\x01"},
    {"playbook": BILLION_LAUGHS},
    {"playbook": "x" * 300_000},
    {"playbook": "name: p\nrouting: {default_team: inside-sales}", "days": 10**9},
    {"scenario": {"lead": {"email": "a@example.com"}, "run_for": "99999999d"}},
    {"scenario": {"lead": {"email": "a@example.com"}, "events": [{"type": "x", "after": "9999999999d"}]}},
    {"scenario": {"lead": {"email": "a@example.com"}, "start": "0001-01-01T00:00:00Z", "run_for": "1d"}},
    {"scenario": {"lead": {"email": "a@example.com"}, "start": "9999-12-31T23:00:00Z", "run_for": "30d"}},
    {"scenario": "a string"},
    {"lead_id": "lead-" + "0" * 32, "lead": {"company": "Acme\r\nBcc: victim@example.com"}, "locale": "ja"},
    {"lead": {"first_name": ["not", "a", "name"], "company": {"nested": 1}}, "kind": "digest"},
    {"locale": "klingon", "kind": "newsletter"},
]
PATH_VALUES = {
    "lead_id": ["lead-" + "0" * 32, "x", "lead-../../etc", "lead-" + "z" * 5000],
    "team_key": ["inside-sales", "BAD KEY", "é"],
    "rep_id": ["rep-aiko", "nobody", "UPPER"],
    "version": ["1", "-1", "abc", "99999999999999999999999"],
    "old": ["1", "0"],
    "new": ["2", "x"],
    "name": ["welcome", "nope", "..", "_layouts", "x" * 500],
    "form_id": ["whitepaper", "BAD ID", "x" * 300],
    "source": ["calendly", "../x"],
    "key_id": ["wk_00000000", "x"],
}
QUERIES = ["", "?status=overdue", "?status=bogus", "?limit=0", "?limit=100000", "?offset=-5"]


def offline_settings(data: Path, **overrides: Any) -> Settings:
    """A migrated SQLite store and a Temporal address nobody listens on (the honest answer there is 503)."""
    url = f"sqlite:///{data / 'leadflow.db'}"
    run_migrations(url)
    return Settings(
        data_dir=data,
        database_url=url,
        api_key=TEST_API_KEY,
        id_key="k",
        unsubscribe_key="u",
        temporal_address="127.0.0.1:9",
        scheduler_enabled=False,
        templates_dir=ROOT / "templates",
        playbook_path=ROOT / "playbooks" / "default.yaml",
        **overrides,
    )


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    settings = offline_settings(tmp_path_factory.mktemp("robust"))
    with TestClient(create_app(settings), raise_server_exceptions=False) as test_client:
        yield test_client


def operations(client: TestClient) -> list[tuple[str, str]]:
    spec = client.get("/openapi.json").json()
    return [(method.upper(), path) for path, ops in spec["paths"].items() for method in ops]


def concrete_paths(path: str) -> list[str]:
    paths = [path]
    for name, values in PATH_VALUES.items():
        if "{" + name + "}" in path:
            paths = [p.replace("{" + name + "}", v) for p in paths for v in values]
    return paths


def send(client: TestClient, method: str, url: str, body: Any, headers: dict[str, str]) -> Any:
    if body is None:
        return client.request(method, url, headers=headers)
    if isinstance(body, str):
        return client.request(method, url, content=body, headers={**headers, "content-type": "application/json"})
    return client.request(method, url, json=body, headers=headers)


def public_door(url: str) -> bool:
    # Web forms take posts from any browser; webhooks check a signature (401s tested in their own tests).
    return url.startswith(("/v1/forms/", "/v1/webhooks/"))


def test_no_endpoint_answers_500_to_bad_input(client: TestClient) -> None:
    ops = operations(client)
    assert len(ops) >= 18
    failures = []
    for method, template in ops:
        for url in concrete_paths(template):
            bodies = HOSTILE_BODIES if method in ("POST", "PUT") else [None]
            queries = QUERIES if method == "GET" else [""]
            for body in bodies:
                for query in queries:
                    for headers in (AUTH, {}):
                        answer = send(client, method, url + query, body, headers)
                        if answer.status_code >= 500 and answer.status_code != 503:
                            failures.append(
                                (method, url[:80] + query, str(body)[:60], answer.status_code, answer.text[:200])
                            )
                        elif answer.status_code >= 400 and not url.startswith("/health"):
                            assert answer.json().get("detail"), (method, url, answer.text)
                        if not headers and url.startswith("/v1") and not public_door(url):
                            assert answer.status_code == 401, (method, url, answer.status_code)
    assert failures == []


def test_the_unsubscribe_pages_never_answer_500(client: TestClient) -> None:
    """Pages for people, outside the spec (so not in the run above): forged, odd and valid tokens, any body."""
    valid = unsubscribe_token("lead-" + "0" * 32, "u")
    form = {"content-type": "application/x-www-form-urlencoded"}
    for token in (valid, "junk", "x" * 5000, "lead-..%2F..%2Fetc", valid + "%00"):
        for method, body in (("GET", None), ("POST", b"List-Unsubscribe=One-Click"), ("POST", b"\xff" * 9)):
            answer = client.request(method, f"/unsubscribe/{token}?lang=ja", content=body, headers=form)
            assert answer.status_code < 500 or answer.status_code == 503, (method, token[:40], answer.text[:200])
    # The valid token's one-click reaches for Temporal, which is down here: 503, not a lost unsubscribe.
    answer = client.post(f"/unsubscribe/{valid}", content=b"List-Unsubscribe=One-Click", headers=form)
    assert answer.status_code == 503


def test_the_yaml_alias_bomb_is_refused_quickly(client: TestClient) -> None:
    answer = client.post("/v1/playbooks:validate", json={"playbook": BILLION_LAUGHS}, headers=AUTH)
    assert answer.status_code == 422 and "too large" in answer.text


def test_backpressure_answers_503_with_retry_after_at_once(tmp_path: Path) -> None:
    with TestClient(create_app(offline_settings(tmp_path, max_inflight_temporal_calls=0))) as client:
        answer = client.post("/v1/leads", json={"email": "a@example.com"}, headers=AUTH)
        assert answer.status_code == 503 and answer.headers["retry-after"] == "1"
        assert "at capacity" in answer.json()["detail"]


async def test_temporal_calls_beyond_the_bound_are_refused_and_a_finished_call_frees_its_slot() -> None:
    """AppState.temporal_call: at the bound a call is refused at once (the API answers 503), never queued; a call
    that ends, however it ends, gives its slot back."""
    from api.deps import AppState, Overloaded

    state = AppState.__new__(AppState)  # only the bound and the client matter here
    state.settings = SimpleNamespace(max_inflight_temporal_calls=2)  # type: ignore[assignment]
    state._inflight = 0
    client = object()

    async def temporal() -> object:
        return client

    state.temporal = temporal  # type: ignore[method-assign]
    async with state.temporal_call() as first, state.temporal_call() as second:
        assert first is client and second is client
        with pytest.raises(Overloaded):
            async with state.temporal_call():
                pass
    with pytest.raises(RuntimeError):
        async with state.temporal_call():
            raise RuntimeError("the call failed")
    async with state.temporal_call(), state.temporal_call():
        pass
    assert state._inflight == 0
