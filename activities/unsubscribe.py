"""Unsubscribe links: signed tokens, the RFC 8058 headers and the footer every nurture email carries.

A token is ``<lead id>.<MAC>``: the lead id is already a keyed hash of the address (no personal data in
clear), and the MAC (HMAC-SHA256 with ``LEADFLOW_UNSUBSCRIBE_KEY``, cut to 128 bits) binds the token to
that lead, so it can be neither forged nor edited into another lead's. Tokens never expire (people keep
mail for years); after a key rotation, tokens signed with a key listed in
``LEADFLOW_UNSUBSCRIBE_KEYS_PREVIOUS`` still verify.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from dataclasses import dataclass
from email.utils import parseaddr
from typing import Any
from urllib.parse import quote

from settings import Settings

_DOMAIN = b"leadflow-unsubscribe\x00v1\x00"
MAC_BYTES = 16
TOKEN_PATTERN = re.compile(r"(lead-[0-9a-f]{32})\.([A-Za-z0-9_-]{22})")
UNSUBSCRIBE_PATH = "/unsubscribe/"
ONE_CLICK = "List-Unsubscribe=One-Click"


def _mac(lead_id: str, key: str) -> str:
    digest = hmac.new(key.encode(), _DOMAIN + lead_id.encode(), hashlib.sha256).digest()[:MAC_BYTES]
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def unsubscribe_token(lead_id: str, key: str) -> str:
    return f"{lead_id}.{_mac(lead_id, key)}"


def lead_of_token(token: str, keys: list[str]) -> str | None:
    """The lead a token unsubscribes, or None when no accepted key signed it (forged, altered, truncated)."""
    match = TOKEN_PATTERN.fullmatch(token)
    if match is None:
        return None
    lead_id, given = match.groups()
    if any(hmac.compare_digest(given, _mac(lead_id, key)) for key in keys):
        return lead_id
    return None


@dataclass(frozen=True)
class Sender:
    """Who sends the nurture mail, as the footer must say (name and postal address)."""

    name: str
    postal_address: str
    # Where recipients send questions or complaints (an email address, phone number or URL).
    contact: str

    @classmethod
    def of(cls, settings: Settings) -> Sender:
        name = settings.sender_name.strip() or parseaddr(settings.mail_from)[0] or parseaddr(settings.mail_from)[1]
        return cls(name, settings.sender_postal_address.strip(), settings.sender_contact.strip())

    def context(self) -> dict[str, Any]:
        return {"name": self.name, "postal_address": self.postal_address, "contact": self.contact}


@dataclass(frozen=True)
class Unsubscribe:
    """One lead's way out: the page/one-click URL and, where configured, a mailbox."""

    url: str
    mailto: str | None = None

    @classmethod
    def for_lead(cls, settings: Settings, lead_id: str, locale: str | None) -> Unsubscribe:
        token = unsubscribe_token(lead_id, settings.unsubscribe_keys()[0])
        url = settings.public_base_url.rstrip("/") + UNSUBSCRIBE_PATH + token
        if locale:
            url += f"?lang={quote(locale)}"  # the page's language; not signed, and harmless if edited
        mailto = None
        if settings.unsubscribe_mailto:
            mailto = f"mailto:{settings.unsubscribe_mailto}?subject={quote('unsubscribe ' + token)}"
        return cls(url, mailto)

    def headers(self) -> dict[str, str]:
        """RFC 2369 List-Unsubscribe with the HTTPS URL first, and RFC 8058's one-click marker."""
        targets = [f"<{self.url}>"] + ([f"<{self.mailto}>"] if self.mailto else [])
        return {"List-Unsubscribe": ", ".join(targets), "List-Unsubscribe-Post": ONE_CLICK}


def sending_gaps(settings: Settings) -> list[str]:
    """What makes nurture mail unlawful or its one-click unsubscribe ignored as configured: the worker warns
    about each at start (leadflow never invents a postal address, and a missing one fails no send)."""
    gaps = []
    if not settings.sender_name.strip():
        gaps.append("LEADFLOW_SENDER_NAME is empty: nurture footers name the sender by the From address alone")
    if not settings.sender_postal_address.strip():
        gaps.append(
            "LEADFLOW_SENDER_POSTAL_ADDRESS is empty: nurture footers show no postal address, which Japan's Act on "
            "Specified Electronic Mail and CAN-SPAM require"
        )
    if not settings.public_base_url.startswith("https://"):
        gaps.append(
            f"LEADFLOW_PUBLIC_BASE_URL is {settings.public_base_url!r}: unsubscribe links need the API's public "
            "https address (mailbox providers ignore a one-click link over plain http)"
        )
    return gaps


def footer_context(settings: Settings, unsubscribe: Unsubscribe | None) -> dict[str, Any]:
    """What the layouts' footer shows: the sender, and the unsubscribe link (None on operational mail)."""
    return {"sender": Sender.of(settings).context(), "unsubscribe_url": unsubscribe.url if unsubscribe else None}
