"""Temporal interceptors that feed the metrics and the log context, at the SDK's own boundaries.

- ``InflightCalls`` (client): how many calls to the Temporal server each kind has in flight.
- ``ActivityObserver`` (worker): every activity runs with its workflow / lead id in the log context;
  failures are counted by activity type, and the outcomes only activities see are counted here rather
  than in the activities' bodies: email outcomes (send_email), and for the projection (project_lead)
  new leads, stage changes and SLA transitions, judged against what the store held before the write.
  Counts are exact with one worker; with several, a lead whose two projections overlap on two workers
  can count a new lead or an SLA outcome twice (rare: it needs two projections within milliseconds).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Awaitable, Callable
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity, client, worker
from temporalio.exceptions import ApplicationError

from observability import logcontext, metrics
from rules.model import FollowUp, LeadSnapshot
from store.models import FollowUpRow, Lead

T = TypeVar("T")


@contextmanager
def _in_flight(call: str):  # type: ignore[no-untyped-def]
    gauge = metrics.TEMPORAL_CALLS_IN_FLIGHT.labels(call)
    gauge.inc()
    try:
        yield
    finally:
        gauge.dec()


class _InflightOutbound(client.OutboundInterceptor):
    async def _track(self, call: str, fn: Callable[[Any], Awaitable[T]], input: Any) -> T:
        with _in_flight(call):
            return await fn(input)

    async def start_workflow(self, input: client.StartWorkflowInput) -> client.WorkflowHandle[Any, Any]:
        return await self._track("start_workflow", super().start_workflow, input)

    async def signal_workflow(self, input: client.SignalWorkflowInput) -> None:
        await self._track("signal_workflow", super().signal_workflow, input)

    async def query_workflow(self, input: client.QueryWorkflowInput) -> Any:
        return await self._track("query_workflow", super().query_workflow, input)

    async def start_workflow_update(self, input: client.StartWorkflowUpdateInput) -> client.WorkflowUpdateHandle[Any]:
        return await self._track("update_workflow", super().start_workflow_update, input)

    async def describe_workflow(self, input: client.DescribeWorkflowInput) -> client.WorkflowExecutionDescription:
        return await self._track("describe_workflow", super().describe_workflow, input)

    async def terminate_workflow(self, input: client.TerminateWorkflowInput) -> None:
        await self._track("terminate_workflow", super().terminate_workflow, input)


class InflightCalls(client.Interceptor):
    def intercept_client(self, next: client.OutboundInterceptor) -> client.OutboundInterceptor:
        return _InflightOutbound(next)


@dataclass(frozen=True)
class _Stored:
    lead_exists: bool
    followup_status: str | None
    reminded: bool
    escalated: bool


async def _stored(sessions: async_sessionmaker[AsyncSession], snap: LeadSnapshot) -> _Stored:
    async with sessions() as session:
        exists = (await session.execute(select(Lead.id).where(Lead.id == snap.lead_id))).first() is not None
        row = None
        if snap.followup is not None:
            query = select(FollowUpRow.status, FollowUpRow.reminded_at, FollowUpRow.escalated_at)
            row = (await session.execute(query.where(FollowUpRow.key == snap.followup.key))).first()
    if row is None:
        return _Stored(exists, None, False, False)
    return _Stored(exists, row.status, row.reminded_at is not None, row.escalated_at is not None)


class RecentlyCounted:
    """Outcomes counted lately in this process. A lead's projections run concurrently (the workflow does
    not wait for one before dispatching the next), so two of them can both see the store before either
    wrote: the first to finish counts, the other finds the outcome here. Bounded: only in-flight overlap
    matters, seconds long."""

    def __init__(self, size: int = 10_000) -> None:
        self.size = size
        self._seen: OrderedDict[tuple[str, str], None] = OrderedDict()

    def first(self, key: str, outcome: str) -> bool:
        if (key, outcome) in self._seen:
            return False
        self._seen[(key, outcome)] = None
        if len(self._seen) > self.size:
            self._seen.popitem(last=False)
        return True


def _count_projection(snap: LeadSnapshot, before: _Stored, counted: RecentlyCounted) -> None:
    if not before.lead_exists and counted.first(snap.lead_id, "created"):
        metrics.LEADS_CREATED.inc()
    # A stage change travels in exactly one snapshot (the workflow advances its cursor when it dispatches).
    for change in snap.stage_changes:
        metrics.STAGE_CHANGES.labels(change.from_stage, change.to_stage).inc()
    fu: FollowUp | None = snap.followup
    if fu is None:
        return
    outcomes = []
    if fu.reminded_at is not None and not before.reminded:
        outcomes.append("reminded")
    if fu.escalated_at is not None and not before.escalated:
        outcomes.append("escalated")
    ended = {"met": "met", "overdue": "breached", "cancelled": "cancelled"}.get(fu.status)
    if fu.status != before.followup_status and ended is not None:
        outcomes.append(ended)
    for outcome in outcomes:
        if counted.first(fu.key, outcome):
            metrics.SLA.labels(outcome).inc()


def _email_failure_outcome(exc: BaseException) -> str:
    if isinstance(exc, ApplicationError) and exc.type == "Suppressed":
        return "suppressed"
    if isinstance(exc, ApplicationError) and exc.non_retryable:
        return "failed"
    info = activity.info()
    most = info.retry_policy.maximum_attempts if info.retry_policy else 0
    return "failed" if 0 < most <= info.attempt else "deferred"  # the last attempt is recorded as failed


class _ActivityInbound(worker.ActivityInboundInterceptor):
    def __init__(
        self,
        next: worker.ActivityInboundInterceptor,
        sessions: async_sessionmaker[AsyncSession],
        counted: RecentlyCounted,
    ) -> None:
        super().__init__(next)
        self.sessions = sessions
        self.counted = counted

    async def execute_activity(self, input: worker.ExecuteActivityInput) -> Any:
        info = activity.info()
        workflow_id = info.workflow_id
        lead_id = workflow_id if workflow_id and workflow_id.startswith("lead-") else None
        with logcontext.bound(workflow_id=workflow_id, lead_id=lead_id, activity_type=info.activity_type):
            return await self._observed(info.activity_type, input)

    async def _observed(self, activity_type: str, input: worker.ExecuteActivityInput) -> Any:
        snap = input.args[0] if activity_type == "project_lead" and input.args else None
        before = await _stored(self.sessions, snap) if isinstance(snap, LeadSnapshot) else None
        try:
            result = await super().execute_activity(input)
        except BaseException as exc:
            error_type = exc.type if isinstance(exc, ApplicationError) and exc.type else type(exc).__name__
            metrics.ACTIVITY_FAILURES.labels(activity_type, error_type).inc()
            if activity_type == "send_email":
                metrics.EMAILS.labels(_email_kind(input), _email_failure_outcome(exc)).inc()
            raise
        if activity_type == "send_email":
            metrics.EMAILS.labels(_email_kind(input), "already_sent" if result == "already-sent" else "sent").inc()
        elif isinstance(snap, LeadSnapshot) and before is not None:
            _count_projection(snap, before, self.counted)
        return result


def _email_kind(input: worker.ExecuteActivityInput) -> str:
    job = input.args[0] if input.args else None
    command = getattr(job, "command", None)
    return str(getattr(command, "kind", "unknown"))


class ActivityObserver(worker.Interceptor):
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.sessions = sessions
        self.counted = RecentlyCounted()

    def intercept_activity(self, next: worker.ActivityInboundInterceptor) -> worker.ActivityInboundInterceptor:
        return _ActivityInbound(next, self.sessions, self.counted)


__all__ = ["ActivityObserver", "InflightCalls"]
