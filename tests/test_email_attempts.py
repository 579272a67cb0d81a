"""The send activity under Temporal's attempt semantics: an attempt that outlived its start-to-close timeout has
been given up by the server, which starts the next attempt; the late one must not reach SMTP as well (two
attempts sending at once is how a loaded worker sent one email twice in the crash test). And the ledger, once it
says "sent", stays "sent" whatever a late attempt reports.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.email import EmailActivities, EmailJob, Mailer
from activities.rendering import EmailRenderer
from rules.model import SendEmail
from settings import Settings
from store import repo
from tests.conftest import Inbox, activity_environment
from workflows.lead import EMAIL_RETRY

LEAD = "lead-" + "7" * 32


def rep_mail(key: str) -> EmailJob:
    lead = {"company": "Acme", "email": "ann@example.com"}
    owner = {"name": "Aiko", "email": "aiko@example.com", "team": "inside-sales"}
    context = {"lead_id": LEAD, "lead": lead, "stage": "sql", "score": 70, "grade": "B", "owner": owner,
               "due_at": None, "policy": None, "reasons": []}  # fmt: skip
    return EmailJob(LEAD, SendEmail(key, "rep_new_lead", "rep_new_lead", "aiko@example.com", context, "Aiko"))


def attempt(started_ago: timedelta, timeout: timedelta) -> ActivityEnvironment:
    return activity_environment(started_time=datetime.now(UTC) - started_ago, start_to_close_timeout=timeout)


def activities(settings: Settings, sessions: async_sessionmaker[AsyncSession]) -> EmailActivities:
    return EmailActivities(Mailer(settings, sessions, EmailRenderer(settings.templates_dir)))


async def test_an_attempt_past_its_timeout_does_not_send(
    settings: Settings, sessions: async_sessionmaker[AsyncSession], smtp: tuple[Inbox, int]
) -> None:
    inbox, _ = smtp
    send = activities(settings, sessions).send_email
    late = attempt(started_ago=timedelta(seconds=61), timeout=timedelta(seconds=60))
    with pytest.raises(ApplicationError) as raised:
        await late.run(send, rep_mail(f"{LEAD}:rep_new_lead:1"))
    assert raised.value.type == "AttemptExpired" and not raised.value.non_retryable
    assert inbox.messages == []
    async with sessions() as session:
        assert await repo.email_status(session, f"{LEAD}:rep_new_lead:1") is None  # the next attempt sends it

    # An attempt in time sends as always.
    in_time = attempt(started_ago=timedelta(seconds=1), timeout=timedelta(seconds=60))
    assert await in_time.run(send, rep_mail(f"{LEAD}:rep_new_lead:1")) == "sent"
    assert len(inbox.messages) == 1


async def test_the_last_attempt_past_its_timeout_is_recorded_as_failed(
    settings: Settings, sessions: async_sessionmaker[AsyncSession], smtp: tuple[Inbox, int]
) -> None:
    inbox, _ = smtp
    late = attempt(started_ago=timedelta(seconds=61), timeout=timedelta(seconds=60))
    late.info = dataclasses.replace(late.info, attempt=EMAIL_RETRY.maximum_attempts, retry_policy=EMAIL_RETRY)
    with pytest.raises(ApplicationError, match="deadline"):
        await late.run(activities(settings, sessions).send_email, rep_mail(f"{LEAD}:rep_new_lead:3"))
    async with sessions() as session:
        (row,) = await repo.list_emails(session, lead_id=LEAD)
    assert row["status"] == "failed" and row["error"].startswith("AttemptExpired:") and inbox.messages == []


@pytest.mark.parametrize("database_url", ["sqlite", "postgres"], indirect=True)
async def test_the_ledger_never_takes_back_a_sent_mail(sessions: async_sessionmaker[AsyncSession]) -> None:
    key, now = f"{LEAD}:rep_new_lead:2", datetime.now(UTC)
    row = {"key": key, "lead_id": LEAD, "kind": "rep_new_lead", "template": "rep_new_lead",
           "to_addr": "aiko@example.com", "subject": "New lead", "message_id": "<m@x>"}  # fmt: skip
    async with sessions() as session:
        await repo.record_email(session, **row, status="sent", now=now)
        # A late attempt whose relay connection failed after the next attempt had sent the mail.
        await repo.record_email(session, **row, status="sending", error="RelayUnavailable: late", now=now)
        (stored,) = await repo.list_emails(session, lead_id=LEAD)
    assert stored["status"] == "sent" and stored["sent_at"] is not None and stored["attempts"] == 2
