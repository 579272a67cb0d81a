"""Store activities: project a lead's state into the read model, assign a rep with capacity."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy.exc import DataError, DBAPIError, StatementError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from rules.model import AssignmentFailed, AssignRep, LeadSnapshot, RepAssigned, TrackedEvent
from store import assignments, playbook_migration, repo


class LeadActivities:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.sessions = sessions

    @activity.defn(name="project_lead")
    async def project_lead(self, snap: LeadSnapshot) -> None:
        try:
            async with self.sessions() as session:
                await repo.project_lead(session, snap)
        except Exception as exc:
            if permanent(exc):
                # Retrying cannot change the snapshot: fail once, visibly, and let the lead move on.
                raise ApplicationError(
                    f"lead {snap.lead_id}: the snapshot cannot be stored: {_reason(exc)}",
                    type="UnstorableSnapshot",
                    non_retryable=True,
                ) from exc
            raise

    @activity.defn(name="stored_lead_events")
    async def stored_lead_events(self, lead_id: str) -> list[TrackedEvent]:
        """A lead's stored events, read by the lead itself when a playbook migration recomputes its score."""
        async with self.sessions() as session:
            return await playbook_migration.lead_events(session, lead_id)

    @activity.defn(name="assign_rep")
    async def assign_rep(self, command: AssignRep) -> RepAssigned | AssignmentFailed:
        """The rep for ``command``'s lead (rules/assignment.py chooses; the store serialises per team). A store
        error no attempt can get past is answered as a failed assignment: the lead waits in its team's queue and
        is offered again (rules.engine), instead of this retrying for ever."""
        try:
            async with self.sessions() as session:
                return await assignments.assign_rep(session, command, datetime.now(UTC))
        except Exception as exc:
            if permanent(exc):
                activity.logger.error("lead %s: assignment cannot be stored: %s", command.lead_id, _reason(exc))
                return AssignmentFailed(command.key, command.team, f"store refused: {_reason(exc)}")
            raise


VALUE_ERRORS = (ValueError, TypeError, OverflowError)


def permanent(exc: BaseException) -> bool:
    """A store error that the same write will meet on every attempt: a value the database or a column type
    refuses. Connection and lock errors (OperationalError) stay retryable."""
    if isinstance(exc, (DataError, *VALUE_ERRORS)):
        return True
    # A bind processor's own error (UTCDateTime's guard) arrives wrapped in a StatementError, not a DBAPIError.
    return isinstance(exc, StatementError) and not isinstance(exc, DBAPIError) and isinstance(exc.orig, VALUE_ERRORS)


def _reason(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None)
    return str(orig if isinstance(orig, BaseException) else exc).splitlines()[0][:300]
