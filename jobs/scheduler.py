"""APScheduler set-up: the jobs, their cron expressions, started and stopped with the API.

Every API replica runs the same scheduler, so each job claims its run in the store before acting (the
digest: ``digest:<team>:<day>`` in the email ledger). The claim is keyed by the run's *scheduled* fire
time, never by the moment a replica gets round to it: a replica whose loop was stalled or whose host was
suspended runs a misfired job up to ``MISFIRE_GRACE_SECONDS`` late, and must still claim the same run as
the replicas that ran it on time.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger

from activities.email import Mailer
from jobs.digest import send_overdue_digests
from settings import Settings

MISFIRE_GRACE_SECONDS = 3600


def digest_trigger(settings: Settings) -> CronTrigger:
    return CronTrigger.from_crontab(settings.digest_cron, timezone=settings.digest_timezone)


def scheduled_fire_time(trigger: BaseTrigger, now: datetime) -> datetime:
    """The latest fire time of ``trigger`` at or before ``now`` within the misfire grace: the run a job
    executing at ``now`` stands for. ``now`` itself when none is found (the job was started by hand)."""
    latest = None
    candidate = trigger.get_next_fire_time(None, now - timedelta(seconds=MISFIRE_GRACE_SECONDS))
    while candidate is not None and candidate <= now:
        latest = candidate
        candidate = trigger.get_next_fire_time(latest, latest)
    return latest or now


async def run_digest(mailer: Mailer, trigger: BaseTrigger, now: datetime) -> dict[str, str]:
    """One run of the digest job, executing at ``now``: claimed for its scheduled fire time's day (UTC)."""
    fired = scheduled_fire_time(trigger, now)
    return await send_overdue_digests(mailer, now, day=fired.astimezone(UTC).date())


def build_scheduler(settings: Settings, mailer: Mailer, trigger: BaseTrigger | None = None) -> AsyncIOScheduler:
    """``trigger``: the digest's schedule (default: LEADFLOW_DIGEST_CRON in LEADFLOW_DIGEST_TIMEZONE)."""
    scheduler = AsyncIOScheduler(timezone=settings.digest_timezone)
    digest_schedule = trigger or digest_trigger(settings)

    async def digest() -> None:
        await run_digest(mailer, digest_schedule, datetime.now(UTC))

    scheduler.add_job(
        digest,
        digest_schedule,
        id="manager_digest",
        coalesce=True,
        max_instances=1,
        misfire_grace_time=MISFIRE_GRACE_SECONDS,
    )
    return scheduler
