"""Lead ids: a keyed hash of the normalized email, so the same person always reaches the same workflow
and no personal data appears in workflow ids (which Temporal shows everywhere and cannot erase)."""

from __future__ import annotations

import hashlib
import hmac

from rules.cleaning import normalize_email_text

LEAD_ID_PATTERN = r"^lead-[0-9a-f]{32}$"


def normalize_email(email: str) -> str:
    # NFKC first: a full-width address is its ASCII twin (ASCII emails keep their ids).
    return normalize_email_text(email)


def lead_id_for(email: str, key: str) -> str:
    digest = hmac.new(key.encode(), normalize_email(email).encode(), hashlib.sha256).hexdigest()
    return f"lead-{digest[:32]}"
