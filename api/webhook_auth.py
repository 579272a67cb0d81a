"""Who may post relay reports to /v1/email-events: a caller with the API key, or a relay that signs.

A relay (or the small function that adapts its webhook) signs each request with the shared
``LEADFLOW_WEBHOOK_SECRET``: ``X-Leadflow-Timestamp`` is the Unix time in seconds and
``X-Leadflow-Signature`` is ``sha256=`` + hex HMAC-SHA256(secret, timestamp + "." + raw body).
A timestamp further than ``LEADFLOW_WEBHOOK_TOLERANCE_SECONDS`` from now is refused, so a captured request
cannot be replayed later (inside the window, the report ids make a replay count once).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

from api.auth import presented_key

TIMESTAMP_HEADER = "x-leadflow-timestamp"
SIGNATURE_HEADER = "x-leadflow-signature"
SCHEME = "sha256="


def sign(secret: str, timestamp: str, body: bytes) -> str:
    return SCHEME + hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def refusal(
    headers: Mapping[str, str], body: bytes, *, api_key: str, secret: str | None, tolerance: int, now: float
) -> str | None:
    """Why the request may not post reports, or None when it may."""
    key = presented_key([(name.encode("latin-1"), value.encode("latin-1")) for name, value in headers.items()])
    if key is not None:
        return None if hmac.compare_digest(key.encode(), api_key.encode()) else "the API key is not valid"
    signature, timestamp = headers.get(SIGNATURE_HEADER), headers.get(TIMESTAMP_HEADER)
    if signature is None or timestamp is None:
        return (
            "send the API key in the X-API-Key header, or sign the request "
            "(X-Leadflow-Timestamp and X-Leadflow-Signature: see the README)"
        )
    if secret is None:
        return "signed requests are off: set LEADFLOW_WEBHOOK_SECRET"
    if not timestamp.isdigit() or len(timestamp) > 12:
        return "X-Leadflow-Timestamp must be the Unix time in seconds"
    if abs(now - int(timestamp)) > tolerance:
        return f"the signature's timestamp is more than {tolerance} seconds away from now (replay refused)"
    given = [part.strip() for part in signature.split(",")]  # several while a secret is being rotated
    expected = sign(secret, timestamp, body)
    if not any(hmac.compare_digest(part.encode(), expected.encode()) for part in given):
        return "the signature does not match the body"
    return None
