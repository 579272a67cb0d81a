"""PlaybookMigrationWorkflow: one migration of running leads to a playbook version, as its own workflow.

The API answers at once with the migration id; this workflow pages through the leads the read model shows
on another version and asks each lead (an activity that runs the lead's ``plan_migration`` query for a dry
run, its ``migrate_playbook`` update to apply) with bounded concurrency. Each lead decides for itself at a
safe point (rules/migration.py); this workflow only counts. ``progress`` is the GET's answer; the run
continues as new between pages when its history grows, carrying the cursor and the counts.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from activities.migration import LeadPage, MigrateLead, MigrationActivities
    from rules.migration import LeadMigrationResult, MigrationOptions

MAX_LISTED = 200  # per-lead results kept for the GET (the counts cover every lead)
MAX_PROBLEMS = 100  # refused and failed leads kept, beyond the first MAX_LISTED
HISTORY_EVENTS_BEFORE_CONTINUE = 8000
LEAD_CALL_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=30), maximum_attempts=10
)
STORE_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(minutes=1))


@dataclass
class MigrationProgress:
    migration_id: str
    target_version: str
    dry_run: bool
    started_at: datetime
    status: Literal["running", "completed"] = "running"
    finished_at: datetime | None = None
    # How many leads were asked, and per status (planned, migrated, current, refused, skipped, failed).
    seen: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    # Refused leads per journey step that lacked a step map entry ("journey/step" -> leads).
    unmapped_steps: dict[str, int] = field(default_factory=dict)
    # The first MAX_LISTED leads' results, and refused or failed ones after those (at most MAX_PROBLEMS).
    leads: list[LeadMigrationResult] = field(default_factory=list)
    problems: list[LeadMigrationResult] = field(default_factory=list)


@dataclass
class MigrationStart:
    migration_id: str
    target_number: int
    options: MigrationOptions
    dry_run: bool = True
    concurrency: int = 8
    page_size: int = 100
    # Carried over continue-as-new.
    cursor: str | None = None
    progress: MigrationProgress | None = None


@workflow.defn
class PlaybookMigrationWorkflow:
    @workflow.init
    def __init__(self, start: MigrationStart) -> None:
        self._progress = start.progress or MigrationProgress(
            start.migration_id, start.options.target_version, start.dry_run, workflow.now()
        )
        self._in_flight = 0
        self._tasks: set[asyncio.Task[None]] = set()

    @workflow.query
    def progress(self) -> MigrationProgress:
        return self._progress

    @workflow.run
    async def run(self, start: MigrationStart) -> MigrationProgress:
        cursor = start.cursor
        while True:
            page = await workflow.execute_activity_method(
                MigrationActivities.leads_to_migrate,
                LeadPage(start.options.target_version, cursor, start.page_size),
                start_to_close_timeout=timedelta(seconds=60),
                retry_policy=STORE_RETRY,
            )
            if not page:
                break
            for lead_id in page:
                # At most ``concurrency`` leads are asked at once: the workers keep serving the leads' own inputs.
                await workflow.wait_condition(lambda: self._in_flight < start.concurrency)
                self._in_flight += 1
                job = MigrateLead(lead_id, start.target_number, start.options, start.dry_run)
                task = asyncio.create_task(self._migrate(job))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            await workflow.wait_condition(lambda: self._in_flight == 0)
            cursor = page[-1]
            info = workflow.info()
            long = info.get_current_history_length() > HISTORY_EVENTS_BEFORE_CONTINUE
            if info.is_continue_as_new_suggested() or long:
                workflow.continue_as_new(
                    MigrationStart(
                        start.migration_id,
                        start.target_number,
                        start.options,
                        start.dry_run,
                        start.concurrency,
                        start.page_size,
                        cursor=cursor,
                        progress=self._progress,
                    )
                )
        self._progress.status, self._progress.finished_at = "completed", workflow.now()
        return self._progress

    async def _migrate(self, job: MigrateLead) -> None:
        try:
            result = await workflow.execute_activity_method(
                MigrationActivities.migrate_lead,
                job,
                start_to_close_timeout=timedelta(seconds=60),
                retry_policy=LEAD_CALL_RETRY,
            )
        except ActivityError as err:
            result = LeadMigrationResult(job.lead_id, "failed", error=str(err.cause or err)[:500])
        finally:
            self._in_flight -= 1
        self._count(result)

    def _count(self, result: LeadMigrationResult) -> None:
        progress = self._progress
        progress.seen += 1
        progress.counts[result.status] = progress.counts.get(result.status, 0) + 1
        if result.plan is not None:
            for step in result.plan.unmapped:
                progress.unmapped_steps[step.key] = progress.unmapped_steps.get(step.key, 0) + 1
        if len(progress.leads) < MAX_LISTED:
            progress.leads.append(result)
        elif result.status in ("refused", "failed") and len(progress.problems) < MAX_PROBLEMS:
            progress.problems.append(result)
