"""The send_email activity: render, validate, send through aiosmtplib, record in the ledger.

Idempotent by the command's key: a key already marked sent is never sent again, and the Message-ID is
derived from the key, so the one duplicate SMTP allows (a crash between the relay's 250 and the ledger
write) is recognisable downstream.
"""

from __future__ import annotations

import asyncio
import hashlib
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import formataddr, parseaddr

import aiosmtplib
from email_validator import EmailNotValidError, validate_email
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.rendering import EmailRenderer, TemplateProblem
from rules.model import SendEmail
from settings import Settings
from store import repo
from workflows.payloads import EmailJob

RENDER_TIMEOUT_SECONDS = 5.0


def message_id(key: str, domain: str) -> str:
    return f"<{hashlib.sha256(key.encode()).hexdigest()[:40]}@{domain}>"


def checked_address(address: str) -> str:
    if any(c in address for c in "\r\n"):
        raise ApplicationError(f"address contains a line break: {address!r}", type="InvalidAddress", non_retryable=True)
    try:
        return validate_email(address, check_deliverability=False).normalized
    except EmailNotValidError as exc:
        raise ApplicationError(
            f"invalid address {address!r}: {exc}", type="InvalidAddress", non_retryable=True
        ) from exc


class Mailer:
    """Render and send through aiosmtplib, recording every outcome in the email ledger."""

    def __init__(self, settings: Settings, sessions: async_sessionmaker[AsyncSession], renderer: EmailRenderer) -> None:
        self.settings = settings
        self.sessions = sessions
        self.renderer = renderer

    async def send(self, mail: SendEmail, lead_id: str | None = None) -> str:
        """Send ``mail`` once per key; ``lead_id`` files it under a lead (None for team emails)."""
        async with self.sessions() as session:
            if await repo.email_status(session, mail.key) == "sent":
                return "already-sent"
        to = checked_address(mail.to)
        try:
            rendered = await asyncio.wait_for(
                asyncio.to_thread(self.renderer.render, mail.template, mail.context), RENDER_TIMEOUT_SECONDS
            )
        except (TemplateProblem, TimeoutError) as exc:
            await self._record(mail, lead_id, to, "", "failed", f"template: {exc}")
            raise ApplicationError(str(exc) or "render timed out", type="TemplateError", non_retryable=True) from exc
        msg = EmailMessage()
        msg["From"] = self.settings.mail_from
        msg["To"] = formataddr((mail.to_name or "", to))
        msg["Subject"] = rendered.subject
        msg["Message-ID"] = message_id(mail.key, self.settings.message_id_domain)
        msg["X-Leadflow-Kind"] = mail.kind
        msg.set_content(rendered.text)
        msg.add_alternative(rendered.html, subtype="html")
        s = self.settings
        try:
            await aiosmtplib.send(
                msg,
                sender=parseaddr(s.mail_from)[1],
                recipients=[to],
                hostname=s.smtp_host,
                port=s.smtp_port,
                username=s.smtp_username,
                password=s.smtp_password.get_secret_value() if s.smtp_password else None,
                start_tls=s.smtp_starttls,
                use_tls=s.smtp_tls,
                timeout=s.smtp_timeout_seconds,
            )
        except aiosmtplib.SMTPResponseException as exc:
            permanent = 500 <= exc.code < 600
            await self._record(mail, lead_id, to, rendered.subject, "failed" if permanent else "sending", str(exc))
            if permanent:
                raise ApplicationError(f"SMTP rejected: {exc}", type="SmtpRejected", non_retryable=True) from exc
            raise
        await self._record(mail, lead_id, to, rendered.subject, "sent", None)
        return "sent"

    async def _record(
        self, mail: SendEmail, lead_id: str | None, to: str, subject: str, status: str, error: str | None
    ) -> None:
        async with self.sessions() as session:
            await repo.record_email(
                session,
                key=mail.key,
                lead_id=lead_id,
                kind=mail.kind,
                template=mail.template,
                to_addr=to,
                subject=subject,
                message_id=message_id(mail.key, self.settings.message_id_domain),
                status=status,
                error=error,
                now=datetime.now(UTC),
            )


class EmailActivities:
    def __init__(self, mailer: Mailer) -> None:
        self.mailer = mailer

    @activity.defn(name="send_email")
    async def send_email(self, job: EmailJob) -> str:
        return await self.mailer.send(job.command, job.lead_id)
