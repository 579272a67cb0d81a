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


class EmailActivities:
    def __init__(self, settings: Settings, sessions: async_sessionmaker[AsyncSession], renderer: EmailRenderer) -> None:
        self.settings = settings
        self.sessions = sessions
        self.renderer = renderer

    @activity.defn(name="send_email")
    async def send_email(self, job: EmailJob) -> str:
        cmd = job.command
        async with self.sessions() as session:
            if await repo.email_status(session, cmd.key) == "sent":
                return "already-sent"
        to = checked_address(cmd.to)
        try:
            rendered = await asyncio.wait_for(
                asyncio.to_thread(self.renderer.render, cmd.template, cmd.context), RENDER_TIMEOUT_SECONDS
            )
        except (TemplateProblem, TimeoutError) as exc:
            await self._record(job, to, "", "failed", f"template: {exc}")
            raise ApplicationError(str(exc) or "render timed out", type="TemplateError", non_retryable=True) from exc
        msg = EmailMessage()
        msg["From"] = self.settings.mail_from
        msg["To"] = formataddr((cmd.to_name or "", to))
        msg["Subject"] = rendered.subject
        msg["Message-ID"] = message_id(cmd.key, self.settings.message_id_domain)
        msg["X-Leadflow-Kind"] = cmd.kind
        msg.set_content(rendered.text)
        msg.add_alternative(rendered.html, subtype="html")
        try:
            await aiosmtplib.send(
                msg,
                sender=parseaddr(self.settings.mail_from)[1],
                recipients=[to],
                hostname=self.settings.smtp_host,
                port=self.settings.smtp_port,
                username=self.settings.smtp_username,
                password=self.settings.smtp_password.get_secret_value() if self.settings.smtp_password else None,
                start_tls=self.settings.smtp_starttls,
                use_tls=self.settings.smtp_tls,
                timeout=self.settings.smtp_timeout_seconds,
            )
        except aiosmtplib.SMTPResponseException as exc:
            permanent = 500 <= exc.code < 600
            await self._record(job, to, rendered.subject, "failed" if permanent else "sending", str(exc))
            if permanent:
                raise ApplicationError(f"SMTP rejected: {exc}", type="SmtpRejected", non_retryable=True) from exc
            raise
        await self._record(job, to, rendered.subject, "sent", None)
        return "sent"

    async def _record(self, job: EmailJob, to: str, subject: str, status: str, error: str | None) -> None:
        cmd = job.command
        async with self.sessions() as session:
            await repo.record_email(
                session,
                key=cmd.key,
                lead_id=job.lead_id,
                kind=cmd.kind,
                template=cmd.template,
                to_addr=to,
                subject=subject,
                message_id=message_id(cmd.key, self.settings.message_id_domain),
                status=status,
                error=error,
                now=datetime.now(UTC),
            )
