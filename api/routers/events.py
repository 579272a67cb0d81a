"""Tracking ingest by email: events are grouped per lead into one signal (create-on-first-event)."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime

from fastapi import APIRouter, status

from api.deps import Authorized, Session, State, Temporal
from api.lead_ids import lead_id_for, normalize_email
from api.routers.leads import signal_events, tracked
from api.schemas import EventsAccepted, IdentifiedEventIn, IdentifiedEventsIn
from rules.model import EventsReceived
from store import repo

router = APIRouter(prefix="/v1/events", tags=["events"], dependencies=[Authorized])


@router.post("", status_code=status.HTTP_202_ACCEPTED, response_model=EventsAccepted)
async def post_events(body: IdentifiedEventsIn, state: State, client: Temporal, session: Session) -> EventsAccepted:
    """Events of identified visitors. An email seen for the first time creates its lead (source: tracking)."""
    now = datetime.now(UTC)
    by_lead: dict[str, list[IdentifiedEventIn]] = defaultdict(list)
    for event in body.events:
        by_lead[lead_id_for(event.email, state.id_key)].append(event)
    accepted = duplicates = 0
    for lead_id, events in by_lead.items():
        items = tracked(list(events), now)
        batch = EventsReceived(items, {"email": normalize_email(events[0].email), "source": "tracking"})
        await signal_events(client, state, lead_id, batch, create=True)
        new = await repo.add_touchpoints(session, lead_id, items, now)
        accepted, duplicates = accepted + new, duplicates + len(items) - new
    return EventsAccepted(accepted=accepted, duplicates=duplicates, leads=list(by_lead))
