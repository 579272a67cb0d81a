"""Store activities of merges and identity changes (workflows/lead_merge.py): the lead's workflow is the one
writer of its aliases, and of the release of what a merged duplicate held."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from store import lead_aliases
from workflows.merge_payloads import AliasRecord, MergedLeadRelease


class LeadMergeActivities:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.sessions = sessions

    @activity.defn(name="release_merged_lead")
    async def release_merged_lead(self, job: MergedLeadRelease) -> lead_aliases.MergeRelease:
        """Idempotent (one transaction; a retry finds nothing left to release)."""
        async with self.sessions() as session:
            released = await lead_aliases.release_merged(
                session, duplicate_id=job.duplicate_id, survivor_id=job.survivor_id, now=datetime.now(UTC)
            )
        activity.logger.info("lead %s merged into %s: %s", job.duplicate_id, job.survivor_id, released)
        return released

    @activity.defn(name="record_lead_alias")
    async def record_lead_alias(self, job: AliasRecord) -> None:
        async with self.sessions() as session:
            await lead_aliases.record_alias(
                session, alias_id=job.alias_id, lead_id=job.lead_id, reason=job.reason, now=datetime.now(UTC)
            )
