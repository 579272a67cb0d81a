"""``leadflow keys``, ``users``, ``export``, ``overdue``, ``publish`` and ``validate --json`` against a real
store, and the dev admin login ``make run`` creates."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from cli.__main__ import main
from devstack.dev_login import DEV_ADMIN, ensure_dev_admin
from settings import ROOT
from store import access
from store.db import make_engine, make_sessionmaker
from tests.access_fixtures import LEADS, seed_store
from tests.test_robustness import offline_settings


@pytest.fixture
def url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    database = f"sqlite:///{tmp_path / 'leadflow.db'}"
    offline_settings(tmp_path)  # migrates
    seed_store(database)
    monkeypatch.setenv("DATABASE_URL", database)
    return database


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> object:
    assert main(list(argv)) == 0
    return json.loads(capsys.readouterr().out)


def test_keys_create_list_revoke_and_the_key_works(
    url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    created = run_json(capsys, "keys", "create", "aiko phone", "--role", "rep", "--rep", "rep-aiko", "--json")
    assert isinstance(created, dict) and created["key"].startswith("lfk_") and created["rep_id"] == "rep-aiko"
    listed = run_json(capsys, "keys", "list", "--json")
    assert [k["id"] for k in listed] == [created["id"]] and "key" not in listed[0]  # type: ignore[index]
    with TestClient(create_app(offline_settings(tmp_path))) as client:
        headers = {"X-API-Key": created["key"]}
        assert client.get(f"/v1/leads/{LEADS[0][0]}/timeline", headers=headers).status_code == 200
        assert client.get("/v1/playbooks", headers=headers).status_code == 403
        assert main(["keys", "revoke", created["id"]]) == 0
        client.app.state.leadflow.key_cache.clear()  # type: ignore[attr-defined]  # another process's cache
        assert client.get(f"/v1/leads/{LEADS[0][0]}/timeline", headers=headers).status_code == 401
    assert main(["keys", "revoke", created["id"]]) == 1


def test_keys_need_their_scope(url: str) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["keys", "create", "x", "--role", "manager"])
    assert exited.value.code == 2


def test_users_set_list_disable(url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEADFLOW_NEW_PASSWORD", "short")
    assert main(["users", "set", "mina", "--role", "manager", "--team", "inside-sales"]) == 2
    monkeypatch.setenv("LEADFLOW_NEW_PASSWORD", "a long enough passphrase")
    user = run_json(capsys, "users", "set", "mina", "--role", "manager", "--team", "inside-sales", "--json")
    assert user["teams"] == ["inside-sales"]  # type: ignore[index]
    assert [u["username"] for u in run_json(capsys, "users", "list", "--json")] == ["mina"]  # type: ignore[union-attr]
    assert main(["users", "disable", "mina"]) == 0

    async def can_sign_in() -> bool:
        engine = make_engine(url)
        async with make_sessionmaker(engine)() as session:
            found = await access.check_password(session, "mina", "a long enough passphrase")
        await engine.dispose()
        return found is not None

    assert asyncio.run(can_sign_in()) is False


def test_exports_and_overdue(url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "leads.csv"
    assert main(["export", "leads", "--out", str(out), "--team", "inside-sales"]) == 0
    rows = list(csv.DictReader(io.StringIO(out.read_text(encoding="utf-8"))))
    assert {r["id"] for r in rows} == {LEADS[0][0], LEADS[1][0]}
    assert "2 leads rows" in capsys.readouterr().err
    assert main(["export", "followups", "--status", "overdue", "--rep", "rep-yui", "--json"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["lead_id"] for line in lines] == [LEADS[2][0]]
    overdue = run_json(capsys, "overdue", "--json")
    assert len(overdue) == 3  # type: ignore[arg-type]
    assert main(["export", "audit"]) == 0
    assert capsys.readouterr().out.startswith("id,at,actor_kind")


def test_publish_and_validate_json(url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    playbook = ROOT / "playbooks" / "default.yaml"
    published = run_json(capsys, "publish", str(playbook), "--note", "first", "--json")
    assert published["version"] == 1 and published["created"] is True  # type: ignore[index]
    assert run_json(capsys, "publish", str(playbook), "--json")["created"] is False  # type: ignore[index]
    assert run_json(capsys, "validate", str(playbook), "--json")["valid"] is True  # type: ignore[index]
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nscoring:\n  rules: 7\n", encoding="utf-8")
    assert main(["validate", str(bad), "--json"]) == 1
    answer = json.loads(capsys.readouterr().out)
    assert answer["valid"] is False and answer["issues"][0]["message"]


def test_make_run_creates_a_dev_admin_login_once(url: str) -> None:
    assert asyncio.run(ensure_dev_admin(url, "dev password 123")) is True
    assert asyncio.run(ensure_dev_admin(url, "another one 456")) is False

    async def role() -> str | None:
        engine = make_engine(url)
        async with make_sessionmaker(engine)() as session:
            found = await access.check_password(session, DEV_ADMIN, "dev password 123")
        await engine.dispose()
        return found.role.value if found else None

    assert asyncio.run(role()) == "admin"
