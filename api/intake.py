"""The one way events enter leadflow: every ingest door (``/v1/events``, ``/v1/leads/{id}/events``, and the
Segment, form and webhook doors built on it) hands its events here.

"Accepted" means durable: an event is answered accepted only after Temporal has acknowledged the signal
that carries it (the history holds it, whatever happens to this process next). Retries are safe: a client
id, or else an id derived from the event's content and time, lets the lead's workflow count a repeat once
(rules' dedupe window); this process also answers "duplicate" at once for repeats inside one request and
for ids it accepted recently. Nothing is written to the store here: the lead's workflow projects its
touchpoints (the one writer).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from api.identity import current_lead, current_leads, survivor_of
from api.schemas import EventIn, EventResult
from rules.model import EventsReceived, TrackedEvent
from runtime import lead_codec
from workflows.lead import LeadWorkflow
from workflows.payloads import LeadStart

if TYPE_CHECKING:
    from api.deps import AppState

SIGNALS_IN_PARALLEL = 16
RECENT_IDS_KEPT = 200_000  # (lead, event id) pairs this process remembers accepting (~30 MB at most)
# An event sent without `at` is stamped with the receive time; its derived id uses that time to the minute,
# so a blind retry within the same minute is still recognised.
UNTIMED_ID_RESOLUTION_SECONDS = 60


def event_id_for(lead_id: str, event: EventIn, now: datetime) -> str:
    """The client's id, else a hash of the event's content and time (never random: a blind retry of the
    same event gets the same id)."""
    if event.id:
        return event.id
    if event.at is not None:
        when = event.at.isoformat()
    else:
        when = f"~{int(now.timestamp()) // UNTIMED_ID_RESOLUTION_SECONDS}"
    content = json.dumps(
        [lead_id, event.type, when, event.url, event.name, event.properties],
        sort_keys=True,
        default=str,
        ensure_ascii=False,
    )
    return "h-" + hashlib.sha256(content.encode()).hexdigest()[:32]


def tracked(lead_id: str, events: Sequence[EventIn], now: datetime) -> list[TrackedEvent]:
    """Events as the rules take them, with their ids settled and times no later than now."""
    return [
        TrackedEvent(event_id_for(lead_id, e, now), e.type, min(e.at or now, now), e.url, e.name, dict(e.properties))
        for e in events
    ]


class RecentIds:
    """(lead, event id) pairs this process accepted lately: a bounded LRU, so a retry of a whole request
    is answered "duplicate" without a round trip. The workflow's dedupe window remains the authority."""

    def __init__(self, size: int = RECENT_IDS_KEPT) -> None:
        self._seen: OrderedDict[tuple[str, str], None] = OrderedDict()
        self._size = size

    def __contains__(self, key: tuple[str, str]) -> bool:
        return key in self._seen

    def add(self, keys: list[tuple[str, str]]) -> None:
        for key in keys:
            self._seen[key] = None
            self._seen.move_to_end(key)
        while len(self._seen) > self._size:
            self._seen.popitem(last=False)


@dataclass
class LeadBatch:
    """One lead's share of a request: its events (with their positions in the request) and, for a lead the
    events may create, the identifying attributes."""

    lead_id: str
    events: list[TrackedEvent] = field(default_factory=list)
    positions: list[int] = field(default_factory=list)
    attributes: dict[str, str] = field(default_factory=dict)


async def resolve_new_lead(state: AppState, client: Client, lead_id: str) -> str:
    """The lead an address's id is now (api/identity.py), with the data key of a new lead made meanwhile.

    Creating a lead needs two store round trips before Temporal sees it: the alias look-up, and the data
    key its first payload is sealed with (privacy/keys.py). Run one after the other they were about a
    third of a create's time, on SQLite and on PostgreSQL alike (bench/README.md); run side by side, the
    key is ready in the ring when the codec asks for it. Most ids are no alias: for one that is, the key
    made for it is one spare row for an id that never gets a payload (erasing the lead erases its aliases'
    keys too). A failure here is the codec's to report, for the lead actually started."""
    codec = lead_codec(client)
    if codec is None:
        return await current_lead(state, lead_id)

    async def provision() -> None:
        with contextlib.suppress(Exception):
            await codec.keys.for_new_lead(lead_id)

    resolved, _ = await asyncio.gather(current_lead(state, lead_id), provision())
    return resolved


async def lead_start(state: AppState, lead_id: str) -> LeadStart:
    playbook = await state.current_playbook()
    return LeadStart.new(lead_id, playbook.bundle, state.lead_options)


async def signal_events(
    state: AppState, lead_id: str, batch: EventsReceived, *, create: bool, resolved: bool = False
) -> None:
    """One signal for a request's events of one lead (signal-with-start when the lead may be new). Returns
    once Temporal has acknowledged it: from then on the events are durable.

    A lead that may be new is first resolved through the aliases (api/identity.py) unless the caller did
    (``resolved``); a known lead whose workflow has ended is looked up then, and a merged one's survivor
    gets the events."""
    if create and not resolved:
        lead_id = (await current_leads(state, [lead_id])).get(lead_id, lead_id)
    start = await lead_start(state, lead_id) if create else None
    async with state.temporal_call() as client:
        if start is not None:
            await client.start_workflow(
                LeadWorkflow.run,
                start,
                id=lead_id,
                task_queue=state.settings.task_queue,
                start_signal="events",
                start_signal_args=[batch],
            )
        else:
            try:
                await client.get_workflow_handle(lead_id).signal(LeadWorkflow.events, batch)
            except RPCError as exc:
                survivor = await survivor_of(state, lead_id) if exc.status == RPCStatusCode.NOT_FOUND else None
                if survivor is None:
                    raise
                await client.get_workflow_handle(survivor).signal(LeadWorkflow.events, batch)


async def deliver(
    state: AppState, batches: list[LeadBatch], results: list[EventResult], *, create: bool, origin: str
) -> None:
    """Signal each lead's new events (several leads at a time, bounded) and fill in their results.

    ``results`` holds one entry per event of the request; rejected ones are already set. A lead whose signal
    fails raises after the others were delivered (their results stand; the caller answers the error)."""
    recent: RecentIds = state.recent_event_ids
    to_send: list[tuple[LeadBatch, EventsReceived]] = []
    if create:  # one look-up for the request: an address may belong to a lead under another id
        aliases = await current_leads(state, [b.lead_id for b in batches])
        for batch in batches:
            batch.lead_id = aliases.get(batch.lead_id, batch.lead_id)
    for batch in batches:
        fresh = EventsReceived([], dict(batch.attributes), origin=origin)
        in_request: set[str] = set()
        for event, position in zip(batch.events, batch.positions, strict=True):
            known = event.id in in_request or (batch.lead_id, event.id) in recent
            results[position] = EventResult(
                index=position, id=event.id, lead_id=batch.lead_id, status="duplicate" if known else "accepted"
            )
            if not known:
                in_request.add(event.id)
                fresh.events.append(event)
        if fresh.events:
            to_send.append((batch, fresh))
    limit = asyncio.Semaphore(SIGNALS_IN_PARALLEL)

    async def one(batch: LeadBatch, received: EventsReceived) -> None:
        async with limit:
            await signal_events(state, batch.lead_id, received, create=create, resolved=True)
        recent.add([(batch.lead_id, e.id) for e in received.events])

    outcomes = await asyncio.gather(*(one(b, r) for b, r in to_send), return_exceptions=True)
    failures = [o for o in outcomes if isinstance(o, BaseException)]
    if failures:
        raise failures[0]
