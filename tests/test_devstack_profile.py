"""The scale-out profile of the dev stack: ``python -m devstack.run --postgres URL --workers 2
--api-processes 2`` runs the store on PostgreSQL, two worker processes and two API processes; its
options are checked before anything starts."""

from __future__ import annotations

import argparse
import json
import os
import time
import urllib.request
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from devstack import profile, run
from store.db import normalize_url
from tests.conftest import PG_ENV, postgres_database
from tests.test_devstack import Launcher, assert_stops_cleanly


def parse(*argv: str) -> argparse.Namespace:
    return run.parse_args(list(argv))


def test_the_default_profile_is_one_of_each_on_sqlite() -> None:
    shape = profile.from_args(parse())
    assert shape == profile.Profile(postgres_url=None, workers=1, api_processes=1)
    assert shape.worker_names() == ["worker"] and shape.api_args() == []


def test_the_scale_out_profile() -> None:
    shape = profile.from_args(parse("--postgres", "postgresql://u:p@db:5432/leadflow", "--workers", "3",
                                    "--api-processes", "2"))  # fmt: skip
    assert shape.worker_names() == ["worker-1", "worker-2", "worker-3"]
    assert shape.api_args() == ["--workers", "2"]
    assert shape.describe() == "3 worker processes, 2 API processes"


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (("--postgres", "sqlite:///x.db"), "--postgres takes a PostgreSQL URL"),
        (("--postgres", "not a url"), "--postgres takes a PostgreSQL URL"),
        (("--workers", "0"), "--workers 0: give a number from 1 to 16"),
        (("--api-processes", "99"), "--api-processes 99"),
    ],
)
def test_unusable_options_say_what_to_pass(argv: tuple[str, ...], says: str) -> None:
    with pytest.raises(profile.ProfileError, match=says):
        profile.from_args(parse(*argv))


def test_a_postgres_store_reaches_every_child() -> None:
    settings = run.Settings(database_url="postgresql://u@db/leadflow", api_key="k", id_key="i", master_key="m",
                            unsubscribe_key="u", webhook_secret="w")  # fmt: skip
    ports = run.Ports(7233, 8233, 8000, 1025)
    env = run.child_env(settings, Path("/tmp/data"), ports)
    assert env["DATABASE_URL"] == "postgresql://u@db/leadflow"


def test_temporal_tls_variables_of_the_shell_never_reach_the_dev_servers_children(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TEMPORAL_TLS_CLIENT_CERT_PATH", "/etc/cloud.pem")
    monkeypatch.setenv("TEMPORAL_API_KEY", "cloud-key")
    settings = run.Settings(api_key="k", id_key="i", master_key="m", unsubscribe_key="u", webhook_secret="w")
    env = run.child_env(settings, Path("/tmp/data"), run.Ports(7233, 8233, 8000, 1025))
    assert "TEMPORAL_TLS_CLIENT_CERT_PATH" not in env and "TEMPORAL_API_KEY" not in env


@pytest.mark.integration
def test_scale_out_profile_runs_on_postgres(tmp_path: Path) -> None:
    base = os.environ.get(PG_ENV)
    if not base:
        pytest.skip(f"{PG_ENV} is not set (e.g. postgresql://postgres@127.0.0.1:5432/test)")
    with postgres_database(base) as url:
        launcher = Launcher(tmp_path / "data", "--postgres", url, "--workers", "2", "--api-processes", "2")
        try:
            output = launcher.start()
            assert "2 workers ready" in output and "2 worker processes, 2 API processes" in output, output
            assert "seeded demo teams: inside-sales, japan" in output
            names = sorted(json.loads((launcher.data_dir / "pids.json").read_text())["children"])
            assert names == ["api", "sink", "temporal", "worker-1", "worker-2"]
            assert not (launcher.data_dir / "leadflow.db").exists()  # the store is PostgreSQL's

            api = f"http://127.0.0.1:{launcher.ports['LEADFLOW_API_PORT']}"
            headers = {"X-API-Key": launcher.api_key, "content-type": "application/json"}
            body = json.dumps({"email": "ann@example.com", "company": "Acme"}).encode()
            request = urllib.request.Request(f"{api}/v1/leads", data=body, headers=headers, method="POST")
            with urllib.request.urlopen(request, timeout=30) as response:
                assert response.status == 202
                lead_id = json.loads(response.read())["lead_id"]
            assert _projected(url, lead_id), "the lead reached the PostgreSQL store"
            assert_stops_cleanly(launcher)
        finally:
            launcher.kill_everything()


def _projected(url: str, lead_id: str, seconds: float = 60.0) -> bool:
    engine = create_engine(normalize_url(url, async_driver=False), poolclass=NullPool)
    try:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            with engine.connect() as conn:
                if conn.execute(text("select 1 from leads where id = :id"), {"id": lead_id}).first():
                    return True
            time.sleep(0.5)
        return False
    finally:
        engine.dispose()
