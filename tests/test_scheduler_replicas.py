"""The APScheduler jobs with several API replicas: every replica runs the scheduler, one store (PostgreSQL
in production) decides which run sends. Each digest run is claimed per team and day in the email ledger,
the day being the run's scheduled fire time, so a replica running late never sends a second digest.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_EXECUTED, JobExecutionEvent
from apscheduler.triggers.cron import CronTrigger
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

import jobs.scheduler
from activities.email import Mailer
from activities.rendering import EmailRenderer
from jobs.scheduler import build_scheduler, scheduled_fire_time
from settings import Settings
from store import repo
from store.db import make_engine, make_sessionmaker
from store.models import EmailRow
from tests.conftest import Inbox
from tests.test_digest import snapshot

MANAGERS = ["kenji.manager@example.com", "mina.manager@example.com"]


async def overdue_in_both_teams(sessions: async_sessionmaker[AsyncSession]) -> None:
    async with sessions() as session:
        await repo.project_lead(session, snapshot("lead-a", "Acme", "rep-aiko", "inside-sales", "overdue"))
        await repo.project_lead(session, snapshot("lead-j", "Sato", "rep-yui", "japan", "overdue"))


async def digests(inbox: Inbox) -> list[str]:
    await asyncio.sleep(0.3)  # a send the claimant started has reached the server
    return sorted(m["X-Envelope-To"] for m in inbox.messages if m["X-Leadflow-Kind"] == "manager_digest")


async def ledger(sessions: async_sessionmaker[AsyncSession]) -> list[tuple[str, str]]:
    async with sessions() as session:
        rows = await session.execute(select(EmailRow.key, EmailRow.status).where(EmailRow.kind == "manager_digest"))
    return sorted((row.key, row.status) for row in rows)


@pytest.mark.parametrize("database_url", ["sqlite", "postgres"], indirect=True)
async def test_two_schedulers_on_one_store_send_each_days_digest_once(
    settings: Settings, sessions: async_sessionmaker[AsyncSession], smtp: tuple[Inbox, int]
) -> None:
    inbox, _ = smtp
    await overdue_in_both_teams(sessions)
    every_second = CronTrigger(second="*", timezone="UTC")  # many runs, all of one day
    runs: list[list[JobExecutionEvent]] = [[], []]
    engines = [make_engine(settings.resolved_database_url()) for _ in runs]
    schedulers = []
    for engine, seen in zip(engines, runs, strict=True):
        mailer = Mailer(settings, make_sessionmaker(engine), EmailRenderer(settings.templates_dir))
        scheduler = build_scheduler(settings, mailer, trigger=every_second)
        scheduler.add_listener(seen.append, EVENT_JOB_EXECUTED | EVENT_JOB_ERROR)
        schedulers.append(scheduler)
    try:
        for scheduler in schedulers:  # two replicas, both running the job on every tick
            scheduler.start()
        for _ in range(150):
            if min(len(seen) for seen in runs) >= 3:
                break
            await asyncio.sleep(0.1)
    finally:
        for scheduler in schedulers:
            scheduler.shutdown(wait=False)
        for engine in engines:
            await engine.dispose()

    assert min(len(seen) for seen in runs) >= 3, "both replicas ran the job on several ticks"
    assert [event.exception for seen in runs for event in seen if event.exception] == []
    assert await digests(inbox) == MANAGERS
    day = datetime.now(UTC).date().isoformat()
    assert await ledger(sessions) == [(f"digest:{team}:{day}", "sent") for team in ("inside-sales", "japan")]


class _Clock(datetime):
    """``datetime`` whose now() is whatever the test set: the moment one replica runs the job."""

    at = datetime(2026, 11, 23, tzinfo=UTC)

    @classmethod
    def now(cls, tz=None):  # type: ignore[no-untyped-def, override]
        return cls.at


async def test_a_replica_running_late_past_midnight_claims_the_scheduled_day(
    settings: Settings, sessions: async_sessionmaker[AsyncSession], smtp: tuple[Inbox, int], monkeypatch
) -> None:
    """Before the fix the claim was keyed by the day the replica ran the job: a replica whose loop stalled
    (or whose host was suspended) across midnight ran the misfired 23:59 run the next day, claimed another
    day, and the managers got a second digest."""
    inbox, _ = smtp
    await overdue_in_both_teams(sessions)
    settings = settings.model_copy(update={"digest_cron": "59 23 * * *", "digest_timezone": "UTC"})
    monkeypatch.setattr(jobs.scheduler, "datetime", _Clock)
    engines = [make_engine(settings.resolved_database_url()) for _ in range(2)]
    renderer = EmailRenderer(settings.templates_dir)
    on_time, late = (build_scheduler(settings, Mailer(settings, make_sessionmaker(e), renderer)) for e in engines)
    fired = datetime(2026, 11, 23, 23, 59, tzinfo=UTC)
    try:
        _Clock.at = fired + timedelta(milliseconds=20)
        await on_time.get_job("manager_digest").func()
        _Clock.at = fired + timedelta(minutes=2)  # 00:01 the next day, well within the misfire grace
        await late.get_job("manager_digest").func()
    finally:
        for engine in engines:
            await engine.dispose()
    assert await digests(inbox) == MANAGERS
    assert [key for key, _ in await ledger(sessions)] == ["digest:inside-sales:2026-11-23", "digest:japan:2026-11-23"]


def test_scheduled_fire_time_is_the_latest_at_or_before_now() -> None:
    daily = CronTrigger.from_crontab("0 8 * * mon-fri", timezone="Asia/Tokyo")
    monday_8_jst = datetime(2026, 11, 22, 23, 0, tzinfo=UTC)
    assert scheduled_fire_time(daily, monday_8_jst + timedelta(minutes=30)) == monday_8_jst
    assert scheduled_fire_time(daily, monday_8_jst) == monday_8_jst
    # Past the misfire grace (APScheduler would not run it), or never fired: the moment itself.
    later = monday_8_jst + timedelta(hours=3)
    assert scheduled_fire_time(daily, later) == later
