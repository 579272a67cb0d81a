"""store/playbook_migration.py on SQLite and PostgreSQL: leads on other versions page by page (erased ones
left out), versions in flight, a lead's events oldest first without rep touches."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from rules.model import LeadSnapshot, Touchpoint, TrackedEvent
from store import playbook_migration, repo
from store.models import LeadKey

T0 = datetime(2026, 4, 1, 9, 0, tzinfo=UTC)
pytestmark = pytest.mark.parametrize("database_url", ["sqlite", "postgres"], indirect=True)


def lead(lead_id: str, version: str, touchpoints: list[Touchpoint] | None = None) -> LeadSnapshot:
    snap = LeadSnapshot(lead_id, {"email": f"{lead_id}@example.com"}, "new", 0, None, None, None, T0, T0, version, None)
    snap.touchpoints = touchpoints or []
    return snap


async def test_leads_on_other_versions_page_by_id_and_skip_the_erased(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with sessions() as session:
        for i in range(7):
            await repo.project_lead(session, lead(f"lead-{i}", "v1" if i % 2 else "v2"))
        await repo.project_lead(session, lead("lead-file", "file-abc"))
        await repo.project_lead(session, lead("lead-gone", "v1"))
        session.add(LeadKey(lead_id="lead-gone", key_id="k-gone", created_at=T0, erased_at=T0))
        await session.commit()
        assert await playbook_migration.versions_in_flight(session, "v2") == {"v1": 3, "file-abc": 1}
        first = await playbook_migration.leads_not_on(session, "v2", None, 3)
        rest = await playbook_migration.leads_not_on(session, "v2", first[-1], 3)
        assert first + rest == ["lead-1", "lead-3", "lead-5", "lead-file"]
        assert await playbook_migration.leads_not_on(session, "v2", rest[-1], 3) == []


async def test_a_leads_events_come_oldest_first_without_rep_touches(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    def point(n: int, type_: str) -> Touchpoint:
        at = T0 + timedelta(minutes=n)
        return Touchpoint(TrackedEvent(f"e{n}", type_, at, "https://example.com/p", None, {"k": n}), at)

    touchpoints = [point(3, "download"), point(1, "page_view"), point(2, "touch.call")]
    async with sessions() as session:
        await repo.project_lead(session, lead("lead-ev", "v1", touchpoints))
        events = await playbook_migration.lead_events(session, "lead-ev")
        assert [(e.id, e.type, e.at, e.properties) for e in events] == [
            ("e1", "page_view", T0 + timedelta(minutes=1), {"k": 1}),
            ("e3", "download", T0 + timedelta(minutes=3), {"k": 3}),
        ]
        assert [e.id for e in await playbook_migration.lead_events(session, "lead-ev", limit=1)] == ["e3"]
