"""VisitorWorkflow: an anonymous visitor's touchpoints, held durably until someone identifies them.

Tracking answers "accepted" once a signal reached Temporal, so events of a visitor nobody knows yet
(a Segment ``anonymousId``, or a ``userId`` that is not an email) are signalled to one small workflow per
visitor instead of being kept in API memory or written by the API on the side. ``stitch(lead_id)``
(an ``identify`` with an email) forwards what it holds to the lead, with the original times, through an
activity that also records the link so the API sends the visitor's later events straight to the lead.
A visitor nobody identifies ends after ``retention_seconds`` without events (its events go with it);
a stitched one ends ``LINGER`` after its last forward.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from rules.model import TrackedEvent

MAX_HELD = 1000  # events held per unidentified visitor; the earliest are kept (the first touch matters)
LINGER = timedelta(hours=1)
FORWARD_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(minutes=1))


@dataclass
class VisitorStart:
    visitor_id: str
    retention_seconds: float = 30 * 86400
    # Carried across continue-as-new.
    held: list[TrackedEvent] = field(default_factory=list)
    lead_id: str | None = None
    dropped: int = 0
    max_held: int = MAX_HELD


@dataclass
class ForwardJob:
    """Events of a stitched visitor for its lead (the activity signals them and records the link)."""

    visitor_id: str
    lead_id: str
    events: list[TrackedEvent]


@dataclass
class VisitorView:
    visitor_id: str
    lead_id: str | None
    held: int
    dropped: int


@workflow.defn
class VisitorWorkflow:
    @workflow.init
    def __init__(self, start: VisitorStart) -> None:
        self._id = start.visitor_id
        self._held: list[TrackedEvent] = list(start.held)
        self._seen = {e.id for e in self._held}
        self._lead_id = start.lead_id
        self._linked = False  # the link row is written with the first forward of this run
        self._dropped = start.dropped
        self._max_held = start.max_held
        self._woken = False

    @workflow.signal
    def events(self, batch: list[TrackedEvent]) -> None:
        for event in batch:
            if event.id in self._seen:
                continue
            if len(self._held) >= self._max_held:
                self._dropped += 1
                continue
            self._seen.add(event.id)
            self._held.append(event)
        self._woken = True

    @workflow.signal
    def stitch(self, lead_id: str) -> None:
        if lead_id != self._lead_id:
            self._lead_id, self._linked = lead_id, False
        self._woken = True

    @workflow.query
    def view(self) -> VisitorView:
        return VisitorView(self._id, self._lead_id, len(self._held), self._dropped)

    @workflow.run
    async def run(self, start: VisitorStart) -> None:
        while True:
            if self._lead_id is not None and (self._held or not self._linked):
                batch = sorted(self._held, key=lambda e: e.at)  # in time order: the first touch first
                self._held = []
                await workflow.execute_activity(
                    "forward_visitor_events",
                    ForwardJob(self._id, self._lead_id, batch),
                    start_to_close_timeout=timedelta(seconds=30),
                    retry_policy=FORWARD_RETRY,
                )
                self._linked = True
                self._seen = set()  # the lead dedupes from here on
                continue
            if workflow.info().is_continue_as_new_suggested():
                await workflow.wait_condition(workflow.all_handlers_finished)
                workflow.continue_as_new(
                    VisitorStart(
                        self._id, start.retention_seconds, self._held, self._lead_id, self._dropped, self._max_held
                    )
                )
            idle = LINGER.total_seconds() if self._lead_id else start.retention_seconds
            self._woken = False
            try:
                await workflow.wait_condition(lambda: self._woken, timeout=idle)
            except TimeoutError:
                if not self._held or self._lead_id is None:
                    return  # expired: nobody identified this visitor in time, or its lead has everything
