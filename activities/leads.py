"""Store activities: project a lead's state into the read model, assign a rep with capacity."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from rules.model import LeadSnapshot
from store import repo
from workflows.payloads import AssignJob, AssignOutcome, RepAssignedPayload


class LeadActivities:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.sessions = sessions

    @activity.defn(name="project_lead")
    async def project_lead(self, snap: LeadSnapshot) -> None:
        async with self.sessions() as session:
            await repo.project_lead(session, snap)

    @activity.defn(name="assign_rep")
    async def assign_rep(self, job: AssignJob) -> AssignOutcome:
        async with self.sessions() as session:
            choice = await repo.assign_rep(
                session,
                key=job.key,
                lead_id=job.lead_id,
                team_key=job.team,
                strategy=job.strategy,
                exclude_rep_ids=job.exclude_rep_ids,
                rep_id=job.rep_id,
                now=datetime.now(UTC),
            )
        if choice is None:
            return AssignOutcome(None, f"nobody available in team {job.team}: the lead waits in the team queue")
        return AssignOutcome(
            RepAssignedPayload(
                choice.rep_id,
                choice.rep_name,
                choice.rep_email,
                choice.manager_name,
                choice.manager_email,
                f"{job.reason}; {choice.reason}",
            ),
            "assigned",
        )
