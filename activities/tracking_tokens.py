"""Signed tracking tokens: what a tracked link or an open pixel carries, and the proof that leadflow made it.

A token is ``<payload>.<mac>``: the payload is base64url JSON (send key, template, A/B variant and, for a
link, its target); the MAC is HMAC-SHA256 over a domain tag and the payload, cut to 128 bits, with a key
derived from ``LEADFLOW_ID_KEY`` (every process has it, and it never changes, so old mail keeps working).
The target travels inside the signed payload, so an altered or made-up target fails the check and the
redirect is never open. The payload names no person: the send key starts with the lead id, itself a keyed
hash of the address.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
from dataclasses import dataclass

_DOMAIN = b"leadflow-tracking\x00v1\x00"
MAC_BYTES = 16
MAX_TARGET_CHARS = 2048  # longer links are left untracked (and a longer token is refused unread)
MAX_TOKEN_CHARS = 4096
_TOKEN = re.compile(r"^([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]{22})$")
LEAD_IN_KEY = re.compile(r"^(lead-[0-9a-f]{32}):")


@dataclass(frozen=True)
class TrackedSend:
    """The send an open or a click belongs to."""

    send_key: str
    template: str
    variant: str | None = None

    @property
    def lead_id(self) -> str | None:
        match = LEAD_IN_KEY.match(self.send_key)
        return match.group(1) if match else None


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(payload: str, key: str) -> str:
    return _b64(hmac.new(key.encode(), _DOMAIN + payload.encode(), hashlib.sha256).digest()[:MAC_BYTES])


def tracking_key(id_key: str) -> str:
    """A key of its own for tracking tokens, separated from the lead-id hash made with the same secret."""
    return hmac.new(id_key.encode(), b"leadflow tracking key v1", hashlib.sha256).hexdigest()


def sign(send: TrackedSend, key: str, target: str | None = None) -> str:
    fields = {"k": send.send_key, "t": send.template, "v": send.variant}
    if target is not None:
        fields["u"] = target
    payload = _b64(json.dumps(fields, separators=(",", ":"), ensure_ascii=False).encode())
    return f"{payload}.{_mac(payload, key)}"


def verify(token: str, key: str) -> tuple[TrackedSend, str | None] | None:
    """The send (and link target) a token stands for, or None when leadflow did not sign it as it is."""
    match = _TOKEN.match(token) if len(token) <= MAX_TOKEN_CHARS else None
    if match is None:
        return None
    payload, given = match.groups()
    if not hmac.compare_digest(given, _mac(payload, key)):
        return None
    try:
        fields = json.loads(_unb64(payload))
    except (binascii.Error, ValueError):
        return None
    if not isinstance(fields, dict) or not isinstance(fields.get("k"), str) or not isinstance(fields.get("t"), str):
        return None
    variant, target = fields.get("v"), fields.get("u")
    send = TrackedSend(fields["k"], fields["t"], variant if isinstance(variant, str) else None)
    return send, target if isinstance(target, str) else None
