"""The visitor workflow's side effects: forward a stitched visitor's events to its lead, record the link."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.service import RPCError, RPCStatusCode

from privacy.keys import LeadErased
from rules.model import EventsReceived
from store import ingest, lead_aliases
from workflows.visitor import ForwardJob


class VisitorActivities:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.sessions = sessions

    @activity.defn(name="forward_visitor_events")
    async def forward_visitor_events(self, job: ForwardJob) -> int:
        """Signal the events to the lead (it dedupes by event id, so a retry is harmless), then link.

        A lead that is gone (erased) takes nothing: its visitor's events are dropped, not resurrected."""
        lead_id = job.lead_id
        try:
            if job.events:
                try:
                    await activity.client().get_workflow_handle(lead_id).signal("events", EventsReceived(job.events))
                except RPCError as exc:
                    if exc.status != RPCStatusCode.NOT_FOUND:
                        raise
                    async with self.sessions() as session:  # merged into another lead since it was stitched?
                        survivor = await lead_aliases.current_lead(session, lead_id)
                    if survivor is None:
                        raise
                    lead_id = survivor
                    await activity.client().get_workflow_handle(lead_id).signal("events", EventsReceived(job.events))
        except LeadErased:
            return 0
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:
                return 0
            raise
        async with self.sessions() as session:
            await ingest.link_visitor(session, job.visitor_id, lead_id, datetime.now(UTC))
        return len(job.events)
