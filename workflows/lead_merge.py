"""LeadWorkflow's merges and identity changes (issue 9 item 5), mixed into workflows/lead.py.

The survivor drives a merge, so every failure before the hand-over is a clean refusal with nothing changed:
1. API -> survivor: update ``merge(MergeRequest)``; its validator refuses a survivor that is no lead (yet), one
   merged away, a merge into itself, a duplicate already absorbed (rules/merge.py says why).
2. survivor -> duplicate: signal ``hand_over``; a duplicate that is not running (unknown, erased, merged and
   ended) fails the signal: refused.
3. duplicate: refuses (signal ``merge_refused`` back) when it is no lead yet or already merged; otherwise it
   finishes what is in flight (an assignment's answer must be known before it is released), closes
   (``rules.merge.close_as_merged``: no owner, follow-up or timers), runs ``release_merged_lead`` (its
   assignment closes so the rep's capacity is free, follow-ups are cancelled, touchpoints and stitched
   visitors move, its id becomes an alias), signals the survivor ``absorb(LeadMerged)`` with its state, forwards
   what arrived meanwhile, projects its closed state and ends. Its view (a query still answers) says
   ``merged_into``; the API sends later events, touches and lookups for it to the survivor.
4. survivor: the hand-over is an input like any other (``decide`` -> ``rules.merge.absorb``); the update
   answers once it is applied. A hand-over arriving after the update gave up waiting is applied all the same.

Releasing before the hand-over is deliberate: when the survivor has no owner it asks for the duplicate's rep
by name, and that rep's capacity must already be free.
"""

from __future__ import annotations

import asyncio
from collections import deque
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ApplicationError, FailureError

with workflow.unsafe.imports_passed_through():
    from activities.lead_merge import LeadMergeActivities
    from rules.merge import close_as_merged, handover_refusal, merge_refusal
    from rules.model import ConsentRecorded, EmailFeedback, EventsReceived, Input, LeadMerged, LeadState, LeadUpserted
    from workflows.merge_payloads import AliasRecord, HandOver, LeadEdit, MergedLeadRelease, MergeRefused, MergeRequest
    from workflows.payloads import LeadView

MERGE_ANSWER_TIMEOUT = timedelta(seconds=60)
RELEASE_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(minutes=1))
# What a merged duplicate passes on to the survivor when it arrives during the hand-over (signal names).
FORWARDED_SIGNALS: dict[type, str] = {
    EventsReceived: "events",
    LeadUpserted: "upsert",
    ConsentRecorded: "consent",
    EmailFeedback: "email_feedback",
    LeadMerged: "absorb",
}


class LeadMerges:
    """The merge and identity handlers of LeadWorkflow (which defines the attributes declared here)."""

    _state: LeadState
    _inbox: deque[Input]
    _tasks: set[asyncio.Task[None]]
    _applying: bool
    _erase_requested: bool
    _handover_requests: list[HandOver]
    _merge_refusals: dict[str, str]

    if TYPE_CHECKING:

        def view(self) -> LeadView: ...

        async def _drain(self) -> None: ...

        def _project(self) -> None: ...

        def _activity_timeout(self, default_seconds: float) -> timedelta: ...

    # ---------------------------------------------------------------- survivor side

    @workflow.update
    async def merge(self, request: MergeRequest) -> LeadView:
        """Absorb the duplicate ``request.duplicate_id``: answers the merged lead."""
        duplicate = request.duplicate_id
        try:
            await workflow.get_external_workflow_handle(duplicate).signal("hand_over", HandOver(self._state.lead_id))
        except FailureError as err:
            raise ApplicationError(
                f"lead {duplicate} is not running (unknown, erased, or merged and ended)", type="UnknownDuplicate"
            ) from err
        try:
            await workflow.wait_condition(
                lambda: duplicate in self._state.merged_from or duplicate in self._merge_refusals,
                timeout=MERGE_ANSWER_TIMEOUT,
            )
        except TimeoutError as err:
            raise ApplicationError(
                f"lead {duplicate} did not hand itself over within {MERGE_ANSWER_TIMEOUT.seconds} s (is a worker "
                "running?): it is merged when it does",
                type="MergePending",
            ) from err
        reason = self._merge_refusals.pop(duplicate, None)
        if reason is not None and duplicate not in self._state.merged_from:
            raise ApplicationError(reason, type="MergeRefused")
        await workflow.wait_condition(lambda: not self._applying)
        return self.view()

    @merge.validator
    def _validate_merge(self, request: MergeRequest) -> None:
        self._refuse_if_gone()
        why = merge_refusal(self._state, request.duplicate_id)
        if why is not None:
            raise ApplicationError(why, type="MergeRefused")

    @workflow.signal
    def absorb(self, merged: LeadMerged) -> None:
        """A duplicate's hand-over (step 3 above): applied in order with the lead's other inputs."""
        self._inbox.append(merged)

    @workflow.signal
    def merge_refused(self, refusal: MergeRefused) -> None:
        self._merge_refusals[refusal.duplicate_id] = refusal.reason

    # ---------------------------------------------------------------- duplicate side

    @workflow.signal
    def hand_over(self, request: HandOver) -> None:
        """A survivor asks this lead to merge into it; the main loop answers (``_hand_over_if_asked``)."""
        self._handover_requests.append(request)

    async def _hand_over_if_asked(self) -> bool:
        """Refuse the hand-overs this lead cannot make; make the first it can. True: the workflow ends now."""
        requests = self._handover_requests
        while requests:
            why = handover_refusal(self._state) or ("the lead is being erased" if self._erase_requested else None)
            if why is None:
                break
            refused = requests.pop(0)
            await self._tell(refused.survivor_id, "merge_refused", MergeRefused(self._state.lead_id, why))
        if not requests:
            return False
        await self._drain()
        lead_id, survivor = self._state.lead_id, requests.pop(0).survivor_id
        handed_over = close_as_merged(self._state, survivor, workflow.now())
        await workflow.execute_activity_method(
            LeadMergeActivities.release_merged_lead,
            MergedLeadRelease(lead_id, survivor),
            start_to_close_timeout=self._activity_timeout(30),
            retry_policy=RELEASE_RETRY,
        )
        if not await self._tell(survivor, "absorb", LeadMerged(lead_id, handed_over)):
            workflow.logger.error("lead %s: the survivor %s took no hand-over", lead_id, survivor)
        for other in requests:
            why = f"lead {lead_id} is already merged into {survivor}"
            await self._tell(other.survivor_id, "merge_refused", MergeRefused(lead_id, why))
        requests.clear()
        await self._forward_inbox(survivor)
        self._project()  # the closed lead: no owner, no follow-up, in the read model too
        await workflow.wait_condition(lambda: not self._tasks and workflow.all_handlers_finished())
        await self._forward_inbox(survivor)
        return True

    async def _forward_inbox(self, survivor: str) -> None:
        while self._inbox:
            item = self._inbox.popleft()
            name = FORWARDED_SIGNALS.get(type(item))
            if name is not None:  # the duplicate's own activity results and timers end with it
                await self._tell(survivor, name, item)

    async def _tell(self, lead_id: str, signal: str, arg: Any) -> bool:
        try:
            await workflow.get_external_workflow_handle(lead_id).signal(signal, arg)
        except FailureError as err:
            workflow.logger.warning("signal %s to %s failed: %s", signal, lead_id, err)
            return False
        return True

    # ---------------------------------------------------------------- identity changes

    @workflow.update
    async def edit(self, change: LeadEdit) -> LeadView:
        """Attributes by lead id (PATCH /v1/leads/{id}): a new email keeps one lead, and the new address's
        lead id becomes an alias of this lead before the change applies (the old one is this lead's id)."""
        if change.alias_id is not None and change.alias_id != self._state.lead_id:
            await workflow.execute_activity_method(
                LeadMergeActivities.record_lead_alias,
                AliasRecord(change.alias_id, self._state.lead_id, "email_change"),
                start_to_close_timeout=self._activity_timeout(30),
                retry_policy=RELEASE_RETRY,
            )
        self._inbox.append(change.upsert)
        await workflow.wait_condition(lambda: change.upsert not in self._inbox and not self._applying)
        return self.view()

    @edit.validator
    def _validate_edit(self, change: LeadEdit) -> None:
        self._refuse_if_gone()

    def _refuse_if_gone(self) -> None:
        """Refuse an update for a lead that is no lead yet, merged away, being merged away or erased."""
        state = self._state
        if state.created_at is None:
            raise ApplicationError("the lead does not exist yet", type="UnknownLead")
        if state.merged_into is not None:
            raise ApplicationError(f"the lead was merged into {state.merged_into}", type="MergedLead")
        if self._handover_requests and handover_refusal(state) is None:
            raise ApplicationError("the lead is being merged into another", type="MergedLead")
        if self._erase_requested:
            raise ApplicationError("the lead is being erased", type="UnknownLead")
