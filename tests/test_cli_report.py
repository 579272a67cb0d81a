"""``leadflow report``: the same figures as the API, straight from the store, as CSV or JSON."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from decimal import Decimal
from pathlib import Path

import pytest

from cli.__main__ import main
from settings import Settings
from store.db import make_engine, make_sessionmaker, run_migrations
from tests.reports_dataset import generate, write
from tests.test_reports_money import cents, expected_sources


async def _fill(url: str) -> None:
    await asyncio.to_thread(run_migrations, url)
    engine = make_engine(url)
    await write(make_sessionmaker(engine), generate())
    await engine.dispose()


def test_report_command_prints_csv_and_json(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'leadflow.db'}"
    asyncio.run(_fill(url))
    monkeypatch.setenv("DATABASE_URL", url)
    assert main(["report", "sources", "--month", "2026-02", "--by", "category"]) == 0
    rows = {r["group"]: r for r in csv.DictReader(io.StringIO(capsys.readouterr().out))}
    for group, want in expected_sources(generate(), "2026-02", "category").items():
        assert int(rows[group]["leads"]) == want["leads"] and Decimal(rows[group]["cost"]) == cents(want["cost"])
    assert main(["report", "source-health", "--from", "2026-01-01", "--to", "2026-03-31", "--format", "json"]) == 0
    (quarter,) = json.loads(capsys.readouterr().out)
    assert quarter["new_leads"] == 300
    assert main(["report", "sources", "--month", "2026-13"]) == 2
    assert "YYYY-MM" in capsys.readouterr().err
    assert main(["report", "attribution", "--by", "colour"]) == 2
    assert "--by must be one of" in capsys.readouterr().err
    assert Settings().resolved_database_url() == url
