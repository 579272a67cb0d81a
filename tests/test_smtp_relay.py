"""The SMTP send against real aiosmtpd relays: STARTTLS and implicit TLS with a self-signed certificate made
here, SMTP AUTH, and what each relay answer means for the mail (a 5xx for the recipient is final; wrong
credentials or an untrusted certificate are the operator's to fix, so the mail waits for a retry)."""

from __future__ import annotations

import ipaddress
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.exceptions import ApplicationError

from activities.email import Mailer
from activities.rendering import EmailRenderer
from rules.model import SendEmail
from settings import Settings
from store import repo
from tests.conftest import Inbox, free_port

LEAD = "lead-" + "5" * 32
USER, PASSWORD = "leadflow", "s3cret-relay-password"


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and localhost, signed by its own key: (cert.pem, key.pem)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "leadflow test relay")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "relay-cert.pem", directory / "relay-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


class Relay(Inbox):
    """Records whether each message came over TLS and from whom, and can refuse a recipient."""

    def __init__(self, refuse: str | None = None) -> None:
        super().__init__()
        self.refuse = refuse
        self.sessions: list[tuple[bool, Any]] = []

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # type: ignore[no-untyped-def]
        if address == self.refuse:
            return "550 5.1.1 <" + address + ">: mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def]
        encrypted = session.ssl is not None or server.transport.get_extra_info("sslcontext") is not None
        self.sessions.append((encrypted, session.auth_data))
        return await super().handle_DATA(server, session, envelope)


def authenticator(server, session, envelope, mechanism, auth_data):  # type: ignore[no-untyped-def]
    ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (
        USER.encode(),
        PASSWORD.encode(),
    )
    return AuthResult(success=ok, handled=False, auth_data=auth_data.login.decode() if ok else None)


@contextmanager
def relay(handler: Relay, cert: tuple[Path, Path] | None, *, implicit_tls: bool = False) -> Iterator[int]:
    port = free_port()
    options: dict[str, Any] = {"authenticator": authenticator, "auth_require_tls": cert is not None}
    if cert is not None:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(*cert)
        if implicit_tls:  # aiosmtpd only counts STARTTLS as TLS for auth_require_tls
            options.update(ssl_context=context, auth_require_tls=False)
        else:
            options.update(tls_context=context, require_starttls=True)
    else:
        options["auth_require_tls"] = False
    controller = Controller(handler, hostname="127.0.0.1", port=port, **options)
    controller.start()
    try:
        yield port
    finally:
        controller.stop()


def mail(to: str, n: int = 1) -> SendEmail:
    return SendEmail(f"{LEAD}:nurture:{n}", "nurture", "welcome", to, {"lead": {"email": to}, "reason": "t"})


def mailer(settings: Settings, sessions: async_sessionmaker[AsyncSession], **update: object) -> Mailer:
    return Mailer(settings.model_copy(update=update), sessions, EmailRenderer(settings.templates_dir))


async def ledger_row(sessions: async_sessionmaker[AsyncSession], n: int = 1) -> dict[str, Any]:
    async with sessions() as session:
        (row,) = [r for r in await repo.list_emails(session, lead_id=LEAD) if r["key"] == f"{LEAD}:nurture:{n}"]
    return row


@pytest.mark.parametrize("implicit_tls", [False, True], ids=["starttls", "implicit-tls"])
async def test_mail_goes_out_over_tls_with_smtp_auth(
    settings: Settings, sessions: async_sessionmaker[AsyncSession], tmp_path: Path, implicit_tls: bool
) -> None:
    cert = self_signed(tmp_path)
    handler = Relay()
    with relay(handler, cert, implicit_tls=implicit_tls) as port:
        sender = mailer(
            settings,
            sessions,
            smtp_port=port,
            smtp_starttls=not implicit_tls,
            smtp_tls=implicit_tls,
            smtp_username=USER,
            smtp_password=SecretStr(PASSWORD),
            smtp_ca_file=cert[0],
        )
        assert await sender.send(mail("tls@example.com"), LEAD) == "sent"
    assert handler.sessions == [(True, USER)]
    assert handler.to("tls@example.com")


async def test_an_untrusted_certificate_or_wrong_credentials_hold_the_mail_for_a_retry(
    settings: Settings, sessions: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    cert = self_signed(tmp_path)
    handler = Relay()
    with relay(handler, cert) as port:
        common = {"smtp_port": port, "smtp_starttls": True, "smtp_username": USER, "smtp_timeout_seconds": 5.0}
        untrusted = mailer(settings, sessions, smtp_password=SecretStr(PASSWORD), **common)
        with pytest.raises(Exception) as caught:
            await untrusted.send(mail("hold@example.com"), LEAD)
        assert not (isinstance(caught.value, ApplicationError) and caught.value.non_retryable)
        assert (await ledger_row(sessions))["status"] == "sending"
        wrong = mailer(settings, sessions, smtp_password=SecretStr("wrong"), smtp_ca_file=cert[0], **common)
        with pytest.raises(Exception) as caught:
            await wrong.send(mail("hold@example.com"), LEAD)
        assert not (isinstance(caught.value, ApplicationError) and caught.value.non_retryable)
        row = await ledger_row(sessions)
        assert row["status"] == "sending" and "535" in row["error"]
        # The operator fixes the setting; the retry delivers it, once.
        fixed = mailer(settings, sessions, smtp_password=SecretStr(PASSWORD), smtp_ca_file=cert[0], **common)
        assert await fixed.send(mail("hold@example.com"), LEAD) == "sent"
    assert len(handler.messages) == 1 and (await ledger_row(sessions))["attempts"] == 3


async def test_a_5xx_for_the_recipient_is_final_for_that_mail(
    settings: Settings, sessions: async_sessionmaker[AsyncSession]
) -> None:
    handler = Relay(refuse="gone@example.com")
    with relay(handler, None) as port:
        sender = mailer(settings, sessions, smtp_port=port)
        with pytest.raises(ApplicationError) as caught:
            await sender.send(mail("gone@example.com"), LEAD)
        assert caught.value.non_retryable and caught.value.type == "SmtpRejected"
        row = await ledger_row(sessions)
        assert row["status"] == "failed" and "550" in row["error"]
        # Another recipient on the same relay is unaffected.
        assert await sender.send(mail("here@example.com", 2), LEAD) == "sent"
    assert [m["X-Envelope-To"] for m in handler.messages] == ["here@example.com"]
