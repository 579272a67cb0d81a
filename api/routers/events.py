"""Tracking ingest by email: events are grouped per lead into one signal (create-on-first-event)."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from datetime import UTC, datetime

from fastapi import APIRouter, status

from api.deps import Authorized, Session, State
from api.errors import BODY_ERRORS, V1_ERRORS, documented
from api.lead_ids import lead_id_for, normalize_email
from api.routers.leads import signal_events, tracked
from api.schemas import EventsAccepted, IdentifiedEventIn, IdentifiedEventsIn, refuse_unsendable
from rules.model import EventsReceived
from store import repo

SIGNALS_IN_PARALLEL = 16
router = APIRouter(prefix="/v1/events", tags=["events"], dependencies=[Authorized], responses=V1_ERRORS)


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=EventsAccepted,
    responses=BODY_ERRORS | documented(410, 429),
)
async def post_events(body: IdentifiedEventsIn, state: State, session: Session) -> EventsAccepted:
    """Events of identified visitors. An email seen for the first time creates its lead (source: tracking)."""
    refuse_unsendable(
        {("events", i, "email"): e.email for i, e in enumerate(body.events)}, smtp_utf8=state.settings.smtp_utf8
    )
    now = datetime.now(UTC)
    by_lead: dict[str, list[IdentifiedEventIn]] = defaultdict(list)
    for event in body.events:
        by_lead[lead_id_for(event.email, state.id_key)].append(event)
    batches = {
        lead_id: EventsReceived(
            tracked(list(events), now), {"email": normalize_email(events[0].email), "source": "tracking"}
        )
        for lead_id, events in by_lead.items()
    }
    # One signal per lead, several leads at a time (bounded): a batch of many leads is not N round trips long.
    limit = asyncio.Semaphore(SIGNALS_IN_PARALLEL)

    async def deliver(lead_id: str, batch: EventsReceived) -> None:
        async with limit:
            await signal_events(state, lead_id, batch, create=True)

    await asyncio.gather(*(deliver(lead_id, batch) for lead_id, batch in batches.items()))
    accepted = duplicates = 0
    for lead_id, batch in batches.items():
        new = await repo.add_touchpoints(session, lead_id, batch.events, now)
        accepted, duplicates = accepted + new, duplicates + len(batch.events) - new
    return EventsAccepted(accepted=accepted, duplicates=duplicates, leads=list(by_lead))
