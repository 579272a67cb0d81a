"""Bounces and complaints: when the relay's reports end nurture to an address. Pure: times are given.

- a hard bounce means the mailbox does not exist: nurture to it ends (sending on hurts the sender's
  reputation with every mailbox provider);
- soft bounces (mailbox full, greylisted, over quota) are counted per address, and ``SOFT_BOUNCES_TO_HARD``
  in a row, with no sign of delivery between them, count as a hard bounce;
- a complaint ("this is spam") is an opt-out by the person: it is kept as consent evidence (source
  ``complaint``) as well, so only an explicit new opt-in could ever reopen nurture.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime

from rules.consent import record_consent
from rules.model import ConsentRecord, EmailFeedback, LeadState

SOFT_BOUNCES_TO_HARD = 3
FEEDBACK_KEPT = 20  # reports shown in the live view


def soft_bounces_in_a_row(recent_types: Sequence[str]) -> int:
    """How many soft bounces end ``recent_types`` (an address's reports, oldest first): anything else, a
    delivery report or an open or click of the lead's mail above all, ends a run."""
    count = 0
    for kind in reversed(recent_types):
        if kind != "soft_bounce":
            break
        count += 1
    return count


def soft_bounces_are_hard(recent_types: Sequence[str]) -> bool:
    return soft_bounces_in_a_row(recent_types) >= SOFT_BOUNCES_TO_HARD


def suppression_reason(kind: str) -> str:
    """The suppression list's reason for a report that ends mail to the address."""
    return "complaint" if kind == "complaint" else "hard_bounce"


def record_feedback(state: LeadState, feedback: EmailFeedback, now: datetime) -> None:
    """Keep the report as evidence; a complaint is also an opt-out. A report resent (the relay retried its
    webhook) is kept once."""
    if feedback.at > now:
        feedback = replace(feedback, at=now)
    if feedback in state.email_feedback:
        return
    state.email_feedback.append(feedback)
    del state.email_feedback[:-FEEDBACK_KEPT]
    if feedback.kind == "complaint":
        record_consent(state, ConsentRecord("opted_out", "complaint", feedback.at, wording=feedback.reason), now)


def undeliverable(state: LeadState) -> str | None:
    """Why nurture must not go to the lead's address any more (a hard bounce), or None."""
    bounce = next((f for f in reversed(state.email_feedback) if f.kind == "hard_bounce"), None)
    if bounce is None:
        return None
    return f"the address hard-bounced ({bounce.reason}, {bounce.at.isoformat()})"


def verdict(kind: str, recent_types: Sequence[str]) -> str | None:
    """What a new report (already part of ``recent_types``) means: "hard_bounce", "complaint" or None."""
    if kind in ("hard_bounce", "complaint"):
        return kind
    if kind == "soft_bounce" and soft_bounces_are_hard(recent_types):
        return "hard_bounce"
    return None


def verdict_reason(kind: str, reason: str | None) -> str:
    if kind == "soft_bounce":
        return f"{SOFT_BOUNCES_TO_HARD} soft bounces in a row (last: {reason or 'no reason given'})"
    return reason or kind.replace("_", " ")
