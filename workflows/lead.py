"""LeadWorkflow: the durable shell around ``rules.decide``. One workflow per lead.

It buffers signals, feeds each input to ``decide``, carries out the resulting commands through
activities (started without blocking, so signals keep flowing while an email is sent), sleeps until the
earliest timer in the state (journey waits, SLA deadlines, decay) and projects state changes to the read
model: stage, owner and SLA changes at once, score-only changes coalesced per ``projection_delay``.
"""

from __future__ import annotations

import asyncio
from collections import deque
from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy, SearchAttributeUpdate
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.email import EmailActivities, EmailJob
    from activities.leads import LeadActivities
    from rules import compiled_from_document, decide, material_view, snapshot
    from rules.consent import effective_status
    from rules.engine import Decision
    from rules.model import (
        TOUCH_KINDS,
        AssignmentFailed,
        AssignRep,
        Command,
        ConsentRecorded,
        EmailFeedback,
        EventsReceived,
        Input,
        LeadSnapshot,
        LeadState,
        LeadUpserted,
        RepAssigned,
        SalesChange,
        SendEmail,
        TimerFired,
        TouchLogged,
        Touchpoint,
    )
    from rules.playbook import CompiledPlaybook
    from rules.sales import Refusal, refusal
    from rules.score_history import fold_score_changes
    from workflows import search_attributes as sa
    from workflows.lead_merge import LeadMerges
    from workflows.lead_migration import PlaybookMigrations
    from workflows.merge_payloads import HandOver
    from workflows.payloads import CURRENT_SHAPE, AssignAnswerV1, LeadStart, LeadView

EMAIL_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=2),
    maximum_interval=timedelta(minutes=5),
    maximum_attempts=20,
    # Mirrors activities.email.PERMANENT_ERRORS (the Mailer raises these non-retryable anyway): a send
    # that can never succeed fails at once and visibly in the ledger, not after 20 attempts.
    non_retryable_error_types=[
        "InvalidAddress",
        "TemplateError",
        "InvalidHeader",
        "SmtpRejected",
        "SmtpUtf8Unsupported",
    ],
)
STORE_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(minutes=1))
# An assignment rides out a store outage of about two hours like a projection, then the lead waits in its team's
# queue (AssignmentFailed) and is offered again: never an activity retried for ever. (Before this bound no
# assignment could fail, so no recorded history holds such a failure: no patch needed.)
ASSIGN_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1), maximum_interval=timedelta(minutes=1), maximum_attempts=120
)
# A projection rides out a store outage of about two hours, then gives up visibly (projection_error in the
# view): the next material change projects the whole lead again. Permanent errors fail at the first attempt.
PROJECTION_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    maximum_interval=timedelta(minutes=1),
    maximum_attempts=120,
    non_retryable_error_types=["UnstorableSnapshot"],
)
# CURRENT_SHAPE (workflows/payloads.py) stands for the patches before it (see run): rules-re2-patterns,
# deadline-timer-v2, touchpoints-projected, followups-cancelled-with-stage-and-owner, assign-local-activity and
# drain-applies-inbox.
# The API stamps a touch without a time with its own clock; allow that much skew against the workflow's.
TOUCH_CLOCK_SKEW = timedelta(minutes=1)
# A sales change's refusal as the update's failure type; the API answers 409 or 422 by it (api/routers/lead_sales.py).
_REFUSAL_TYPES = {"conflict": "SalesConflict", "invalid": "SalesInvalid"}


@workflow.defn
# Merges and identity changes: workflows/lead_merge.py; playbook migrations: workflows/lead_migration.py.
class LeadWorkflow(LeadMerges, PlaybookMigrations):
    @workflow.init
    def __init__(self, start: LeadStart) -> None:
        self._state: LeadState = start.state or LeadState(lead_id=start.lead_id)
        self._inbox: deque[Input] = deque()
        self._tasks: set[asyncio.Task[None]] = set()
        self._projected_score_seq = start.projected_score_seq
        self._projected_stage_seq = start.projected_stage_seq
        self._projected_view: tuple[object, ...] | None = None
        self._projection_due: datetime | None = None
        self._playbook: CompiledPlaybook | None = None
        self._options = start.options
        self._v2 = True
        self._current = False  # set by run (CURRENT_SHAPE)
        self._timer_task: asyncio.Task[None] | None = None
        self._timer_deadline: datetime | None = None
        self._timer_fired = False
        self._erase_requested = False
        self._projection_error: str | None = None
        # Touchpoints decided but not yet projected (the workflow is their one writer); see _project.
        self._touchpoints: list[Touchpoint] = list(start.touchpoints)
        self._project_touchpoints = False
        # Merges (workflows/lead_merge.py): survivors asking this lead to hand itself over; refusals answered to it.
        self._handover_requests: list[HandOver] = []
        self._merge_refusals: dict[str, str] = {}
        # Sales changes refused when their turn came (rules/sales.py), by change id, for their update to answer.
        self._sales_refusals: dict[str, Refusal] = {}
        self._init_migrations(start)

    # ---------------------------------------------------------------- handlers

    @workflow.signal
    def upsert(self, update: LeadUpserted) -> None:
        self._inbox.append(update)

    @workflow.signal
    def events(self, batch: EventsReceived) -> None:
        self._inbox.append(batch)

    @workflow.signal
    def erase(self) -> None:
        """Right to erasure: take no more inputs, let in-flight activities finish, end the workflow.

        The API then anonymises the store and destroys the lead's data key (privacy/codec.py).
        """
        self._erase_requested = True

    @workflow.update
    async def log_touch(self, touch: TouchLogged) -> LeadView:
        self._inbox.append(touch)
        # Answer once the touch has been applied, so the caller sees the SLA outcome.
        await workflow.wait_condition(lambda: touch not in self._inbox and not self._applying)
        return self.view()

    @log_touch.validator
    def _validate_touch(self, touch: TouchLogged) -> None:
        self._refuse_if_gone()  # no lead yet, merged or erased
        created = self._state.created_at
        if touch.kind not in TOUCH_KINDS:
            raise ApplicationError(f"kind must be one of {', '.join(sorted(TOUCH_KINDS))}", type="InvalidTouch")
        if created is not None and touch.at < created - TOUCH_CLOCK_SKEW:
            raise ApplicationError(
                f"at: a touch cannot predate the lead (created {created.isoformat()})",
                type="InvalidTouch",
            )

    @workflow.signal
    def consent(self, change: ConsentRecorded) -> None:
        """A consent change nobody waits on (an unsubscribe link, a complaint)."""
        self._inbox.append(change)

    @workflow.signal
    def email_feedback(self, feedback: EmailFeedback) -> None:
        """A hard bounce or a complaint for the lead's address (POST /v1/email-events): nurture ends."""
        self._inbox.append(feedback)

    @workflow.update
    async def record_consent(self, change: ConsentRecorded) -> LeadView:
        self._inbox.append(change)
        # Answer once applied, so the caller sees the consent that now decides.
        await workflow.wait_condition(lambda: change not in self._inbox and not self._applying)
        return self.view()

    @record_consent.validator
    def _validate_consent(self, change: ConsentRecorded) -> None:
        self._refuse_if_gone()

    @workflow.update
    async def sales_change(self, change: SalesChange) -> LeadView:
        """Accept, reject, outcomes and manual changes (rules/sales.py). Like log_touch: the change joins the
        inbox and the answer waits until it is applied, nothing else runs in the handler."""
        self._inbox.append(change)
        await workflow.wait_condition(lambda: change not in self._inbox and not self._applying)
        refused = self._sales_refusals.pop(change.change_id, None)
        if refused is not None:  # valid when asked, but another change came first (e.g. two "lost" at once)
            raise ApplicationError(refused.message, type=_REFUSAL_TYPES[refused.kind])
        return self.view()

    @sales_change.validator
    def _validate_sales_change(self, change: SalesChange) -> None:
        self._refuse_if_gone()
        if self._playbook is None:
            return  # the run has not compiled its playbook yet (an update on a cold start): checked when applied
        refused = refusal(self._state, change, self._playbook)
        if refused is not None:
            raise ApplicationError(refused.message, type=_REFUSAL_TYPES[refused.kind])

    @workflow.query
    def view(self) -> LeadView:
        s = self._state
        return LeadView(
            lead_id=s.lead_id,
            exists=s.created_at is not None,
            stage=s.stage,
            score=round(s.score),
            grade=s.grade,
            grade_reasons=s.grade_reasons,
            owner=s.owner,
            followup=s.followup,
            attributes=s.attributes,
            journeys=list(s.journeys.values()),
            timers=s.timers,
            recent_score_changes=s.score_changes[-20:],
            playbook_version=s.playbook_version,
            created_at=s.created_at,
            updated_at=s.updated_at,
            queued_team=s.queued_team,
            consent=effective_status(s.consents)[0],
            consents=s.consents,
            nurture_holds=s.nurture_holds,
            rule_errors=s.rule_errors,
            projection_error=self._projection_error,
            email_feedback=s.email_feedback,
            original_source=s.original_source,
            latest_source=s.latest_source,
            attribute_origins=s.attribute_origins,
            merged_into=s.merged_into,
            merged_from=s.merged_from,
            acceptance=s.acceptance,
            outcome=s.outcome,
            nurture_paused=s.nurture_paused,
        )

    # ---------------------------------------------------------------- main loop

    _applying = False

    @workflow.run
    async def run(self, start: LeadStart) -> None:
        # One shape stands for every change of history made before it. A run started with it says so in its
        # input and records nothing for it; runs started before that field consult the shape's patch (a marker
        # and an upsert of TemporalChangeVersion, a visibility write on the server, per new lead), and runs
        # recorded before the patch consult each older patch at its place, as they did.
        if start.shape == CURRENT_SHAPE:
            self._current = True
            if workflow.unsafe.is_replaying():
                # A worker of the day before may have run this start and recorded the patch (a rolling upgrade):
                # consume its marker. Replaying, patched() issues no command; with no marker it answers False.
                workflow.patched(CURRENT_SHAPE)
        else:
            self._current = workflow.patched(CURRENT_SHAPE)
        # Rule patterns run on RE2 (linear time) from this change on; runs recorded before keep Python's re.
        engine = "re2" if self._current or workflow.patched("rules-re2-patterns") else "python"
        self._regex_engine = engine
        self._playbook = compiled_from_document(start.playbook.document, start.playbook.version, engine)
        options = self._options = start.options
        # v2 keeps one timer per deadline and upserts search attributes with projections, instead of a
        # timeout timer per wake-up and an upsert per score change: two fewer history events per signal.
        self._v2 = self._current or workflow.patched("deadline-timer-v2")
        # The workflow projects touchpoints itself (batched with the lead); runs recorded before left them to
        # the API's side write.
        self._project_touchpoints = self._current or workflow.patched("touchpoints-projected")
        # A follow-up ends as cancelled when the lead leaves the stage or the owner that started it
        # (rules/followups.py); runs recorded before keep theirs as they were (their SLA timers may still fire).
        self._state.legacy_followups = not (
            self._current or workflow.patched("followups-cancelled-with-stage-and-owner")
        )
        if start.state is not None:
            self._projected_view = material_view(self._state)
        while True:
            await (self._sleep_until_work() if self._v2 else self._sleep_until_work_v1())
            if self._erase_requested:
                # Nothing after the erasure may reach the store: wait out projections and sends in flight.
                await workflow.wait_condition(lambda: not self._tasks)
                return
            self._applying = True
            try:
                self._apply_due_inputs()
            finally:
                self._applying = False
            if self._migrations:
                await self._apply_migrations()
            self._project_if_needed(options.projection_delay_seconds)
            if options.search_attributes and not self._v2:
                self._upsert_search_attributes()
            if self._handover_requests and await self._hand_over_if_asked():
                return  # merged into another lead (workflows/lead_merge.py)
            if workflow.info().is_continue_as_new_suggested():
                await self._drain()
                if self._erase_requested:  # arrived during the drain: end here, never carry it over
                    return
                if self._handover_requests and await self._hand_over_if_asked():
                    return  # asked during the drain: a hand-over is never carried over either
                workflow.continue_as_new(
                    LeadStart(
                        lead_id=start.lead_id,
                        playbook=self._bundle,
                        options=options,
                        state=self._state,
                        projected_score_seq=self._projected_score_seq,
                        projected_stage_seq=self._projected_stage_seq,
                        touchpoints=self._touchpoints,
                        shape=CURRENT_SHAPE,  # the next run is recorded afresh, by today's code
                    )
                )

    def _next_deadline(self) -> datetime | None:
        deadlines = list(self._state.timers.values())
        if self._projection_due is not None:
            deadlines.append(self._projection_due)
        return min(deadlines) if deadlines else None

    async def _sleep_until_work(self) -> None:
        deadline = self._next_deadline()
        if self._has_work() or (deadline is not None and deadline <= workflow.now()):
            return
        if deadline != self._timer_deadline or self._timer_fired:
            if self._timer_task is not None:
                self._timer_task.cancel()
            self._timer_deadline, self._timer_fired = deadline, False
            self._timer_task = asyncio.create_task(self._wake_at(deadline)) if deadline else None
        await workflow.wait_condition(lambda: self._has_work() or self._timer_fired)

    async def _wake_at(self, deadline: datetime) -> None:
        await workflow.sleep(max((deadline - workflow.now()).total_seconds(), 0.001))
        self._timer_fired, self._timer_deadline, self._timer_task = True, None, None

    async def _sleep_until_work_v1(self) -> None:
        deadlines = list(self._state.timers.values())
        if self._projection_due is not None:
            deadlines.append(self._projection_due)
        timeout = None
        if deadlines:
            timeout = max((min(deadlines) - workflow.now()).total_seconds(), 0.0)
        if self._has_work() or timeout == 0.0:
            return
        try:
            await workflow.wait_condition(self._has_work, timeout=timeout)
        except TimeoutError:
            pass

    def _has_work(self) -> bool:
        # A playbook migration waits in its own queue (it is no rules input); it wakes the loop like one.
        return bool(self._inbox) or self._erase_requested or bool(self._handover_requests) or bool(self._migrations)

    def _apply_due_inputs(self) -> None:
        assert self._playbook is not None
        now = workflow.now()
        while self._inbox:
            self._apply(self._inbox.popleft(), now)
        for name, due in sorted(self._state.timers.items(), key=lambda item: item[1]):
            if due <= now and name in self._state.timers:
                self._apply(TimerFired(name), now)

    def _apply(self, inp: Input, now: datetime) -> None:
        assert self._playbook is not None
        decision: Decision = decide(self._state, inp, now, self._playbook)
        if self._project_touchpoints:
            self._touchpoints.extend(decision.touchpoints)
        if decision.refusal is not None and isinstance(inp, SalesChange):
            self._sales_refusals[inp.change_id] = decision.refusal
        for command in decision.commands:
            self._start(command)

    # ---------------------------------------------------------------- commands -> activities

    def _start(self, command: Command) -> None:
        if isinstance(command, SendEmail):
            coro = self._send_email(command)
        elif isinstance(command, AssignRep):
            coro = self._assign(command)
        else:  # pragma: no cover - every command type is handled above
            raise ApplicationError(f"unknown command {type(command).__name__}", non_retryable=True)
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send_email(self, command: SendEmail) -> None:
        try:
            await workflow.execute_activity_method(
                EmailActivities.send_email,
                EmailJob(self._state.lead_id, command),
                start_to_close_timeout=self._activity_timeout(60),
                retry_policy=EMAIL_RETRY,
            )
        except ActivityError as err:
            # The ledger records the failure; one bad address must not stop the lead.
            workflow.logger.warning("email %s failed: %s", command.key, err.cause or err)

    async def _assign(self, command: AssignRep) -> None:
        # Assignments a person or the acceptance SLA asked for run as normal activities (AssignRep.local): they
        # come beside concurrent updates, where a local activity is what sdk-python#1578 mishandles on replay.
        local = command.local and (self._current or workflow.patched("assign-local-activity"))
        if local or not command.local or workflow.patched("assign-typed-activity"):
            # A local activity (from "assign-local-activity" on): it runs in the workflow task that decided the
            # assignment, so the rep's email is scheduled in that same task (one round trip through the server
            # fewer between qualifying and notifying). Retried like the activity, and as safe: the store keys the
            # assignment by its key.
            execute = workflow.execute_local_activity_method if local else workflow.execute_activity_method
            try:
                answer = await execute(
                    LeadActivities.assign_rep,
                    command,
                    start_to_close_timeout=self._activity_timeout(30),
                    retry_policy=ASSIGN_RETRY,
                )
            except (ActivityError, ApplicationError) as err:  # a local activity's failure arrives unwrapped
                # The store stayed out of reach for the whole retry budget: the lead waits in its team's queue
                # and is offered again later (rules.engine), never stuck on an assignment nobody answers.
                cause = err.cause if isinstance(err, ActivityError) and err.cause else err
                answer = AssignmentFailed(command.key, command.team, f"store unavailable: {cause}")
            # Project once the answer is applied, even when it changes nothing the lead shows: an answer the lead
            # no longer waits for (recycled meanwhile) left an open assignment that only the projection closes.
            self._projected_view = None
        else:
            # Histories recorded before: the same activity, its answer in the shape of that time (or of today's
            # activity, when a worker upgraded while it ran).
            recorded = await workflow.execute_activity(
                "assign_rep",
                command,
                result_type=AssignAnswerV1 | RepAssigned | AssignmentFailed,  # type: ignore[arg-type]  # a union: the converter decodes it, the stub says type
                start_to_close_timeout=self._activity_timeout(30),
                retry_policy=STORE_RETRY,
            )
            answer = recorded.answer(command) if isinstance(recorded, AssignAnswerV1) else recorded
        self._inbox.append(answer)

    def _activity_timeout(self, default_seconds: float) -> timedelta:
        # The timeout is no part of replay's command matching: changing it needs no patch.
        chosen = self._options.activity_timeout_seconds
        return timedelta(seconds=default_seconds if chosen is None else chosen)

    # ---------------------------------------------------------------- read model and visibility

    def _project_if_needed(self, delay_seconds: int) -> None:
        state, now = self._state, workflow.now()
        if state.created_at is None:
            return
        view = material_view(state)
        score_pending = bool(state.score_changes) and state.score_changes[-1].seq > self._projected_score_seq
        # New touchpoints wait like score changes: many events of a burst go to the store in one write.
        score_pending = score_pending or bool(self._touchpoints)
        if view != self._projected_view or (self._projection_due is not None and now >= self._projection_due):
            self._projected_view = view
            self._projection_due = None
            self._project()
        elif score_pending and self._projection_due is None:
            self._projection_due = now + timedelta(seconds=delay_seconds)

    def _project(self) -> None:
        snap = snapshot(self._state, self._projected_score_seq, self._projected_stage_seq, self._playbook)
        snap.touchpoints, self._touchpoints = self._touchpoints, []
        if self._state.score_changes:
            self._projected_score_seq = self._state.score_changes[-1].seq
            # Bounded: what the store now has beyond the latest changes is carried forward as one line
            # (rules/score_history.py); no decision and no later projection reads what folding drops.
            self._state.score_changes = fold_score_changes(self._state.score_changes, self._projected_score_seq)
        if self._state.stage_changes:
            self._projected_stage_seq = self._state.stage_changes[-1].seq
        if self._v2 and self._options.search_attributes:
            self._upsert_search_attributes()
        task = asyncio.create_task(self._run_projection(snap))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        self._projections.add(task)
        task.add_done_callback(self._projections.discard)

    async def _run_projection(self, snap: LeadSnapshot) -> None:
        try:
            await workflow.execute_activity_method(
                LeadActivities.project_lead,
                snap,
                start_to_close_timeout=self._activity_timeout(30),
                retry_policy=PROJECTION_RETRY,
            )
        except ActivityError as err:
            # The live view stays right; only the read model misses this snapshot. Say so and move on.
            reason = str(err.cause or err)
            self._projection_error = f"{workflow.now().isoformat()}: {reason}"
            workflow.logger.error("lead %s: projection failed: %s", self._state.lead_id, reason)

    def _upsert_search_attributes(self) -> None:
        s = self._state
        updates: list[SearchAttributeUpdate[Any]] = [
            sa.LEAD_STAGE.value_set(s.stage),
            sa.LEAD_SCORE.value_set(round(s.score)),
            sa.LEAD_GRADE.value_set(s.grade or ""),
            sa.LEAD_OWNER.value_set(s.owner.rep.id if s.owner else ""),
            sa.LEAD_SLA_STATUS.value_set(s.followup.status if s.followup else ""),
        ]
        # A cancelled follow-up is due at no time: it leaves "LeadSlaDueAt < now" lists with its status.
        due = s.followup.due_at if s.followup and s.followup.status != "cancelled" else None
        updates.append(sa.LEAD_SLA_DUE.value_set(due) if due else sa.LEAD_SLA_DUE.value_unset())
        current = workflow.info().typed_search_attributes
        if any(current.get(u.key) != u.value for u in updates):
            workflow.upsert_search_attributes(updates)

    async def _drain(self) -> None:
        """Before continue-as-new: finish in-flight activities, apply their results, flush the projection."""
        # An update waits for its input to be applied (log_touch, merge, ...): waiting for every handler to
        # finish before applying the inbox deadlocked one that arrived during the drain, so while a handler
        # waits the inbox is applied at once (signals alone still wait for the activities, as before: applying
        # each at once would start a projection per signal and a busy lead would never finish draining).
        # Runs recorded before this change keep the old order.
        applies_inbox = self._current or workflow.patched("drain-applies-inbox")

        def drained_or_awaited() -> bool:
            if not self._tasks and workflow.all_handlers_finished():
                return True
            if self._migrations:  # a migration accepted meanwhile waits for this loop: apply it, do not wait on it
                return True
            return applies_inbox and bool(self._inbox) and not workflow.all_handlers_finished()

        while True:
            if self._projection_due is not None:
                self._projection_due = None
                self._project()
            await workflow.wait_condition(drained_or_awaited)
            if not self._inbox and not self._migrations:
                return
            self._apply_due_inputs()
            await self._apply_migrations()
            self._project_if_needed(0)
