"""The managers' daily digest (APScheduler job): one email per team and day, even with two replicas."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from activities.email import Mailer
from activities.rendering import EmailRenderer
from jobs.digest import send_overdue_digests
from jobs.scheduler import build_scheduler
from rules.model import FollowUp, LeadSnapshot
from settings import Settings
from store import repo
from tests.conftest import Inbox

NOW = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)


def snapshot(
    lead_id: str, company: str, rep: str, team: str, status: str, met_at: datetime | None = None
) -> LeadSnapshot:
    due = NOW - timedelta(hours=5)
    followup = FollowUp(
        f"{lead_id}:followup:1",
        "first_touch",
        "default",
        rep,
        team,
        due - timedelta(hours=24),
        due,
        status=status,  # type: ignore[arg-type]
        met_at=met_at,
    )
    return LeadSnapshot(
        lead_id,
        {"email": f"{lead_id}@example.com", "company": company},
        "sql",
        70,
        "B",
        rep,
        team,
        NOW - timedelta(days=2),
        NOW,
        "v1",
        followup,
    )


async def test_digest_goes_once_per_team_and_day(
    settings: Settings, sessions: async_sessionmaker[AsyncSession], smtp: tuple[Inbox, int]
) -> None:
    inbox, _ = smtp
    async with sessions() as session:
        await repo.project_lead(session, snapshot("lead-a", "Acme", "rep-aiko", "inside-sales", "overdue"))
        await repo.project_lead(session, snapshot("lead-b", "Bo Corp", "rep-ben", "inside-sales", "overdue"))
        await repo.project_lead(session, snapshot("lead-c", "Calm Inc", "rep-ben", "inside-sales", "met"))
        # Touched late: the breach stays on record, but nobody needs chasing any more.
        late = snapshot("lead-d", "Done Late KK", "rep-ben", "inside-sales", "overdue", met_at=NOW - timedelta(hours=1))
        await repo.project_lead(session, late)
        await repo.project_lead(session, snapshot("lead-j", "Sato", "rep-yui", "japan", "overdue"))
    mailer = Mailer(settings, sessions, EmailRenderer(settings.templates_dir))

    # Two replicas fire at the same moment: each team's manager gets exactly one digest.
    first, second = await asyncio.gather(send_overdue_digests(mailer, NOW), send_overdue_digests(mailer, NOW))
    assert sorted([first["inside-sales"], second["inside-sales"]]) == ["already sent or claimed", "sent"]
    digests = await inbox.wait_for(lambda m: m["X-Leadflow-Kind"] == "manager_digest")
    await asyncio.sleep(0.2)
    digests = [m for m in inbox.messages if m["X-Leadflow-Kind"] == "manager_digest"]
    assert sorted(m["X-Envelope-To"] for m in digests) == ["kenji.manager@example.com", "mina.manager@example.com"]
    mina = next(m for m in digests if "mina" in m["X-Envelope-To"])
    body = mina.get_body(("plain",)).get_content()
    assert "Overdue follow-ups in Inside Sales (2)" in mina["Subject"]
    assert "Acme" in body and "Bo Corp" in body and "Calm Inc" not in body and "Done Late" not in body

    # Later the same day: nothing more. The next day: a new digest.
    again = await send_overdue_digests(mailer, NOW + timedelta(hours=3))
    assert set(again.values()) == {"already sent or claimed"}
    await send_overdue_digests(mailer, NOW + timedelta(days=1))
    await asyncio.sleep(0.2)
    assert len([m for m in inbox.messages if m["X-Leadflow-Kind"] == "manager_digest"]) == 4


async def test_scheduler_runs_the_digest_on_its_cron(
    settings: Settings, sessions: async_sessionmaker[AsyncSession]
) -> None:
    scheduler = build_scheduler(settings, Mailer(settings, sessions, EmailRenderer(settings.templates_dir)))
    scheduler.start(paused=True)
    try:
        job = scheduler.get_job("manager_digest")
        monday = datetime(2026, 11, 23, 7, 0, tzinfo=UTC)  # a Monday
        assert job.trigger.get_next_fire_time(None, monday) == monday.replace(hour=8)
        saturday = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)
        assert job.trigger.get_next_fire_time(None, saturday).date().isoformat() == "2026-11-30"
    finally:
        scheduler.shutdown(wait=False)
