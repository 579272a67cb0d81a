"""Delivering imported leads to their workflows: signal-with-start with the `upsert` signal (as POST
/v1/leads does), a bounded number in flight, and backing off while Temporal (or this process's own
limit) says it is overloaded instead of failing the import."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from typing import Any

from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from rules.model import ConsentRecord, LeadUpserted
from workflows.lead import LeadWorkflow
from workflows.payloads import LeadStart

TemporalCall = Callable[[], AbstractAsyncContextManager[Client]]
StartFor = Callable[[str], Awaitable[LeadStart]]
# lead ids -> the lead each is now, for those that are aliases (api/identity.py: merged or changed addresses).
Resolve = Callable[[list[str]], Awaitable[dict[str, str]]]
BACKOFF_FIRST_SECONDS = 0.2
BACKOFF_MAX_SECONDS = 5.0
OVERLOAD_ATTEMPTS = 12  # ~45 s of backing off before the import stops (it can be resumed)


class DeliveryStalled(Exception):
    """Temporal stayed overloaded: stop the import here; resuming continues from the last finished chunk."""


def _overloaded(exc: BaseException) -> bool:
    if isinstance(exc, RPCError):
        return exc.status in (RPCStatusCode.RESOURCE_EXHAUSTED, RPCStatusCode.UNAVAILABLE)
    # api.deps.Overloaded / ServiceUnavailable, without importing the API layer here.
    return type(exc).__name__ in ("Overloaded", "ServiceUnavailable")


class LeadDelivery:
    def __init__(
        self,
        call: TemporalCall,
        start_for: StartFor,
        task_queue: str,
        concurrency: int = 8,
        resolve: Resolve | None = None,
    ) -> None:
        self._call, self._start_for, self._task_queue = call, start_for, task_queue
        self._resolve = resolve
        self._limit = asyncio.Semaphore(concurrency)

    async def deliver(
        self, leads: Mapping[str, dict[str, Any]], consents: Mapping[str, ConsentRecord] | None = None
    ) -> dict[str, str]:
        """Send each lead's attributes (and the consent its rows recorded); returns the leads that failed for a
        reason of their own, with it."""
        consents = consents or {}
        failures: dict[str, str] = {}
        # An address a lead took on, or a merged duplicate's, goes to that lead (never restarts the old id).
        aliases = await self._resolve(list(leads)) if self._resolve is not None else {}

        async def one(lead_id: str, attributes: dict[str, Any]) -> None:
            async with self._limit:
                try:
                    upsert = LeadUpserted(attributes, consent=consents.get(lead_id), origin="import")
                    await self._with_backoff(aliases.get(lead_id, lead_id), upsert)
                except RPCError as exc:
                    failures[lead_id] = f"delivery failed: {exc.message or exc.status}"

        sends = (one(lead_id, attributes) for lead_id, attributes in leads.items())
        results = await asyncio.gather(*sends, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result
        return failures

    async def _with_backoff(self, lead_id: str, upsert: LeadUpserted) -> None:
        delay = BACKOFF_FIRST_SECONDS
        for attempt in range(OVERLOAD_ATTEMPTS):
            try:
                start = await self._start_for(lead_id)
                async with self._call() as client:
                    await client.start_workflow(
                        LeadWorkflow.run,
                        start,
                        id=lead_id,
                        task_queue=self._task_queue,
                        start_signal="upsert",
                        start_signal_args=[upsert],
                    )
                return
            except Exception as exc:
                if not _overloaded(exc):
                    raise
                if attempt == OVERLOAD_ATTEMPTS - 1:
                    raise DeliveryStalled(f"Temporal stayed overloaded: {exc}") from exc
                await asyncio.sleep(delay)
                delay = min(delay * 2, BACKOFF_MAX_SECONDS)
