"""leadflow_sla_total counts each follow-up outcome once, as the projection writes it to the store: reminded,
met (and escalated, breached, which tests/test_observability_stack.py sees on a running stack). A projection
that is retried, or a later one that repeats the state, counts nothing again."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

from prometheus_client import REGISTRY
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from observability.temporal import RecentlyCounted, _count_projection, _stored
from rules.model import LeadSnapshot
from store import repo
from tests.test_digest import NOW, snapshot


def sla(outcome: str) -> float:
    return REGISTRY.get_sample_value("leadflow_sla_total", {"outcome": outcome}) or 0.0


async def project(sessions: async_sessionmaker[AsyncSession], snap: LeadSnapshot, counted: RecentlyCounted) -> None:
    """What the activity interceptor does around project_lead: read the store, write, count the difference."""
    before = await _stored(sessions, snap)
    async with sessions() as session:
        await repo.project_lead(session, snap)
    _count_projection(snap, before, counted)


async def test_reminded_then_met_count_once_each(sessions: async_sessionmaker[AsyncSession]) -> None:
    counted = RecentlyCounted()
    pending = snapshot("lead-sla", "Acme", "rep-aiko", "inside-sales", "pending")
    assert pending.followup is not None
    reminded = dataclasses.replace(pending, followup=dataclasses.replace(pending.followup, reminded_at=NOW))
    assert reminded.followup is not None
    met = dataclasses.replace(
        reminded, followup=dataclasses.replace(reminded.followup, status="met", met_at=NOW + timedelta(minutes=5))
    )
    start = {outcome: sla(outcome) for outcome in ("reminded", "met", "escalated", "breached")}

    await project(sessions, pending, counted)
    assert {o: sla(o) - start[o] for o in start} == {"reminded": 0, "met": 0, "escalated": 0, "breached": 0}
    await project(sessions, reminded, counted)
    await project(sessions, reminded, counted)  # the same projection again (a retry): nothing new
    await project(sessions, met, counted)
    await project(sessions, met, counted)
    assert {o: sla(o) - start[o] for o in start} == {"reminded": 1, "met": 1, "escalated": 0, "breached": 0}
