"""Signed accept/reject links in a rep's notification (the sales acceptance step, rules/sales.py).

A token is ``<lead id>.<assignment number>.<rep tag>.<mac>``, signed the way unsubscribe and tracking tokens
are (activities/unsubscribe.py, activities/tracking_tokens.py): HMAC-SHA256 over a domain tag and the
payload, cut to 128 bits, with a key derived from ``LEADFLOW_ID_KEY``. It binds the lead, the assignment and
the rep (the rep tag is a keyed hash of the rep id: no name or address in clear; the lead id is itself a
keyed hash). The API honours a token only while that assignment is the lead's current one and that rep
still holds it; an old link answers a page saying the lead has moved on.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass

from activities.tracking_tokens import _b64

_DOMAIN = b"leadflow-sal\x00v1\x00"
MAC_BYTES = 16
REP_TAG_BYTES = 9
SAL_PATH = "/sal/"
_TOKEN = re.compile(r"^(lead-[0-9a-f]{32})\.([0-9]{1,9})\.([A-Za-z0-9_-]{12})\.([A-Za-z0-9_-]{22})$")


def sal_key(id_key: str) -> str:
    """A key of its own for acceptance links, separated from the other keys made from the same secret."""
    return hmac.new(id_key.encode(), b"leadflow sal key v1", hashlib.sha256).hexdigest()


def rep_tag(rep_id: str, key: str) -> str:
    return _b64(hmac.new(key.encode(), b"rep\x00" + rep_id.encode(), hashlib.sha256).digest()[:REP_TAG_BYTES])


def _mac(payload: str, key: str) -> str:
    return _b64(hmac.new(key.encode(), _DOMAIN + payload.encode(), hashlib.sha256).digest()[:MAC_BYTES])


@dataclass(frozen=True)
class SalTicket:
    """What a verified token stands for."""

    lead_id: str
    assignment_key: str
    rep_tag: str

    def held_by(self, rep_id: str, key: str) -> bool:
        return hmac.compare_digest(self.rep_tag, rep_tag(rep_id, key))


def sign(assignment_key: str, rep_id: str, key: str) -> str:
    """The token for ``assignment_key`` (``<lead id>:assign:<n>``, rules.engine) offered to ``rep_id``."""
    lead_id, _, number = assignment_key.rpartition(":assign:")
    payload = f"{lead_id}.{number}.{rep_tag(rep_id, key)}"
    return f"{payload}.{_mac(payload, key)}"


def verify(token: str, key: str) -> SalTicket | None:
    """The assignment a token stands for, or None when leadflow did not sign it as it is."""
    match = _TOKEN.match(token) if len(token) <= 200 else None
    if match is None:
        return None
    lead_id, number, tag, given = match.groups()
    if not hmac.compare_digest(given, _mac(f"{lead_id}.{number}.{tag}", key)):
        return None
    return SalTicket(lead_id, f"{lead_id}:assign:{number}", tag)


def links(base_url: str, assignment_key: str, rep_id: str, key: str) -> dict[str, str]:
    """The notification's accept and reject URLs (GET shows a confirmation page; its button POSTs)."""
    url = base_url.rstrip("/") + SAL_PATH + sign(assignment_key, rep_id, key)
    return {"accept_url": f"{url}?action=accept", "reject_url": f"{url}?action=reject"}
