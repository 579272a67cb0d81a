"""Playbook migration activities: find the leads on another version, and ask one lead to plan or switch.

Asking a lead is a Temporal call (a query for the dry run, an update to apply) made from an activity, since a
workflow cannot call another workflow's update; the client seals the request with the lead's data key like
every lead payload (privacy/codec.py). The lead's stored events travel only in that sealed request: the
migration workflow's own history holds lead ids, step ids, stages and scores, never personal data.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.api.enums.v1 import WorkflowExecutionStatus
from temporalio.client import Client, WorkflowQueryFailedError, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from rules.migration import LeadMigrationPlan, LeadMigrationResult, MigrationOptions
from rules.playbook import parse_yaml
from store import playbook_migration, playbooks
from workflows.lead import LeadWorkflow
from workflows.payloads import PlaybookBundle, PlaybookMigration

LEAD_CALL_TIMEOUT = timedelta(seconds=30)


@dataclass
class LeadPage:
    """Leads of the read model on another version than ``target_version``, after ``after`` in id order."""

    target_version: str
    after: str | None
    limit: int


@dataclass
class MigrateLead:
    """One lead of a migration: the activity plans it (dry run) or applies it."""

    lead_id: str
    target_number: int
    options: MigrationOptions
    dry_run: bool


class MigrationActivities:
    def __init__(self, client: Client, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.client = client
        self.sessions = sessions
        self._bundles: dict[int, PlaybookBundle] = {}  # published versions are immutable

    @activity.defn(name="leads_to_migrate")
    async def leads_to_migrate(self, page: LeadPage) -> list[str]:
        async with self.sessions() as session:
            return await playbook_migration.leads_not_on(session, page.target_version, page.after, page.limit)

    @activity.defn(name="migrate_lead")
    async def migrate_lead(self, job: MigrateLead) -> LeadMigrationResult:
        request = PlaybookMigration(job.options, await self._bundle(job.target_number))
        if job.options.recompute_score and job.dry_run:  # an apply reads them itself at its safe point
            async with self.sessions() as session:
                request.events = await playbook_migration.lead_events(session, job.lead_id)
        handle = self.client.get_workflow_handle(job.lead_id)
        try:
            described = await handle.describe(rpc_timeout=LEAD_CALL_TIMEOUT)
            if described.status != WorkflowExecutionStatus.WORKFLOW_EXECUTION_STATUS_RUNNING:
                return LeadMigrationResult(job.lead_id, "skipped", error="the lead's workflow has ended (erased)")
            plan: LeadMigrationPlan
            if job.dry_run:
                plan = await handle.query(LeadWorkflow.plan_migration, request, rpc_timeout=LEAD_CALL_TIMEOUT)
            else:
                plan = await handle.execute_update(
                    LeadWorkflow.migrate_playbook, request, rpc_timeout=LEAD_CALL_TIMEOUT
                )
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:
                return LeadMigrationResult(job.lead_id, "skipped", error="no workflow runs for this lead")
            raise  # transient: the activity's retry policy asks again
        except (WorkflowUpdateFailedError, WorkflowQueryFailedError) as exc:
            cause = getattr(exc, "cause", None)
            message = cause.message if isinstance(cause, ApplicationError) else str(cause or exc)
            return LeadMigrationResult(job.lead_id, "failed", error=message[:500])
        if plan.outcome == "migrate":
            return LeadMigrationResult(job.lead_id, "planned" if job.dry_run else "migrated", plan)
        return LeadMigrationResult(job.lead_id, "current" if plan.outcome == "current" else "refused", plan)

    async def _bundle(self, number: int) -> PlaybookBundle:
        bundle = self._bundles.get(number)
        if bundle is None:
            async with self.sessions() as session:
                row = await playbooks.get(session, number)
            if row is None:
                raise ApplicationError(f"no published playbook version {number}", non_retryable=True)
            bundle = self._bundles[number] = PlaybookBundle(f"v{number}", parse_yaml(row["document"]).document)
        return bundle
