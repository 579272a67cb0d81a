"""Payloads of merges and identity changes (issue 9 item 5): API -> LeadWorkflow, lead <-> lead, activities.

Kept apart from workflows/payloads.py so the merge protocol reads in one place (workflows/lead_merge.py)."""

from __future__ import annotations

from dataclasses import dataclass

from rules.model import LeadUpserted


@dataclass
class MergeRequest:
    """POST /v1/leads/{id}:merge -> the survivor's ``merge`` update."""

    duplicate_id: str
    # Who asked and why, for the survivor's timeline.
    requested_by: str | None = None
    note: str | None = None


@dataclass
class HandOver:
    """Survivor -> duplicate (signal ``hand_over``): stop, release what you hold, send me your state."""

    survivor_id: str


@dataclass
class MergeRefused:
    """Duplicate -> survivor (signal ``merge_refused``): the duplicate cannot hand itself over, and why."""

    duplicate_id: str
    reason: str


@dataclass
class LeadEdit:
    """PATCH /v1/leads/{id} -> the lead's ``edit`` update: attributes (a new email among them), and the lead id
    of the new address, which becomes an alias of this lead before the change is applied."""

    upsert: LeadUpserted
    alias_id: str | None = None


@dataclass
class MergedLeadRelease:
    """Activity ``release_merged_lead``: the duplicate's side of the store (assignment, follow-ups,
    touchpoints, visitor links, its id as an alias of the survivor)."""

    duplicate_id: str
    survivor_id: str


@dataclass
class AliasRecord:
    """Activity ``record_lead_alias``: ``alias_id`` resolves to ``lead_id`` from now on."""

    alias_id: str
    lead_id: str
    reason: str
