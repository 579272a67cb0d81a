"""Accepted means durable: the API process (a real uvicorn subprocess) is killed while tracking batches are
in flight; the client retries blindly (same bodies, no event ids) against a new API process, and every event
reaches its lead exactly once: counted once by the workflow and stored once by its projection.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.testing import WorkflowEnvironment

from api.lead_ids import lead_id_for
from runtime import build_worker, with_lead_codec
from settings import ROOT, Settings
from store import repo
from tests.conftest import TEST_API_KEY, free_port
from tests.stack_processes import ApiProcess
from tests.test_integration import dev_server  # noqa: F401  (the session's Temporal dev server)
from workflows.lead import LeadWorkflow

pytestmark = pytest.mark.integration
AUTH = {"X-API-Key": TEST_API_KEY}
LEADS = 6
EVENTS_PER_LEAD = 240
PER_REQUEST = 80


def counting_playbook(path: Path) -> Path:
    """One point per `hit` event and nothing else that moves the score: the score counts events."""
    doc = yaml.safe_load((ROOT / "playbooks" / "default.yaml").read_text())
    doc["scoring"] = {"rules": [{"id": "hit", "when": 'event.type == "hit"', "points": 1}]}
    doc["journeys"] = []
    path.write_text(yaml.safe_dump(doc, allow_unicode=True))
    return path


@pytest.fixture
def api_processes() -> Iterator[list[ApiProcess]]:
    started: list[ApiProcess] = []
    yield started
    for api in started:
        api.stop()


@pytest.fixture
async def worker(
    dev_server: WorkflowEnvironment,  # noqa: F811
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    tmp_path: Path,
) -> AsyncIterator[Settings]:
    settings = settings.model_copy(
        update={
            "temporal_address": dev_server.client.service_client.config.target_host,
            "task_queue": f"tq-{uuid.uuid4().hex[:8]}",
            "playbook_path": counting_playbook(tmp_path / "playbook.yaml"),
        }
    )
    _CLIENTS[settings.task_queue] = dev_server.client
    async with build_worker(dev_server.client, settings, sessions):
        yield settings
    _CLIENTS.pop(settings.task_queue, None)


_CLIENTS: dict[str, Any] = {}


def dev_server_client(settings: Settings) -> Any:
    return _CLIENTS[settings.task_queue]


def batches(start: datetime) -> list[dict[str, Any]]:
    """Requests mixing every lead, no event ids: each event is told apart by its own time."""
    events = [
        {"email": f"k{lead}@example.com", "type": "hit", "at": (start + timedelta(seconds=n)).isoformat()}
        for n in range(EVENTS_PER_LEAD)
        for lead in range(LEADS)
    ]
    return [{"events": events[i : i + PER_REQUEST]} for i in range(0, len(events), PER_REQUEST)]


async def test_events_accepted_before_the_api_dies_arrive_exactly_once(
    worker: Settings, sessions: async_sessionmaker[AsyncSession], api_processes: list[ApiProcess]
) -> None:
    settings = worker
    bodies = batches(datetime.now(UTC) - timedelta(hours=1))
    answered: dict[int, dict[str, Any]] = {}
    lost_in_flight = 0
    async with httpx.AsyncClient(timeout=30, headers=AUTH) as http:
        first = ApiProcess(settings, free_port())
        api_processes.append(first)
        await first.ready(http)

        async def post(index: int, port: int) -> None:
            nonlocal lost_in_flight
            try:
                response = await http.post(f"http://127.0.0.1:{port}/v1/events", json=bodies[index])
            except httpx.TransportError:
                lost_in_flight += 1  # no answer: the client cannot know, and will retry
                return
            if response.status_code == 202:
                answered[index] = response.json()

        # Four requests at a time; the API is killed (SIGKILL, no shutdown) once a few have been answered.
        pending = [asyncio.create_task(post(i, first.port)) for i in range(4)]
        next_index = 4
        while len(answered) < 6:
            done, _ = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            pending = [t for t in pending if t not in done]
            while len(pending) < 4 and next_index < len(bodies):
                pending.append(asyncio.create_task(post(next_index, first.port)))
                next_index += 1
        first.kill()
        await asyncio.gather(*pending)
        assert lost_in_flight > 0, "the kill did not catch a request in flight"
        accepted_before_kill = {
            (r["lead_id"], r["id"]) for body in answered.values() for r in body["results"] if r["status"] == "accepted"
        }

        # A new API process; the client retries blindly: everything unanswered, and the answered ones again.
        second = ApiProcess(settings, free_port())
        api_processes.append(second)
        await second.ready(http)
        retried: dict[int, dict[str, Any]] = {}
        for index in range(len(bodies)):
            response = await http.post(f"http://127.0.0.1:{second.port}/v1/events", json=bodies[index])
            assert response.status_code == 202, response.text
            retried[index] = response.json()

    # The retry of an answered request derives the same ids: the events are the same ones, not new ones.
    for index, body in answered.items():
        assert [r["id"] for r in body["results"]] == [r["id"] for r in retried[index]["results"]]
    every_event = {(r["lead_id"], r["id"]) for body in retried.values() for r in body["results"]}
    assert accepted_before_kill <= every_event and len(every_event) == LEADS * EVENTS_PER_LEAD

    # Each lead counted each of its events once (score = events), and its projection stored each once.
    client = with_lead_codec(dev_server_client(settings), settings, sessions)
    lead_ids = [lead_id_for(f"k{lead}@example.com", settings.secret("id_key")) for lead in range(LEADS)]
    for lead_id in lead_ids:
        assert await _score_when_settled(client, lead_id) == EVENTS_PER_LEAD
    for lead_id in lead_ids:
        stored = await _stored_events(sessions, lead_id, EVENTS_PER_LEAD)
        assert stored == {event_id for owner, event_id in every_event if owner == lead_id}


async def _score_when_settled(client: Any, lead_id: str) -> int:
    score, same = -1, 0
    for _ in range(300):
        view = await client.get_workflow_handle(lead_id).query(LeadWorkflow.view)
        same = same + 1 if view.score == score else 0
        score = view.score
        if score >= EVENTS_PER_LEAD and same >= 5:
            break
        await asyncio.sleep(0.1)
    return score


async def _stored_events(sessions: async_sessionmaker[AsyncSession], lead_id: str, expected: int) -> set[str]:
    rows: list[dict[str, Any]] = []
    for _ in range(200):
        async with sessions() as session:
            rows = await repo.list_touchpoints(session, lead_id, limit=expected * 2)
        if len(rows) >= expected:
            break
        await asyncio.sleep(0.1)
    ids = [row["event_id"] for row in rows]
    assert len(ids) == len(set(ids))
    return set(ids)
