"""The send_email activity: render, validate, send through aiosmtplib, record in the ledger.

Idempotent by the command's key: a key already marked sent is never sent again, and the Message-ID is
derived from the key, so the one duplicate SMTP allows (a crash between the relay's 250 and the ledger
write) is recognisable downstream.

Every attempt that does not end in "sent" leaves its reason in the ledger (``error`` = "<Type>: why"):
a permanent problem (bad address, template, header, 5xx, no SMTPUTF8) as status "failed" and a
non-retryable ApplicationError of that type; relay trouble (4xx, down, timeout, an untrusted TLS
certificate, refused SMTP credentials) as status "sending" and an error Temporal retries, so the mail
goes out once the relay (or its setting) is fixed.

An attempt hands nothing to SMTP after its own deadline (start + start-to-close timeout, less a margin):
by then Temporal has given it up and the next attempt may be sending the same mail. Without that fence
a slow attempt (a loaded worker, a locked store) and its successor both sent.
"""

from __future__ import annotations

import asyncio
import hashlib
import ssl
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import parseaddr
from typing import NoReturn

import aiosmtplib
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.link_tracking import tracked_email
from activities.rendering import EmailRenderer, RenderedEmail, TemplateProblem
from activities.sal_tokens import links, sal_key
from activities.suppression import SUPPRESSED, refuse_if_suppressed
from activities.unsubscribe import Unsubscribe, footer_context
from rules.addresses import AddressProblem, MailAddress, header_text, sendable_address
from rules.model import SendEmail
from settings import Settings
from store import repo

RENDER_TIMEOUT_SECONDS = 5.0
# The ApplicationError types a send fails with for good; workflows.lead.EMAIL_RETRY lists them too.
PERMANENT_ERRORS = ("InvalidAddress", "TemplateError", "InvalidHeader", "SmtpRejected", "SmtpUtf8Unsupported")
# An attempt stops this long before its deadline: the clocks of worker and Temporal server may differ a little.
DEADLINE_MARGIN = timedelta(seconds=1)


def message_id(key: str, domain: str) -> str:
    return f"<{hashlib.sha256(key.encode()).hexdigest()[:40]}@{domain}>"


class _Permanent(Exception):
    """A send that can never succeed as it stands: recorded as failed, not retried."""

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason


def _smtp_failure(exc: Exception, wire: MailAddress) -> _Permanent | None:
    """The permanent failure ``exc`` stands for, or None when it is relay trouble worth retrying."""
    if isinstance(exc, ssl.SSLError | aiosmtplib.SMTPAuthenticationError):
        # An untrusted certificate or refused credentials: the operator's setting to fix, and the mail
        # must still go out after that (SSLCertVerificationError is also a ValueError: check it first).
        return None
    if isinstance(exc, aiosmtplib.SMTPNotSupported) and wire.smtputf8:
        return _Permanent("SmtpUtf8Unsupported", f"the relay does not offer SMTPUTF8 for {wire.addr_spec}: {exc}")
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        codes = [r.code for r in exc.recipients]
        return _Permanent("SmtpRejected", f"SMTP rejected: {exc}") if codes and min(codes) >= 500 else None
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return _Permanent("SmtpRejected", f"SMTP rejected: {exc}") if 500 <= exc.code < 600 else None
    if isinstance(exc, ValueError):  # UnicodeEncodeError included: the message itself cannot be sent
        return _Permanent("InvalidHeader", f"the message cannot be sent: {exc!r}")
    return None


class AttemptExpired(ApplicationError):
    """This attempt outlived its deadline before SMTP: the next attempt sends (nothing is recorded)."""

    def __init__(self) -> None:
        super().__init__(
            "the attempt reached its deadline before sending; the next attempt sends", type="AttemptExpired"
        )


def _seconds_left(deadline: datetime | None) -> float | None:
    """Time this attempt may still spend on SMTP (None: no limit); raises AttemptExpired when none is left."""
    if deadline is None:
        return None
    left = (deadline - DEADLINE_MARGIN - datetime.now(UTC)).total_seconds()
    if left <= 0:
        raise AttemptExpired()
    return left


def attempt_deadline(info: activity.Info) -> datetime | None:
    """When Temporal gives this activity attempt up (None when it has no start-to-close or schedule-to-close)."""
    ends = []
    if info.start_to_close_timeout:
        ends.append(info.started_time + info.start_to_close_timeout)
    if info.schedule_to_close_timeout:
        ends.append(info.scheduled_time + info.schedule_to_close_timeout)
    return min(ends) if ends else None


class Mailer:
    """Render and send through aiosmtplib, recording every outcome in the email ledger."""

    def __init__(self, settings: Settings, sessions: async_sessionmaker[AsyncSession], renderer: EmailRenderer) -> None:
        self.settings = settings
        self.sessions = sessions
        self.renderer = renderer

    async def send(
        self,
        mail: SendEmail,
        lead_id: str | None = None,
        *,
        last_attempt: bool = False,
        deadline: datetime | None = None,
    ) -> str:
        """Send ``mail`` once per key; ``lead_id`` files it under a lead (None for team emails).

        ``last_attempt``: no retry follows, so relay trouble is recorded as "failed" too (never left "sending").
        ``deadline``: when this attempt is given up (an activity's); SMTP is neither started nor waited on after it.
        """
        async with self.sessions() as session:
            if await repo.email_status(session, mail.key) == "sent":
                return "already-sent"
        # Until the address is known good, the ledger shows it one line long (it may hold a CR/LF).
        to_addr, subject = header_text(mail.to, 320), ""
        try:
            wire = self._address(mail.to)
            to_addr = wire.addr_spec
            unsubscribe = self.unsubscribe_for(mail, lead_id)
            rendered = tracked_email(await self._render(mail, unsubscribe), mail, self.settings)
            subject = rendered.subject
            msg = self._message(mail, wire, rendered, unsubscribe)
        except _Permanent as exc:
            await self._fail(mail, lead_id, to_addr, subject, exc)
        try:
            # The address as the lead holds it: the erasure hashed that same value.
            await refuse_if_suppressed(self.sessions, mail.to, self.settings.secret("id_key"))
        except ApplicationError:
            # No address in the ledger row: the suppressed person may be an erased one.
            await self._record(mail, lead_id, "", "", "suppressed", SUPPRESSED)
            raise
        try:
            smtp_time = _seconds_left(deadline)
        except AttemptExpired as exc:
            if last_attempt:  # nothing will send it: say so rather than leave no trace
                await self._record(mail, lead_id, to_addr, subject, "failed", f"AttemptExpired: {exc.message}")
            raise
        try:
            async with asyncio.timeout(smtp_time):
                await self._deliver(msg, wire)
        except Exception as exc:
            permanent = _smtp_failure(exc, wire)
            if permanent is not None:
                await self._fail(mail, lead_id, to_addr, subject, permanent)
            kind = "SmtpDeferred" if isinstance(exc, aiosmtplib.SMTPResponseException) else "RelayUnavailable"
            reason = f"{kind}: {exc!r}" + (" (last attempt: not retried)" if last_attempt else "")
            await self._record(mail, lead_id, to_addr, subject, "failed" if last_attempt else "sending", reason)
            raise
        await self._record(mail, lead_id, to_addr, subject, "sent", None)
        return "sent"

    def _address(self, address: str) -> MailAddress:
        try:
            return sendable_address(address, smtputf8=self.settings.smtp_utf8)
        except AddressProblem as exc:
            raise _Permanent("InvalidAddress", f"cannot send to {address!r}: {exc}") from exc

    async def _render(self, mail: SendEmail, unsubscribe: Unsubscribe | None) -> RenderedEmail:
        try:
            return await asyncio.wait_for(asyncio.to_thread(self.render, mail, unsubscribe), RENDER_TIMEOUT_SECONDS)
        except (TemplateProblem, TimeoutError) as exc:
            raise _Permanent("TemplateError", str(exc) or "render timed out") from exc

    def _message(
        self, mail: SendEmail, wire: MailAddress, rendered: RenderedEmail, unsubscribe: Unsubscribe | None
    ) -> EmailMessage:
        try:
            msg = EmailMessage()
            msg["From"] = self.settings.mail_from
            # A quoted Address, never a string to parse: a name like 'Zoë <x@evil>,' stays a name.
            msg["To"] = Address(header_text(mail.to_name or ""), wire.local_part, wire.domain)
            msg["Subject"] = header_text(rendered.subject)
            msg["Message-ID"] = message_id(mail.key, self.settings.message_id_domain)
            msg["X-Leadflow-Kind"] = header_text(mail.kind)
            for name, value in (unsubscribe.headers() if unsubscribe else {}).items():
                msg[name] = value
            msg.set_content(rendered.text)
            msg.add_alternative(rendered.html, subtype="html")
        except Exception as exc:  # the same input fails the same way on every attempt
            raise _Permanent("InvalidHeader", f"the message cannot be built: {exc!r}") from exc
        return msg

    async def _deliver(self, msg: EmailMessage, wire: MailAddress) -> None:
        s = self.settings
        await aiosmtplib.send(
            msg,
            sender=parseaddr(s.mail_from)[1],
            recipients=[wire.addr_spec],
            hostname=s.smtp_host,
            port=s.smtp_port,
            username=s.smtp_username,
            password=s.smtp_password.get_secret_value() if s.smtp_password else None,
            start_tls=s.smtp_starttls,
            use_tls=s.smtp_tls,
            cert_bundle=str(s.smtp_ca_file) if s.smtp_ca_file else None,
            timeout=s.smtp_timeout_seconds,
        )

    async def _fail(
        self, mail: SendEmail, lead_id: str | None, to_addr: str, subject: str, exc: _Permanent
    ) -> NoReturn:
        await self._record(mail, lead_id, to_addr, subject, "failed", f"{exc.kind}: {exc.reason}")
        raise ApplicationError(exc.reason, type=exc.kind, non_retryable=True) from exc

    def unsubscribe_for(self, mail: SendEmail, lead_id: str | None) -> Unsubscribe | None:
        """Nurture mail carries the lead's unsubscribe link; operational mail (reps, managers) none."""
        if not mail.nurture:
            return None
        if lead_id is None:
            raise _Permanent("TemplateError", "nurture mail needs a lead id for its unsubscribe link")
        return Unsubscribe.for_lead(self.settings, lead_id, mail.locale or self.renderer.default_locale)

    def acceptance_links(self, mail: SendEmail) -> dict[str, str]:
        """A rep's notification of an assignment waiting for acceptance carries signed accept/reject links
        (activities/sal_tokens.py); the assignment and rep come in the context rules.sales.offer gave it."""
        offered = mail.context.get("acceptance")
        if mail.nurture or not isinstance(offered, dict):
            return {}
        key = sal_key(self.settings.secret("id_key"))
        return links(self.settings.public_base_url, str(offered["assignment"]), str(offered["rep_id"]), key)

    def render(self, mail: SendEmail, unsubscribe: Unsubscribe | None) -> RenderedEmail:
        """The mail as it will be sent; a nurture template whose parts lack the unsubscribe link is refused."""
        context = {**mail.context, **footer_context(self.settings, unsubscribe), **self.acceptance_links(mail)}
        rendered = self.renderer.render(mail.template, context, mail.locale)
        if unsubscribe is not None:
            html_url = unsubscribe.url.replace("&", "&amp;")
            missing = [
                part
                for part, body, url in (("text", rendered.text, unsubscribe.url), ("html", rendered.html, html_url))
                if url not in body
            ]
            if missing:
                raise TemplateProblem(
                    f'nurture template "{mail.template}" has no unsubscribe link in its {" and ".join(missing)} '
                    "part: extend the nurture layout (templates/email/_layouts/) or show {{ unsubscribe_url }}"
                )
        return rendered

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
                variant=mail.variant,
            )


@dataclass
class EmailJob:
    """The send_email activity's input: a lead's SendEmail (the ledger row names the lead)."""

    lead_id: str
    command: SendEmail


class EmailActivities:
    def __init__(self, mailer: Mailer) -> None:
        self.mailer = mailer

    @activity.defn(name="send_email")
    async def send_email(self, job: EmailJob) -> str:
        info = activity.info()
        most = info.retry_policy.maximum_attempts if info.retry_policy else 0
        return await self.mailer.send(
            job.command, job.lead_id, last_attempt=0 < most <= info.attempt, deadline=attempt_deadline(info)
        )
