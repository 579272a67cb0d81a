"""Playbook migration for LeadWorkflow: the dry-run query, the update, and the switch at the main loop's safe
point. A mixin so the lead's shell stays readable; rules/migration.py decides everything, this applies it.
"""

from __future__ import annotations

import asyncio
from collections import deque
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.leads import LeadActivities
    from rules import compiled_from_document
    from rules.migration import LeadMigrationPlan, MigrationResult, plan_lead_migration
    from rules.model import Command, LeadState, Touchpoint, TrackedEvent
    from rules.playbook import CompiledPlaybook
    from workflows.payloads import LeadStart, PlaybookBundle, PlaybookMigration

# A migration request carries one playbook document and at most this many step map entries.
MAX_MIGRATION_STEP_MAP = 500
# A migration that recomputes the score waits this long for the lead's projections, and reads its events with
# these retries; past them the lead refuses the migration and goes on (its inputs wait meanwhile).
MIGRATION_STORE_WAIT = timedelta(minutes=2)
MIGRATION_READ_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=20), maximum_attempts=6
)


class PlaybookMigrations:
    """LeadWorkflow's playbook migration handlers (LeadWorkflow calls ``_apply_migrations`` between inputs)."""

    # What LeadWorkflow holds and does that a switch reads or uses.
    _state: LeadState
    _playbook: CompiledPlaybook | None
    _touchpoints: list[Touchpoint]
    _projection_due: object
    _projected_view: tuple[object, ...] | None

    def _start(self, command: Command) -> None:
        raise NotImplementedError  # LeadWorkflow's

    def _project(self) -> None:
        raise NotImplementedError  # LeadWorkflow's

    def _activity_timeout(self, default_seconds: float) -> timedelta:
        raise NotImplementedError  # LeadWorkflow's

    def _init_migrations(self, start: LeadStart) -> None:
        # The playbook this run follows: the start's, until a migration switches it (carried on continue-as-new).
        self._bundle: PlaybookBundle = start.playbook
        self._regex_engine = "re2"
        # Playbook migrations accepted and waiting for the main loop (ticket, request), and their answers.
        self._migrations: deque[tuple[int, PlaybookMigration]] = deque()
        self._migration_plans: dict[int, LeadMigrationPlan] = {}
        self._migration_tickets = 0
        # Projections in flight: a score recomputation reads the lead's events once they are all stored.
        self._projections: set[asyncio.Task[None]] = set()

    @workflow.query
    def plan_migration(self, request: PlaybookMigration) -> LeadMigrationPlan:
        """The dry run: what switching to ``request.playbook`` would change now. Changes nothing."""
        return self._plan_migration(request).plan

    @workflow.update
    async def migrate_playbook(self, request: PlaybookMigration) -> LeadMigrationPlan:
        """Switch the lead to another playbook version at the main loop's next safe point (between inputs,
        never inside one); answers the plan that was applied, or the refusal."""
        ticket = self._migration_tickets = self._migration_tickets + 1
        self._migrations.append((ticket, request))
        await workflow.wait_condition(lambda: ticket in self._migration_plans)
        return self._migration_plans.pop(ticket)

    @migrate_playbook.validator
    def _validate_migration(self, request: PlaybookMigration) -> None:
        if self._state.created_at is None:
            raise ApplicationError("the lead does not exist yet", type="UnknownLead")
        if not request.options.target_version or request.playbook.version != request.options.target_version:
            raise ApplicationError("the playbook sent is not the target version", type="InvalidMigration")
        if len(request.options.step_map) > MAX_MIGRATION_STEP_MAP:
            raise ApplicationError(f"a step map has at most {MAX_MIGRATION_STEP_MAP} entries", type="InvalidMigration")

    def _plan_migration(self, request: PlaybookMigration) -> MigrationResult:
        assert self._playbook is not None
        try:
            new = compiled_from_document(request.playbook.document, request.playbook.version, self._regex_engine)
            events = [t.event for t in self._touchpoints] + list(request.events)
            return plan_lead_migration(self._state, self._playbook, new, request.options, workflow.now(), events)
        except Exception as exc:  # a bad document or a planning bug refuses this lead; it must never stall it
            return MigrationResult(
                self._refusal(request, f"the migration could not be planned: {type(exc).__name__}: {exc}")
            )

    async def _apply_migrations(self) -> None:
        """The safe point: the main loop runs no input while it switches (signals wait in the inbox)."""
        while self._migrations:
            ticket, request = self._migrations.popleft()
            # Runs recorded before migrations existed never reach this path; the marker lets a later change of
            # how a migration applies keep histories that contain one replaying.
            workflow.patched("playbook-migration")
            if request.options.recompute_score and self._state.playbook_version != request.playbook.version:
                try:
                    request = PlaybookMigration(request.options, request.playbook, await self._stored_events())
                except (ActivityError, TimeoutError) as err:
                    self._migration_plans[ticket] = self._refusal(request, f"the lead's events cannot be read: {err}")
                    continue
            result = self._plan_migration(request)
            if result.state is not None:
                self._state = result.state
                self._bundle = request.playbook
                self._playbook = compiled_from_document(
                    request.playbook.document, request.playbook.version, self._regex_engine
                )
                for command in result.commands:
                    self._start(command)
                self._projected_view = None  # the new version (and what it changed) reaches the read model now
            self._migration_plans[ticket] = result.plan

    async def _stored_events(self) -> list[TrackedEvent]:
        """Every event this lead has decided on, read back from the store once all of them are projected (the
        list the API's dry run saw may miss the latest: they were still on their way to the store)."""
        if self._touchpoints:
            self._projection_due = None
            self._project()
        await workflow.wait_condition(lambda: not self._projections, timeout=MIGRATION_STORE_WAIT)
        return await workflow.execute_activity_method(
            LeadActivities.stored_lead_events,
            self._state.lead_id,
            start_to_close_timeout=self._activity_timeout(30),
            retry_policy=MIGRATION_READ_RETRY,
        )

    def _refusal(self, request: PlaybookMigration, reason: str) -> LeadMigrationPlan:
        return LeadMigrationPlan(
            lead_id=self._state.lead_id,
            from_version=self._state.playbook_version,
            to_version=request.playbook.version,
            outcome="refused",
            reason=reason[:500],
        )
