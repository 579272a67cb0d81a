"""LeadDelivery on its own (a stand-in client): bounded, backing off while Temporal is overloaded, and a
lead that fails for a reason of its own never stops the others."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from temporalio.service import RPCError, RPCStatusCode

from capture.delivery import DeliveryStalled, LeadDelivery
from workflows.payloads import LeadStart, PlaybookBundle


class StandInClient:
    def __init__(self, answers: dict[str, list[RPCStatusCode | None]]) -> None:
        self.answers, self.calls, self.in_flight, self.most_in_flight = answers, [], 0, 0

    async def start_workflow(self, *args: Any, id: str, **kwargs: Any) -> None:
        self.calls.append((id, kwargs["start_signal"]))
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        await asyncio.sleep(0.01)
        self.in_flight -= 1
        answer = self.answers.get(id, [None]).pop(0) if self.answers.get(id) else None
        if answer is not None:
            raise RPCError(f"{answer.name}", answer, b"")


def delivery(client: StandInClient, concurrency: int = 8) -> LeadDelivery:
    @asynccontextmanager
    async def call() -> AsyncIterator[Any]:
        yield client

    async def start_for(lead_id: str) -> LeadStart:
        return LeadStart(lead_id, PlaybookBundle("v", {}))

    return LeadDelivery(call, start_for, "tq", concurrency)


@pytest.fixture(autouse=True)
def quick_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("capture.delivery.BACKOFF_FIRST_SECONDS", 0.001)


async def test_backs_off_on_resource_exhausted_then_delivers() -> None:
    busy = RPCStatusCode.RESOURCE_EXHAUSTED
    client = StandInClient({"lead-1": [busy, busy, None]})
    assert await delivery(client).deliver({"lead-1": {"email": "a@example.com"}}) == {}
    assert client.calls == [("lead-1", "upsert")] * 3


async def test_a_lead_refused_for_its_own_reason_does_not_stop_the_others() -> None:
    client = StandInClient({"lead-2": [RPCStatusCode.INVALID_ARGUMENT]})
    leads = {f"lead-{i}": {"email": f"p{i}@example.com"} for i in range(1, 4)}
    failures = await delivery(client).deliver(leads)
    assert failures == {"lead-2": "delivery failed: INVALID_ARGUMENT"}
    assert sorted(lead_id for lead_id, _ in client.calls) == ["lead-1", "lead-2", "lead-3"]


async def test_concurrency_is_bounded() -> None:
    client = StandInClient({})
    await delivery(client, concurrency=3).deliver({f"lead-{i}": {} for i in range(20)})
    assert client.most_in_flight == 3 and len(client.calls) == 20


async def test_stays_overloaded_stops_the_import_to_be_resumed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("capture.delivery.OVERLOAD_ATTEMPTS", 3)
    client = StandInClient({"lead-1": [RPCStatusCode.RESOURCE_EXHAUSTED] * 5})
    with pytest.raises(DeliveryStalled, match="overloaded"):
        await delivery(client).deliver({"lead-1": {}})
    assert len(client.calls) == 3
