"""Consent: which record decides whether a lead may get nurture email. Pure: times are given.

Laws differ (Japan's Act on Specified Electronic Mail and the EU want opt-in; the US sends until opt-out),
so the playbook's ``email.require_opt_in`` picks the policy; the evidence rules here are the same for both:
- the latest decisive record (opted in / opted out) wins; ``unknown`` records are kept but decide nothing;
- at the same moment an opt-out beats an opt-in;
- after an opt-out only an explicit opt-in by the person (a form or an API call on their behalf) reopens
  nurture: a bulk import claiming consent does not undo an unsubscribe or a complaint.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from rules.model import ConsentRecord, ConsentStatus, LeadState

MAX_CONSENT_RECORDS = 50  # evidence kept per lead; the oldest go first
EXPLICIT_OPT_IN_SOURCES = frozenset({"form", "api"})


def record_consent(state: LeadState, record: ConsentRecord, now: datetime) -> None:
    """Keep ``record`` as evidence, in time order (a consent never dates from the future); the same record
    delivered again (an import chunk repeated after a crash) is kept once."""
    if record.at > now:
        record = replace(record, at=now)
    records = state.consents
    if record in records:
        return
    position = len(records)
    while position and records[position - 1].at > record.at:
        position -= 1
    records.insert(position, record)
    del records[:-MAX_CONSENT_RECORDS]


def effective_status(records: list[ConsentRecord]) -> tuple[ConsentStatus, ConsentRecord | None]:
    """The status the records add up to, and the record that decided it (``None`` when none did)."""
    decided: ConsentRecord | None = None
    for record in records:  # oldest first
        if record.channel != "email" or record.status == "unknown":
            continue
        if decided is None:
            decided = record
        elif record.status == "opted_out":
            decided = record
        elif decided.status == "opted_in":
            decided = record  # a newer opt-in refreshes the evidence
        elif record.at > decided.at and record.source in EXPLICIT_OPT_IN_SOURCES:
            decided = record  # an explicit opt-in after an opt-out counts; the same moment does not
    return (decided.status, decided) if decided else ("unknown", None)


def nurture_blocked(records: list[ConsentRecord], require_opt_in: bool) -> str | None:
    """Why nurture must not go to this lead now, or ``None`` when it may."""
    status, record = effective_status(records)
    if record is not None and status == "opted_out":
        return f"opted out of email ({record.source}, {record.at.isoformat()})"
    if require_opt_in and status != "opted_in":
        return "no email opt-in on record (the playbook requires opt-in)"
    return None
