"""The Mailer against a real SMTP server and a real SQLite ledger: hostile names never inject a header or a
recipient, every failed send leaves a ledger row with its reason, and only relay trouble is retried."""

from __future__ import annotations

import asyncio
import dataclasses
import email
import email.policy
import unicodedata
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from email.message import Message

import pytest
from aiosmtpd.controller import Controller
from fastapi.testclient import TestClient
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment

from activities.email import PERMANENT_ERRORS, EmailActivities, EmailJob, Mailer
from activities.rendering import EmailRenderer
from api.main import create_app
from rules.model import LeadSnapshot, LeadUpserted, SendEmail
from runtime import build_worker, load_active_playbook, with_lead_codec
from settings import Settings
from store import repo
from tests.conftest import TEST_API_KEY, Inbox, activity_environment, free_port, venv_binary
from workflows.lead import EMAIL_RETRY, LeadWorkflow
from workflows.payloads import LeadOptions, LeadStart

LEAD = "lead-" + "0" * 32
# Every header the Mailer writes; anything else in a received message was injected.
HEADERS = {"From", "To", "Subject", "Message-ID", "X-Leadflow-Kind", "Content-Type", "MIME-Version"}
HEADERS |= {"List-Unsubscribe", "List-Unsubscribe-Post"}  # nurture mail's RFC 8058 unsubscribe


def welcome(to: str, name: str | None, key: str = f"{LEAD}:nurture:1", **lead: str) -> SendEmail:
    return SendEmail(key, "nurture", "welcome", to, {"lead": {"email": to, **lead}, "reason": "test"}, name)


def mailer(settings: Settings, sessions: async_sessionmaker[AsyncSession], **overrides: object) -> Mailer:
    return Mailer(settings.model_copy(update=overrides), sessions, EmailRenderer(settings.templates_dir))


async def ledger(sessions: async_sessionmaker[AsyncSession], key: str = f"{LEAD}:nurture:1") -> dict:
    async with sessions() as session:
        rows = [r for r in await repo.list_emails(session, lead_id=LEAD) if r["key"] == key]
    assert rows, f"no ledger row for {key}: the send was lost silently"
    return rows[0]


def assert_clean(msg: Message, rcpt: str) -> None:
    """One recipient in To (the envelope's), one-line headers, and no header the Mailer did not write."""
    assert set(msg.keys()) - {"X-Envelope-To"} <= HEADERS, sorted(msg.keys())
    assert msg["X-Envelope-To"] == rcpt
    to = msg["To"]
    assert len(to.addresses) == 1, str(to)
    assert to.addresses[0].addr_spec == rcpt
    for name in ("To", "Subject"):
        value = str(msg[name])
        assert not any(unicodedata.category(c) in ("Cc", "Zl", "Zp") for c in value), (name, value)


async def test_a_display_name_cannot_add_a_recipient(
    settings: Settings, sessions: async_sessionmaker[AsyncSession], smtp: tuple[Inbox, int]
) -> None:
    inbox, _ = smtp
    name = "Zoë <attacker@evil.example>,"
    assert await mailer(settings, sessions).send(welcome("hdr1@example.com", name, first_name=name), LEAD) == "sent"
    (msg,) = inbox.messages
    assert_clean(msg, "hdr1@example.com")
    assert msg["To"].addresses[0].display_name == name  # quoted, not parsed as an address


async def test_a_line_separator_in_a_name_cannot_add_a_header(
    settings: Settings, sessions: async_sessionmaker[AsyncSession], smtp: tuple[Inbox, int]
) -> None:
    inbox, _ = smtp
    name = "Zoë\u2028Bcc: attacker@evil.example"
    await mailer(settings, sessions).send(welcome("hdr2@example.com", name, first_name=name), LEAD)
    (msg,) = inbox.messages
    assert msg["Bcc"] is None
    assert_clean(msg, "hdr2@example.com")
    assert "Bcc: attacker@evil.example" in msg["Subject"]  # the text stays, on one line


@pytest.mark.parametrize("name", ["Zoë\r\nBcc: attacker@evil.example", "Nul\x00Byte", "Bell\x07\x1b[31m", "Ca\x85rl"])
async def test_controls_in_a_name_or_company_are_delivered_clean(
    settings: Settings, sessions: async_sessionmaker[AsyncSession], smtp: tuple[Inbox, int], name: str
) -> None:
    """The edge refuses these; a lead created before that check (or a rep's name) must still mail cleanly."""
    inbox, _ = smtp
    mail = welcome("hdr3@example.com", name, first_name=name, company=name)
    assert await mailer(settings, sessions).send(mail, LEAD) == "sent"
    (msg,) = inbox.messages
    assert msg["Bcc"] is None
    assert_clean(msg, "hdr3@example.com")


async def test_an_idn_domain_is_sent_in_a_labels(
    settings: Settings, sessions: async_sessionmaker[AsyncSession], smtp: tuple[Inbox, int]
) -> None:
    inbox, _ = smtp
    assert await mailer(settings, sessions).send(welcome("user@bücher.example", "Jörg"), LEAD) == "sent"
    (msg,) = inbox.messages
    assert_clean(msg, "user@xn--bcher-kva.example")
    row = await ledger(sessions)
    assert (row["status"], row["to_addr"]) == ("sent", "user@xn--bcher-kva.example")


async def test_a_unicode_local_part_is_refused_permanently_without_smtputf8(
    settings: Settings, sessions: async_sessionmaker[AsyncSession], smtp: tuple[Inbox, int]
) -> None:
    inbox, _ = smtp
    with pytest.raises(ApplicationError) as caught:
        await mailer(settings, sessions, smtp_utf8=False).send(welcome("用户@example.com", None), LEAD)
    assert caught.value.non_retryable and caught.value.type == "InvalidAddress"
    row = await ledger(sessions)
    assert row["status"] == "failed" and "LEADFLOW_SMTP_UTF8" in row["error"]
    assert inbox.messages == []


class Utf8Inbox(Inbox):
    """Parses the message as UTF-8 text: with SMTPUTF8 its headers are raw UTF-8, which the bytes parser
    would only carry as surrogate escapes."""

    async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def]
        msg = email.message_from_string(envelope.original_content.decode("utf-8"), policy=email.policy.default)
        msg["X-Envelope-To"] = ", ".join(envelope.rcpt_tos)
        self.messages.append(msg)
        return "250 OK"


@contextmanager
def relay(inbox: Inbox, *, smtputf8: bool) -> Iterator[int]:
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port, enable_SMTPUTF8=smtputf8)
    controller.start()
    try:
        yield port
    finally:
        controller.stop()


async def test_a_unicode_local_part_goes_out_with_smtputf8_when_the_relay_offers_it(
    settings: Settings, sessions: async_sessionmaker[AsyncSession]
) -> None:
    inbox = Utf8Inbox()
    with relay(inbox, smtputf8=True) as port:
        sender = mailer(settings, sessions, smtp_utf8=True, smtp_port=port)
        assert await sender.send(welcome("用户@bücher.example", "Zoë <attacker@evil.example>,"), LEAD) == "sent"
    (msg,) = inbox.messages
    assert_clean(msg, "用户@xn--bcher-kva.example")
    assert (await ledger(sessions))["status"] == "sent"


async def test_a_relay_without_smtputf8_fails_the_send_permanently_and_visibly(
    settings: Settings, sessions: async_sessionmaker[AsyncSession]
) -> None:
    inbox = Inbox()
    with relay(inbox, smtputf8=False) as port, pytest.raises(ApplicationError) as caught:
        await mailer(settings, sessions, smtp_utf8=True, smtp_port=port).send(welcome("用户@example.com", None), LEAD)
    assert caught.value.non_retryable and caught.value.type == "SmtpUtf8Unsupported"
    row = await ledger(sessions)
    assert row["status"] == "failed" and "SMTPUTF8" in row["error"]
    assert inbox.messages == []


@pytest.mark.parametrize("address", ["not-an-address", "a@b@example.com", "x@example.com\r\nRCPT TO:<y@evil>"])
async def test_an_invalid_address_leaves_a_failed_ledger_row(
    settings: Settings, sessions: async_sessionmaker[AsyncSession], smtp: tuple[Inbox, int], address: str
) -> None:
    with pytest.raises(ApplicationError) as caught:
        await mailer(settings, sessions).send(welcome(address, None), LEAD)
    assert caught.value.non_retryable and caught.value.type == "InvalidAddress"
    row = await ledger(sessions)
    assert row["status"] == "failed" and row["error"].startswith("InvalidAddress:")
    assert "\n" not in row["to_addr"] and "\r" not in row["to_addr"]
    assert smtp[0].messages == []


class FlakyRelay(Inbox):
    """Answers 451 (try again later) to the first ``failures`` messages, then accepts."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def]
        if self.failures > 0:
            self.failures -= 1
            return "451 4.3.0 try again later"
        return await super().handle_DATA(server, session, envelope)


async def test_a_4xx_stays_retryable_and_the_mail_goes_out_once_when_the_relay_recovers(
    settings: Settings, sessions: async_sessionmaker[AsyncSession]
) -> None:
    flaky = FlakyRelay(failures=1)
    with relay(flaky, smtputf8=False) as port:
        sender = mailer(settings, sessions, smtp_port=port)
        mail = welcome("retry@example.com", "Ret Ry")
        with pytest.raises(Exception) as caught:
            await sender.send(mail, LEAD)
        assert not (isinstance(caught.value, ApplicationError) and caught.value.non_retryable)
        row = await ledger(sessions)
        assert row["status"] == "sending" and "451" in row["error"]
        assert await sender.send(mail, LEAD) == "sent"
        assert await sender.send(mail, LEAD) == "already-sent"
    assert len(flaky.messages) == 1
    row = await ledger(sessions)
    assert (row["status"], row["error"], row["attempts"]) == ("sent", None, 2)


async def test_a_relay_that_is_down_stays_retryable_and_is_recorded(
    settings: Settings, sessions: async_sessionmaker[AsyncSession]
) -> None:
    sender = mailer(settings, sessions, smtp_port=free_port(), smtp_timeout_seconds=2.0)
    with pytest.raises(Exception) as caught:
        await sender.send(welcome("down@example.com", None), LEAD)
    assert not (isinstance(caught.value, ApplicationError) and caught.value.non_retryable)
    row = await ledger(sessions)
    assert row["status"] == "sending" and row["error"].startswith("RelayUnavailable:")


async def test_relay_trouble_on_the_last_attempt_is_recorded_as_failed(
    settings: Settings, sessions: async_sessionmaker[AsyncSession]
) -> None:
    """After the retry policy's last attempt nothing will send it: the ledger must not say "sending"."""
    activities = EmailActivities(mailer(settings, sessions, smtp_port=free_port(), smtp_timeout_seconds=2.0))
    job = EmailJob(LEAD, welcome("down@example.com", None))
    environment = activity_environment(attempt=19, retry_policy=EMAIL_RETRY)
    with pytest.raises(OSError):  # connection refused
        await environment.run(activities.send_email, job)
    assert (await ledger(sessions))["status"] == "sending"
    environment.info = dataclasses.replace(environment.info, attempt=20)
    with pytest.raises(OSError):  # connection refused
        await environment.run(activities.send_email, job)
    row = await ledger(sessions)
    assert row["status"] == "failed" and row["error"].startswith("RelayUnavailable:") and row["attempts"] == 2


@pytest.mark.parametrize("database_url", ["sqlite", "postgres"], indirect=True)
async def test_failed_sends_show_on_the_lead_timeline_and_the_dashboard(
    settings: Settings, sessions: async_sessionmaker[AsyncSession], smtp: tuple[Inbox, int]
) -> None:
    now = datetime.now(UTC)
    async with sessions() as session:
        await repo.project_lead(
            session, LeadSnapshot(LEAD, {"email": "用户@example.com"}, "new", 0, None, None, None, now, now, "v1", None)
        )
    with pytest.raises(ApplicationError):
        await mailer(settings, sessions).send(welcome("用户@example.com", None, first_name="Li"), LEAD)
    app_settings = settings.model_copy(update={"temporal_address": "127.0.0.1:9", "scheduler_enabled": False})
    with TestClient(create_app(app_settings), raise_server_exceptions=False) as client:
        timeline = client.get(f"/v1/leads/{LEAD}/timeline", headers={"X-API-Key": TEST_API_KEY})
        assert timeline.status_code == 200, timeline.text
        (row,) = timeline.json()["emails"]
        assert row["status"] == "failed" and "LEADFLOW_SMTP_UTF8" in row["error"]
        dashboard = client.get("/dashboard", auth=("manager", TEST_API_KEY))
        assert dashboard.status_code == 200
        assert 'id="failed-emails"' in dashboard.text
        failed = dashboard.text.split('id="failed-emails"', 1)[1].split("</table>", 1)[0]
        assert "用户@example.com" in failed and "LEADFLOW_SMTP_UTF8" in failed


def test_every_permanent_mailer_error_is_non_retryable_in_the_workflow_policy() -> None:
    assert set(PERMANENT_ERRORS) <= set(EMAIL_RETRY.non_retryable_error_types or [])


@pytest.fixture(scope="session")
async def env() -> AsyncIterator[WorkflowEnvironment]:
    environment = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=venv_binary("temporal-test-server"), data_converter=pydantic_data_converter
    )
    yield environment
    await environment.shutdown()


async def test_in_the_worker_a_permanent_failure_is_tried_once_and_recorded_while_good_mail_flows(
    env: WorkflowEnvironment, settings: Settings, sessions: async_sessionmaker[AsyncSession], smtp: tuple[Inbox, int]
) -> None:
    """Leads stored before the edge checks existed: one cannot be mailed (Unicode local part, no SMTPUTF8),
    the other has a CR/LF name and an IDN domain. The first fails once, visibly; the second is delivered."""
    inbox, _ = smtp
    settings = settings.model_copy(update={"task_queue": f"tq-{uuid.uuid4().hex[:8]}"})
    playbook = load_active_playbook(settings)
    options = LeadOptions(projection_delay_seconds=1, search_attributes=False)
    leads = {
        "lead-" + "1" * 32: {"email": "用户@example.com", "first_name": "Li"},
        "lead-" + "2" * 32: {"email": "jorg@bücher.example", "first_name": "Jörg\r\nBcc: x@evil.example"},
    }
    client = with_lead_codec(env.client, settings, sessions)  # lead payloads are sealed per lead
    async with build_worker(client, settings, sessions):
        handles = [
            await client.start_workflow(
                LeadWorkflow.run,
                LeadStart(lead_id, playbook.bundle, options),
                id=lead_id,
                task_queue=settings.task_queue,
                start_signal="upsert",
                start_signal_args=[LeadUpserted(attributes)],
            )
            for lead_id, attributes in leads.items()
        ]
        (msg,) = await inbox.wait_for(lambda m: "xn--bcher-kva" in m["X-Envelope-To"])
        assert_clean(msg, "jorg@xn--bcher-kva.example")
        for _ in range(200):
            async with sessions() as session:
                rows = await repo.list_emails(session, lead_id="lead-" + "1" * 32)
            if rows and rows[0]["status"] == "failed":
                break
            await asyncio.sleep(0.05)
        (row,) = rows
        assert (row["status"], row["attempts"]) == ("failed", 1) and row["error"].startswith("InvalidAddress:")
        view = await handles[0].query(LeadWorkflow.view)  # the lead moves on
        assert view.exists and view.stage == "new"
