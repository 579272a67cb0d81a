"""CSV import end to end: Temporal dev server + worker + API (uvicorn) + SQLite store; the CLI as a process.

The dirty file (tests/data/dirty_leads.csv) holds full-width emails, a duplicate in the file, a person who
is already a lead, rejected rows, a row spread over two lines and values that cannot be cleaned.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.testing import WorkflowEnvironment

from api.deps import AppState
from api.intake import lead_start
from api.lead_ids import lead_id_for
from api.main import create_app
from capture.delivery import LeadDelivery
from capture.importer import Importer, ImportOptions, import_id_for
from runtime import build_worker, load_active_playbook
from settings import ROOT, Settings
from store import imports
from store.db import make_engine, make_sessionmaker
from tests.conftest import TEST_API_KEY, free_port
from tests.test_integration import dev_server, eventually  # noqa: F401  (a fixture, shared)

pytestmark = pytest.mark.integration
AUTH = {"X-API-Key": TEST_API_KEY}
DIRTY = Path(__file__).parent / "data" / "dirty_leads.csv"


@dataclass
class Stack:
    http: httpx.AsyncClient
    settings: Settings
    client: Any


@pytest.fixture
async def import_stack(
    dev_server: WorkflowEnvironment,  # noqa: F811
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
) -> AsyncIterator[Stack]:
    settings = settings.model_copy(
        update={
            "temporal_address": dev_server.client.service_client.config.target_host,
            "task_queue": f"tq-{uuid.uuid4().hex[:8]}",
            "scheduler_enabled": False,
        }
    )
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning"))
    serving = asyncio.create_task(server.serve())
    async with build_worker(dev_server.client, settings, sessions):
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=20) as http:
            for _ in range(200):
                if server.started:
                    break
                await asyncio.sleep(0.05)
            yield Stack(http, settings, dev_server.client)
        server.should_exit = True
        await serving


async def leads_on(stack: Stack, expected: int) -> set[str]:
    """The lead workflows on this test's task queue, once visibility shows `expected` of them."""
    ids: set[str] = set()
    for _ in range(100):
        ids = {w.id async for w in stack.client.list_workflows(f"TaskQueue = '{stack.settings.task_queue}'")}
        if len(ids) >= expected:
            break
        await asyncio.sleep(0.1)
    return ids


async def chunks(data: bytes, size: int = 64) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


EXPECTED_REPORT = [
    ["2", "merged", "merged into an existing lead", "ken@example.com"],
    ["4", "rejected", "email 'not-an-email' is not valid: An email address must have an @-sign.", "not-an-email"],
    ["5", "rejected", "email is missing", ""],
    ["6", "merged", "merged: same email as line 3", "ann.lee@example.com"],
    ["9", "cleaned", "country 'Atlantis' is not a country name or ISO code this import knows; kept as given; "
     "phone '12345' is not a valid number for JP; kept as given; company size 'many' has no number; dropped",
     "cy@example.com"],
    ["11", "merged", "merged: same email as line 8", "bo@example.org"],
]  # fmt: skip


async def test_a_dirty_file_is_cleaned_merged_and_reported_over_http(import_stack: Stack) -> None:
    http, key = import_stack.http, import_stack.settings.secret("id_key")
    # Ken is already a lead (from a whitepaper); the file names him in full-width characters.
    ken = await http.post("/v1/leads", json={"email": "ken@example.com", "source": "whitepaper"}, headers=AUTH)
    ken_id = ken.json()["lead_id"]
    await eventually(http, f"/v1/leads/{ken_id}/timeline", lambda body: body["lead"] is not None)

    params = {"filename": "dirty_leads.csv", "source": "expo-2026", "consent_basis": "consent", "country": "日本"}
    headers = AUTH | {"content-type": "text/csv"}
    posted = await http.post("/v1/imports", params=params, content=chunks(DIRTY.read_bytes()), headers=headers)
    assert posted.status_code == 202, posted.text
    import_id = posted.json()["import_id"]
    job = await eventually(http, f"/v1/imports/{import_id}", lambda body: body["status"] in ("done", "failed"))
    assert job["status"] == "done", job
    counters = ("rows_read", "created", "merged_existing", "merged_duplicate", "rejected", "warnings")
    counts = {k: job[k] for k in counters}
    assert counts == {"rows_read": 8, "created": 3, "merged_existing": 1, "merged_duplicate": 2, "rejected": 2,
                      "warnings": 1}  # fmt: skip
    assert (job["lines_done"], job["progress"]) == (11, 1.0)

    report = await http.get(f"/v1/imports/{import_id}/report.csv", headers=AUTH)
    assert report.status_code == 200 and report.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(report.text)))
    assert rows[0] == ["line", "outcome", "reason", "email", "lead_id"]
    assert [row[:4] for row in rows[1:]] == EXPECTED_REPORT
    assert rows[1][4] == ken_id

    # One lead per person: Ken (merged), Ann, Bo and Cy; no lead for any spelling variant.
    people = ["ken@example.com", "ann.lee@example.com", "bo@example.org", "cy@example.com"]
    assert await leads_on(import_stack, 4) == {lead_id_for(email, key) for email in people}
    ken_view = await eventually(http, f"/v1/leads/{ken_id}", lambda v: v["attributes"].get("phone"))
    attributes = ken_view["attributes"]
    assert attributes["source"] == "whitepaper"  # an import never rewrites where a lead came from
    assert (attributes["phone"], attributes["country"]) == ("+81312345678", "JP")
    assert attributes["company_key"] == "リードフロー"
    assert (attributes["consent_basis"], attributes["last_import"], attributes["company_size"]) == (
        "consent", import_id, 1200)  # fmt: skip
    ann = await eventually(http, f"/v1/leads/{lead_id_for('ann.lee@example.com', key)}", lambda v: v["exists"])
    assert ann["attributes"]["source"] == "expo-2026"
    # The later row (a title over two lines) merged into the first one; what it lacked was kept.
    assert (ann["attributes"]["title"], ann["attributes"]["phone"]) == ("Chief Marketing Officer", "+14155552671")

    # The same file with the same options is the same import: nothing is imported twice.
    again = await http.post("/v1/imports", params=params, content=DIRTY.read_bytes(), headers=headers)
    assert again.status_code == 202 and again.json() == posted.json() | {"status": "done"}
    assert len(await leads_on(import_stack, 4)) == 4


CONSENT_FILE = """Email,Name,メール配信希望
ida@example.com,Ida Berg,はい
jun@example.com,Jun Mori,no
kai@example.com,Kai Lund,maybe
lev@example.com,Lev Ek,
"""


async def test_a_consent_column_records_each_persons_email_consent(import_stack: Stack) -> None:
    """Issue 7 item 1: an import is one of consent's sources; a list from a booth's opt-in form must be able to
    say who opted in, or a playbook that requires opt-in never mails any of them."""
    http, key = import_stack.http, import_stack.settings.secret("id_key")
    params = {"filename": "booth.csv", "source": "expo-2026", "consent_basis": "booth form: Send me product news"}
    posted = await http.post(
        "/v1/imports", params=params, content=CONSENT_FILE.encode(), headers=AUTH | {"content-type": "text/csv"}
    )
    assert posted.status_code == 202, posted.text
    import_id = posted.json()["import_id"]
    job = await eventually(http, f"/v1/imports/{import_id}", lambda body: body["status"] in ("done", "failed"))
    assert (job["status"], job["created"], job["warnings"]) == ("done", 4, 1), job

    async def view(email: str) -> dict[str, Any]:
        return await eventually(http, f"/v1/leads/{lead_id_for(email, key)}", lambda v: v["exists"])

    ida = await view("ida@example.com")
    assert ida["consent"] == "opted_in" and "consent" not in ida["attributes"]
    (record,) = ida["consents"]
    assert {k: record[k] for k in ("status", "source", "channel", "wording", "form_id")} == {
        "status": "opted_in", "source": "import", "channel": "email",
        "wording": "booth form: Send me product news", "form_id": f"import:{import_id}"}  # fmt: skip
    jun = await view("jun@example.com")
    assert jun["consent"] == "opted_out" and jun["consents"][0]["source"] == "import"
    # An unreadable or empty cell opts nobody in; the report says which cell was unreadable.
    for email in ("kai@example.com", "lev@example.com"):
        assert ((await view(email))["consent"], (await view(email))["consents"]) == ("unknown", [])
    report = list(csv.reader(io.StringIO((await http.get(f"/v1/imports/{import_id}/report.csv", headers=AUTH)).text)))
    assert [row[:4] for row in report[1:]] == [
        ["4", "cleaned", "consent 'maybe' is neither yes nor no; no consent recorded", "kai@example.com"]
    ]


async def test_bad_uploads_get_a_4xx_that_says_what_to_fix(import_stack: Stack) -> None:
    http, headers = import_stack.http, AUTH | {"content-type": "text/csv"}
    no_email = await http.post("/v1/imports", content=b"name,company\nAnn,Acme\n", headers=headers)
    assert no_email.status_code == 422 and "--map" in no_email.json()["detail"]
    empty = await http.post("/v1/imports", content=b"", headers=headers)
    assert empty.status_code == 422 and "empty" in empty.json()["detail"]
    bad_map = await http.post("/v1/imports", params={"map": "Mail"}, content=b"email\na@example.com\n", headers=headers)
    assert bad_map.status_code == 422 and "column=field" in bad_map.json()["detail"]
    missing = await http.get(f"/v1/imports/imp-{'0' * 24}", headers=AUTH)
    assert missing.status_code == 404
    assert (await http.get(f"/v1/imports/imp-{'0' * 24}/report.csv")).status_code == 401


def many_rows(path: Path, people: int) -> Path:
    """Each person twice: once in ASCII, once in full width with a phone (the duplicate merges)."""
    with path.open("w", encoding="utf-8", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["Email", "Company", "Phone"])
        for i in range(people):
            writer.writerow([f"person{i}@example.com", f"Company {i} Inc.", ""])
        for i in range(people):
            email = f"PERSON{i}@example.com".translate({c: c + 0xFEE0 for c in range(0x21, 0x7F)})
            writer.writerow([email, "", f"03-1234-{i:04d}"])
    return path


async def test_an_interrupted_import_resumes_where_it_stopped(import_stack: Stack, tmp_path: Path) -> None:
    settings = import_stack.settings
    engine = make_engine(settings.resolved_database_url())
    sessions = make_sessionmaker(engine)
    state = AppState(settings, engine, sessions, load_active_playbook(settings), "", settings.secret("id_key"))
    delivery = LeadDelivery(state.temporal_call, lambda lead_id: lead_start(state, lead_id), settings.task_queue, 4)
    path = many_rows(tmp_path / "people.csv", 20)
    options = ImportOptions("fair-2026", "legitimate_interest", "JP")
    import_id = import_id_for(path, options)
    importer = Importer(sessions, delivery, state.id_key, chunk_rows=5)
    await importer.prepare(path, path.name, options, import_id)

    chunks_done = asyncio.Event()
    seen: list[int] = []

    def progress(job: dict[str, Any]) -> None:
        seen.append(job["lines_done"])
        if len(seen) == 3:
            chunks_done.set()

    running = asyncio.create_task(importer.run(import_id, on_progress=progress))
    await chunks_done.wait()
    running.cancel()  # as Ctrl-C does: mid-chunk, some leads of the next chunk already delivered
    with pytest.raises(asyncio.CancelledError):
        await running
    async with sessions() as session:
        stopped = await imports.get_import(session, import_id)
    assert stopped is not None and stopped["status"] == "interrupted"
    assert 16 <= stopped["lines_done"] < 41 and stopped["rows_read"] == stopped["lines_done"] - 1

    resumed: list[int] = []
    final = await Importer(sessions, delivery, state.id_key, chunk_rows=5).run(
        import_id, on_progress=lambda job: resumed.append(job["lines_done"])
    )
    assert final["status"] == "done" and resumed[0] > stopped["lines_done"]
    assert {k: final[k] for k in ("rows_read", "created", "merged_duplicate", "rejected", "lines_done")} == {
        "rows_read": 40, "created": 20, "merged_duplicate": 20, "rejected": 0, "lines_done": 41}  # fmt: skip
    async with sessions() as session:
        report = await imports.list_issues(session, import_id)
    assert [(r["line"], r["reason"]) for r in report] == [(22 + i, f"merged: same email as line {2 + i}")
                                                          for i in range(20)]  # fmt: skip
    assert len(await leads_on(import_stack, 20)) == 20
    await engine.dispose()


def test_cli_import_prints_a_json_summary_and_writes_the_report(import_stack: Stack, tmp_path: Path) -> None:
    settings = import_stack.settings
    env = os.environ | {
        "LEADFLOW_DATA_DIR": str(settings.data_dir),
        "LEADFLOW_DATABASE_URL": settings.resolved_database_url(),
        "TEMPORAL_ADDRESS": settings.temporal_address,
        "LEADFLOW_TASK_QUEUE": settings.task_queue,
        "LEADFLOW_ID_KEY": settings.secret("id_key"),
        "LEADFLOW_MASTER_KEY": settings.secret("master_key"),
        "LEADFLOW_PLAYBOOK_PATH": str(settings.playbook_path),
    }
    report = tmp_path / "report.csv"
    command = [sys.executable, "-m", "cli", "import", str(DIRTY), "--source", "expo-2026", "--country", "JP",
               "--json", "--report", str(report)]  # fmt: skip
    done = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert (summary["status"], summary["source"]) == ("done", "expo-2026")
    assert {k: summary[k] for k in ("rows_read", "created", "merged_duplicate", "rejected")} == {
        "rows_read": 8, "created": 4, "merged_duplicate": 2, "rejected": 2}  # fmt: skip
    lines = list(csv.reader(report.open(encoding="utf-8")))
    assert [row[0] for row in lines] == ["line", "4", "5", "6", "9", "11"]
    # Run again: the same import, already done; nothing is delivered twice.
    again = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert json.loads(again.stdout) == summary
