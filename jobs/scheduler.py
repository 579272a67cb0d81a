"""APScheduler set-up: the jobs, their cron expressions, started and stopped with the API."""

from __future__ import annotations

from datetime import UTC, datetime

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger

from activities.email import Mailer
from jobs.digest import send_overdue_digests
from settings import Settings


def build_scheduler(settings: Settings, mailer: Mailer) -> AsyncIOScheduler:
    scheduler = AsyncIOScheduler(timezone=settings.digest_timezone)

    async def digest() -> None:
        await send_overdue_digests(mailer, datetime.now(UTC))

    scheduler.add_job(
        digest,
        CronTrigger.from_crontab(settings.digest_cron, timezone=settings.digest_timezone),
        id="manager_digest",
        coalesce=True,
        max_instances=1,
        misfire_grace_time=3600,
    )
    return scheduler
