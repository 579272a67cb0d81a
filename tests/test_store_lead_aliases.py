"""store/lead_aliases.py on SQLite and PostgreSQL: aliases resolve flat, a merge releases the duplicate."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from rules.model import AssignRep, FollowUp, LeadSnapshot, RepAssigned, TrackedEvent
from store import assignments, lead_aliases, repo
from store.ingest import link_visitor
from store.models import VisitorLink

pytestmark = pytest.mark.parametrize("database_url", ["sqlite", "postgres"], indirect=True)
T0 = datetime(2026, 4, 1, 9, 0, tzinfo=UTC)


async def owned_lead(session: AsyncSession, lead_id: str, rep: str = "rep-aiko") -> None:
    """A lead assigned to ``rep`` with a pending follow-up, as its workflow would have projected it."""
    command = AssignRep(lead_id, f"{lead_id}:assign:1", "inside-sales", "round_robin", "test", rep_id=rep)
    answer = await assignments.assign_rep(session, command, T0)
    assert isinstance(answer, RepAssigned) and answer.rep.id == rep
    followup = FollowUp(f"{lead_id}:followup:1", "first_touch", "default", rep, "inside-sales", T0, T0 + timedelta(1))
    snap = LeadSnapshot(lead_id, {}, "sql", 60, "B", rep, "inside-sales", T0, T0, "v1", followup)
    await repo.project_lead(session, snap)


async def test_aliases_resolve_and_chains_stay_flat(sessions: async_sessionmaker[AsyncSession]) -> None:
    async with sessions() as session:
        assert await lead_aliases.resolve(session, []) == {}
        await lead_aliases.record_alias(session, alias_id="lead-b", lead_id="lead-a", reason="email_change", now=T0)
        # lead-a is merged into lead-s: both its id and the address it took on now reach lead-s.
        await lead_aliases.release_merged(session, duplicate_id="lead-a", survivor_id="lead-s", now=T0)
        assert await lead_aliases.resolve(session, ["lead-a", "lead-b", "lead-s", "lead-x"]) == {
            "lead-a": "lead-s",
            "lead-b": "lead-s",
        }
        assert await lead_aliases.current_lead(session, "lead-s") is None
        assert [a["alias_id"] for a in await lead_aliases.list_aliases(session, "lead-s")] == ["lead-a", "lead-b"]
        # The survivor takes back an address that was an alias of its own: no alias of itself.
        await lead_aliases.record_alias(session, alias_id="lead-s", lead_id="lead-s", reason="email_change", now=T0)
        await lead_aliases.record_alias(session, alias_id="lead-b", lead_id="lead-s", reason="email_change", now=T0)
        assert await lead_aliases.resolve(session, ["lead-s", "lead-b"]) == {"lead-b": "lead-s"}


async def test_a_merge_frees_capacity_cancels_follow_ups_and_moves_the_timeline(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with sessions() as session:
        await owned_lead(session, "lead-dup")
        await repo.add_touchpoints(
            session, "lead-dup", [TrackedEvent("e-1", "download", T0), TrackedEvent("both", "page_view", T0)], T0
        )
        await repo.add_touchpoints(session, "lead-sur", [TrackedEvent("both", "page_view", T0)], T0)
        await link_visitor(session, "anon-1", "lead-dup", T0)

        released = await lead_aliases.release_merged(
            session, duplicate_id="lead-dup", survivor_id="lead-sur", now=T0 + timedelta(hours=1)
        )
        assert released == lead_aliases.MergeRelease(assignments_closed=1, followups_cancelled=1, touchpoints_moved=1)
        assert await assignments.list_assignments(session, lead_id="lead-dup", open_only=True) == []
        assert (await repo.list_followups(session, status=None, limit=10, offset=0))[0]["status"] == "cancelled"
        assert await repo.list_touchpoints(session, "lead-dup") == []
        assert sorted(t["event_id"] for t in await repo.list_touchpoints(session, "lead-sur")) == ["both", "e-1"]
        link = await session.get(VisitorLink, "anon-1")
        assert link is not None and link.lead_id == "lead-sur"
        # Repeating the release (an activity retry) changes nothing more.
        again = await lead_aliases.release_merged(
            session, duplicate_id="lead-dup", survivor_id="lead-sur", now=T0 + timedelta(hours=2)
        )
        assert again == lead_aliases.MergeRelease(0, 0, 0)
        assert await lead_aliases.resolve(session, ["lead-dup"]) == {"lead-dup": "lead-sur"}
