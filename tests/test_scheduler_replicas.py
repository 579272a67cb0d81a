"""The APScheduler jobs with several API replicas: every replica runs the scheduler, one store (PostgreSQL
in production) decides which run sends: each digest run is claimed per team and day in the email ledger.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_EXECUTED, JobExecutionEvent
from apscheduler.triggers.cron import CronTrigger
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from activities.email import Mailer
from activities.rendering import EmailRenderer
from jobs.scheduler import build_scheduler
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
