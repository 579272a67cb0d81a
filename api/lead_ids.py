"""Lead ids: a keyed hash of the normalized email, so the same person always reaches the same workflow
and no personal data appears in workflow ids (which Temporal shows everywhere and cannot erase)."""

from __future__ import annotations

import hashlib
import hmac

from starlette.convertors import Convertor, register_url_convertor

from rules.cleaning import normalize_email_text

LEAD_ID_PATTERN = r"^lead-[0-9a-f]{32}$"
# Route paths name a lead as "/{lead_id:lead_segment}": a segment without a colon, so "/v1/leads/{id}" routes
# never swallow an action on a lead ("/v1/leads/{id}:merge"); another method there answers 405, and a malformed
# id still reaches LEAD_ID_PATTERN's validation (422).
LEAD_SEGMENT = "lead_segment"


class LeadSegment(Convertor[str]):
    regex = "[^/:]+"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor(LEAD_SEGMENT, LeadSegment())


def normalize_email(email: str) -> str:
    # NFKC first: a full-width address is its ASCII twin (ASCII emails keep their ids).
    return normalize_email_text(email)


def lead_id_for(email: str, key: str) -> str:
    digest = hmac.new(key.encode(), normalize_email(email).encode(), hashlib.sha256).hexdigest()
    return f"lead-{digest[:32]}"
