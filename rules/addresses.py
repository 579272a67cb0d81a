"""What an email address, a name or a subject may hold before it reaches a mail header.

One place for the rules the API's edge (refuse early, with a 422 naming the field) and the Mailer (defend
again at send time, for leads stored before a rule existed and for reps' names) both apply, so the two
can never disagree. Pure: email_validator is used without its DNS check.

Policy (README "Hostile input in lead fields"):
- control characters (C0 with NUL and TAB, DEL, C1 with U+0085) and the line/paragraph separators
  U+2028/U+2029 are hostile in names and company: refused at the edge, replaced by a space in headers;
- bidirectional formatting characters (U+202A-U+202E, U+2066-U+2069: the "RTL override" spoofing trick)
  are harmless to strip: stripped at the edge and in headers;
- an IDN domain is sent in its ASCII form (A-labels, ``xn--``); a Unicode local part needs SMTPUTF8, so it
  is refused unless ``LEADFLOW_SMTP_UTF8`` says the relay offers it.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

from email_validator import EmailNotValidError, validate_email

# Unicode categories that end or break a header line: controls (Cc covers C0, DEL and C1 with U+0085),
# the line separator (Zl, U+2028) and the paragraph separator (Zp, U+2029).
_BREAKING = frozenset({"Cc", "Zl", "Zp"})
# The same characters as a JSON Schema pattern, for the API's schema of names and company: Cc is U+0000-U+001F
# and U+007F-U+009F, Zl U+2028, Zp U+2029 (a test holds the two together).
HEADER_SAFE_PATTERN = "^[^\\u0000-\\u001f\\u007f-\\u009f\\u2028\\u2029]*$"
BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
# A display name or subject longer than this is cut (with an ellipsis): headers stay readable and far
# below SMTP's 998-octet line limit.
MAX_HEADER_CHARS = 200
SMTPUTF8_SETTING = "LEADFLOW_SMTP_UTF8"
# Controls have no Unicode name; these are the ones people meet.
_CONTROL_NAMES = {"\r": "carriage return", "\n": "line feed", "\t": "tab", "\x00": "NUL", "\x85": "next line"}


class AddressProblem(ValueError):
    """An address that cannot be sent to: retrying will not help."""


@dataclass(frozen=True)
class MailAddress:
    """An address as it goes on the wire: the domain in A-labels; ``smtputf8`` when the local part is Unicode."""

    local_part: str
    domain: str
    smtputf8: bool

    @property
    def addr_spec(self) -> str:
        return f"{self.local_part}@{self.domain}"


def hostile_character(value: str) -> str | None:
    """The first character that could break a header line, described for a person (None if there is none)."""
    for position, char in enumerate(value):
        if unicodedata.category(char) in _BREAKING:
            name = _CONTROL_NAMES.get(char, "") or unicodedata.name(char, "control character")
            return f"U+{ord(char):04X} ({name.lower()}) at position {position}"
    return None


def without_bidi_controls(value: str) -> str:
    return "".join(c for c in value if c not in BIDI_CONTROLS)


def header_text(value: str, limit: int = MAX_HEADER_CHARS) -> str:
    """``value`` made safe for a header: one line, no controls or bidi overrides, at most ``limit`` chars."""
    spaced = "".join(" " if unicodedata.category(c) in _BREAKING else c for c in without_bidi_controls(value))
    text = " ".join(spaced.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def sendable_address(address: str, *, smtputf8: bool) -> MailAddress:
    """The wire form of ``address``, or AddressProblem saying why it can never be sent to."""
    found = hostile_character(address)
    if found:
        raise AddressProblem(f"the address contains {found}")
    try:
        parts = validate_email(address, check_deliverability=False, allow_smtputf8=True)
    except EmailNotValidError as exc:
        raise AddressProblem(f"not a valid email address: {exc}") from exc
    if parts.ascii_email:
        return MailAddress(parts.local_part, parts.ascii_domain, smtputf8=False)
    if not smtputf8:
        raise AddressProblem(
            f"the part before the @ has non-ASCII characters ({parts.local_part}), which needs a relay with "
            f"SMTPUTF8; set {SMTPUTF8_SETTING}=true if yours offers it"
        )
    return MailAddress(parts.local_part, parts.ascii_domain, smtputf8=True)


def address_problem(address: str, *, smtputf8: bool) -> str | None:
    """Why ``address`` can never be sent to, or None (the edge's check)."""
    try:
        sendable_address(address, smtputf8=smtputf8)
    except AddressProblem as exc:
        return str(exc)
    return None
