"""Tracking ingest by email: events are grouped per lead into one signal (create-on-first-event)."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, status

from api.deps import State
from api.errors import BODY_ERRORS, V1_ERRORS, documented
from api.intake import LeadBatch, deliver, tracked
from api.lead_ids import lead_id_for, normalize_email
from api.roles import allow
from api.schemas import EventResult, EventsAccepted, IdentifiedEventsIn, refuse_unsendable, unsendable_problems
from rules.access import Role

router = APIRouter(prefix="/v1/events", tags=["events"], dependencies=[allow(Role.tracking)], responses=V1_ERRORS)


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=EventsAccepted,
    responses=BODY_ERRORS | documented(410, 429),
)
async def post_events(body: IdentifiedEventsIn, state: State) -> EventsAccepted:
    """Events of identified visitors. An email seen for the first time creates its lead (the rules give it
    the source `tracking` when nothing better is known). The answer says per event: accepted (durable),
    duplicate or rejected with the reason; a bad event never holds back the good ones."""
    now = datetime.now(UTC)
    total = len(body.events) + len(body.rejected)
    results: list[EventResult | None] = [None] * total
    for position, reason in body.rejected.items():
        results[position] = EventResult(index=position, status="rejected", reason=reason)
    problems = unsendable_problems({e.email for e in body.events}, smtp_utf8=state.settings.smtp_utf8)
    batches: dict[str, LeadBatch] = {}
    for event, position in zip(body.events, body.positions, strict=True):
        if event.email in problems:
            results[position] = EventResult(index=position, status="rejected", reason=f"email: {problems[event.email]}")
            continue
        lead_id = lead_id_for(event.email, state.id_key)
        batch = batches.setdefault(lead_id, LeadBatch(lead_id, attributes={"email": normalize_email(event.email)}))
        batch.events.extend(tracked(lead_id, [event], now))
        batch.positions.append(position)
    if not batches and problems:  # no good event at all: a 422 naming each address, as for any bad body
        refuse_unsendable(
            {("events", p, "email"): e.email for e, p in zip(body.events, body.positions, strict=True)},
            smtp_utf8=state.settings.smtp_utf8,
        )
    await deliver(state, list(batches.values()), results, create=True, origin="tracking")  # type: ignore[arg-type]
    return summary(results)  # type: ignore[arg-type]


def summary(results: list[EventResult]) -> EventsAccepted:
    counts = {status: sum(1 for r in results if r.status == status) for status in ("accepted", "duplicate", "rejected")}
    leads = list(dict.fromkeys(r.lead_id for r in results if r.lead_id))
    return EventsAccepted(
        accepted=counts["accepted"],
        duplicates=counts["duplicate"],
        rejected=counts["rejected"],
        leads=leads,
        results=results,
    )
