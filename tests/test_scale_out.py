"""Scale-out on the real engines: two worker processes and two API processes (uvicorn) share one Temporal
dev server and one PostgreSQL store. A few hundred leads are spread over both APIs, one worker is SIGKILLed
mid-run, and every lead still completes: welcomed, qualified, assigned once, its rep notified once, as seen
by a real SMTP server and the store. No coordination between the processes but Temporal's task queue and
PostgreSQL's row locks (assignment is serialised per team, emails claimed per key).

LEADFLOW_SCALE_LEADS (default 200) sets the number of leads for a larger manual run.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.testing import WorkflowEnvironment

from activities.email import message_id
from settings import Settings
from store.models import Assignment, EmailRow, Lead
from tests.conftest import TEST_API_KEY, Inbox, free_port
from tests.stack_processes import ApiProcess, WorkerProcess
from tests.test_integration import dev_server  # noqa: F401  (the session's Temporal dev server)

pytestmark = pytest.mark.integration
AUTH = {"X-API-Key": TEST_API_KEY}
LEADS = int(os.environ.get("LEADFLOW_SCALE_LEADS", "200"))
IN_FLIGHT = 16  # requests at a time, over both APIs
# Whitepaper + click + pricing page = 60 points, and the lead is grade A: SQL, routed to inside-sales.
QUALIFYING = [
    {"id": "ev-download", "type": "download", "name": "whitepaper"},
    {"id": "ev-click", "type": "email_click"},
    {"id": "ev-pricing", "type": "page_view", "url": "https://example.com/pricing"},
]
# A killed worker's activities are retried once their start-to-close timeout (60 s for email) passes.
SETTLE_SECONDS = 150.0


def person(n: int) -> dict[str, Any]:
    return {"email": f"scale{n}@example.org", "title": "VP Sales", "company_size": 500, "country": "US"}


@pytest.fixture
async def scaled_out(
    dev_server: WorkflowEnvironment,  # noqa: F811
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    tmp_path: Path,
) -> AsyncIterator[tuple[Settings, list[WorkerProcess], list[ApiProcess]]]:
    settings = settings.model_copy(
        update={
            "temporal_address": dev_server.client.service_client.config.target_host,
            "task_queue": f"scale-{uuid.uuid4().hex[:8]}",
        }
    )
    workers = [WorkerProcess(settings, tmp_path / f"worker-{n}.log") for n in range(2)]
    apis = [ApiProcess(settings, free_port(), tmp_path / f"api-{n}.log") for n in range(2)]
    try:
        async with httpx.AsyncClient(timeout=30) as http:
            await asyncio.gather(*(_answering(api, http) for api in apis))
        await asyncio.gather(*(worker.polling(dev_server.client) for worker in workers))
        yield settings, workers, apis
    finally:
        for process in (*apis, *workers):
            process.stop()


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
async def test_two_workers_two_apis_one_worker_killed_every_lead_completes_once(
    scaled_out: tuple[Settings, list[WorkerProcess], list[ApiProcess]],
    sessions: async_sessionmaker[AsyncSession],
    smtp: tuple[Inbox, int],
) -> None:
    settings, workers, apis = scaled_out
    inbox, _ = smtp
    served: Counter[int] = Counter()
    limit = asyncio.Semaphore(IN_FLIGHT)

    async def post(http: httpx.AsyncClient, api: ApiProcess, path: str, body: dict[str, Any]) -> dict[str, Any]:
        async with limit:
            for _ in range(20):  # 503 + Retry-After is the API's backpressure: honour it
                response = await http.post(f"http://127.0.0.1:{api.port}{path}", json=body, headers=AUTH)
                if response.status_code != 503:
                    break
                await asyncio.sleep(float(response.headers.get("Retry-After", "1")))
        assert response.status_code == 202, (path, response.status_code, response.text)
        served[api.port] += 1
        return dict(response.json())

    async def lead_arrives(http: httpx.AsyncClient, n: int) -> str:
        # The lead is created through one API and its behaviour arrives through the other.
        created = await post(http, apis[n % 2], "/v1/leads", person(n))
        lead_id = str(created["lead_id"])
        await post(http, apis[(n + 1) % 2], f"/v1/leads/{lead_id}/events", {"events": QUALIFYING})
        return lead_id

    loop = asyncio.get_running_loop()
    started = loop.time()
    async with httpx.AsyncClient(timeout=60) as http:
        first = [asyncio.create_task(lead_arrives(http, n)) for n in range(LEADS // 3)]
        # Mid-run: the first third is in flight and the first leads have been worked on. SIGKILL one worker
        # (early: its in-flight activities come back only after their start-to-close timeout).
        await inbox.wait_for(lambda m: m["X-Leadflow-Kind"] == "nurture", seconds=60)
        workers[0].kill()
        killed_at = loop.time()
        rest = [asyncio.create_task(lead_arrives(http, n)) for n in range(LEADS // 3, LEADS)]
        lead_ids = await asyncio.gather(*first, *rest)
    accepted_at = loop.time()
    assert len(set(lead_ids)) == LEADS
    assert set(served) == {api.port for api in apis} and min(served.values()) >= LEADS

    # Every lead completes on the surviving worker: assigned, both emails recorded as sent (a send the killed
    # worker had in flight is retried after its start-to-close timeout), and received.
    await _until(lambda: _assigned_leads(sessions), LEADS, "leads assigned")
    await _until(lambda: _sent_emails(sessions), 2 * LEADS, "emails sent in the ledger")

    async def rep_emails() -> int:
        return len(set(_kinds(inbox)["rep_new_lead"]))

    await _until(rep_emails, LEADS, "rep notifications received")
    workers[1].check_alive()
    done_at = loop.time()

    async with sessions() as session:
        ledger = (await session.execute(select(EmailRow.key, EmailRow.lead_id, EmailRow.kind, EmailRow.status))).all()
        assignments = (await session.execute(select(Assignment.lead_id, Assignment.rep_id))).all()
        stages = Counter((await session.execute(select(Lead.stage))).scalars())
    assert stages == {"sql": LEADS}

    # One assignment per lead, and round-robin stayed exact across two workers: the team row lock serialised it.
    assert Counter(lead for lead, _ in assignments) == dict.fromkeys(lead_ids, 1)
    per_rep = Counter(rep for _, rep in assignments)
    assert set(per_rep) == {"rep-aiko", "rep-ben"} and abs(per_rep["rep-aiko"] - per_rep["rep-ben"]) <= 1

    # Each lead: one welcome and one rep notification in the ledger, all sent, and the SMTP server saw
    # exactly those Message-IDs. A resend with the same Message-ID (worker killed between the relay's
    # 250 and the ledger write) is allowed by SMTP and reported, never a second distinct email.
    assert {row.status for row in ledger} == {"sent"}
    by_lead_kind = Counter((row.lead_id, row.kind) for row in ledger)
    assert by_lead_kind == {(lead, kind): 1 for lead in lead_ids for kind in ("nurture", "rep_new_lead")}
    received = _kinds(inbox)
    for kind in ("nurture", "rep_new_lead"):
        expected = {message_id(row.key, settings.message_id_domain) for row in ledger if row.kind == kind}
        assert set(received[kind]) == expected, kind
    resent = {mid: count for mids in received.values() for mid, count in Counter(mids).items() if count > 1}
    print(
        f"\n{LEADS} leads over 2 APIs {dict(served)}: worker killed at {killed_at - started:.1f}s, all accepted at "
        f"{accepted_at - started:.1f}s, all complete at {done_at - started:.1f}s; resends: {len(resent)}"
    )


async def _answering(api: ApiProcess, http: httpx.AsyncClient, seconds: float = 120.0) -> None:
    """Like ApiProcess.ready, with a deadline in time rather than tries: four processes start at once here."""
    deadline = asyncio.get_running_loop().time() + seconds
    while asyncio.get_running_loop().time() < deadline:
        api.check_alive()
        try:
            if (await http.get(f"http://127.0.0.1:{api.port}/health/live")).status_code < 500:
                return
        except httpx.TransportError:
            pass
        await asyncio.sleep(0.2)
    raise AssertionError(f"the API process on port {api.port} never answered; log: {api.log_path}")


def _kinds(inbox: Inbox) -> dict[str, list[str]]:
    kinds: dict[str, list[str]] = {"nurture": [], "rep_new_lead": []}
    for message in list(inbox.messages):
        kinds.setdefault(message["X-Leadflow-Kind"], []).append(message["Message-ID"])
    return kinds


async def _assigned_leads(sessions: async_sessionmaker[AsyncSession]) -> int:
    async with sessions() as session:
        query = select(func.count()).select_from(Lead).where(Lead.owner_rep_id.is_not(None))
        return int((await session.execute(query)).scalar_one())


async def _sent_emails(sessions: async_sessionmaker[AsyncSession]) -> int:
    async with sessions() as session:
        query = select(func.count()).select_from(EmailRow).where(EmailRow.status == "sent")
        return int((await session.execute(query)).scalar_one())


async def _until(count, wanted: int, what: str, seconds: float = SETTLE_SECONDS) -> None:  # type: ignore[no-untyped-def]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    seen = 0
    while loop.time() < deadline:
        seen = await count()
        if seen >= wanted:
            return
        await asyncio.sleep(0.5)
    raise AssertionError(f"{what}: only {seen} of {wanted} within {seconds:.0f}s")
