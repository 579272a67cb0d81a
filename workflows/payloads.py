"""Payloads crossing the workflow boundary (API <-> LeadWorkflow <-> activities)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from rules.migration import MigrationOptions
from rules.model import (
    Acceptance,
    AssignmentFailed,
    AssignRep,
    AttributeOrigin,
    ConsentRecord,
    ConsentStatus,
    EmailFeedback,
    FollowUp,
    JourneyRun,
    LeadState,
    NurtureHold,
    NurturePaused,
    Outcome,
    Owner,
    Rep,
    RepAssigned,
    RuleError,
    ScoreChange,
    SourceTouch,
    Touchpoint,
    TrackedEvent,
)


@dataclass
class PlaybookBundle:
    """A published playbook version, pinned for the whole run."""

    version: str
    document: dict[str, Any]


@dataclass
class LeadOptions:
    projection_delay_seconds: int = 30
    search_attributes: bool = True
    # Start-to-close timeout of every activity the lead runs; None: each activity's own (email 60 s, store
    # 30 s). An attempt on a worker that died is retried only after this timeout: the crash test shortens it.
    activity_timeout_seconds: float | None = None


# The shape of history a new run records (see LeadWorkflow.run). Patches older than it are not consulted in a
# run that starts with it; a later change of shape takes a new name or a patch of its own.
CURRENT_SHAPE = "lead-shape-2026-11"


@dataclass
class LeadStart:
    lead_id: str
    playbook: PlaybookBundle
    options: LeadOptions = field(default_factory=LeadOptions)
    # Set when continuing as new: everything the lead had, timers included.
    state: LeadState | None = None
    projected_score_seq: int = 0
    projected_stage_seq: int = 0
    # Touchpoints not projected yet (events of a lead that does not exist yet).
    touchpoints: list[Touchpoint] = field(default_factory=list)
    # CURRENT_SHAPE when whoever started the run (the API, a continue-as-new) knew today's shape. None in runs
    # recorded before this field, which ask the patch marker instead (a marker costs a history event and a
    # visibility write per new lead).
    shape: str | None = None

    @classmethod
    def new(cls, lead_id: str, playbook: PlaybookBundle, options: LeadOptions | None = None) -> LeadStart:
        """The start of a new lead's run, in today's shape."""
        return cls(lead_id, playbook, options or LeadOptions(), shape=CURRENT_SHAPE)


@dataclass
class LeadView:
    """Live state answered by the ``view`` query."""

    lead_id: str
    exists: bool
    stage: str
    score: int
    grade: str | None
    grade_reasons: list[str]
    owner: Owner | None
    followup: FollowUp | None
    attributes: dict[str, Any]
    journeys: list[JourneyRun]
    timers: dict[str, datetime]
    recent_score_changes: list[ScoreChange]
    playbook_version: str
    created_at: datetime | None
    updated_at: datetime | None
    queued_team: str | None = None
    # Whether nurture may go to the lead (rules/consent.py), the evidence, and the sends held back and why.
    consent: ConsentStatus = "unknown"
    consents: list[ConsentRecord] = field(default_factory=list)
    nurture_holds: list[NurtureHold] = field(default_factory=list)
    # The latest rules that raised for this lead (skipped, the lead moved on); see rules.engine._holds.
    rule_errors: list[RuleError] = field(default_factory=list)
    # Set when a read-model projection failed for good (the store misses that snapshot; this view is current).
    projection_error: str | None = None
    # Hard bounces and complaints reported for the lead's address (each ends nurture to it).
    email_feedback: list[EmailFeedback] = field(default_factory=list)
    # Where the lead came from: first touch (never overwritten) and latest touch, each one unit.
    original_source: SourceTouch | None = None
    latest_source: SourceTouch | None = None
    # attribute -> when and from where it was last set (progressive profiling).
    attribute_origins: dict[str, AttributeOrigin] = field(default_factory=dict)
    # Merges (workflows/lead_merge.py): the lead this one was merged into, and the leads merged into this one.
    merged_into: str | None = None
    merged_from: list[str] = field(default_factory=list)
    # The sales hand-off (rules/sales.py): the current assignment's acceptance, the outcome, a nurture pause.
    acceptance: Acceptance | None = None
    outcome: Outcome | None = None
    nurture_paused: NurturePaused | None = None


@dataclass
class AssignAnswerV1:
    """The assign_rep activity's answer as the histories recorded before typed activities hold it
    (``{"assigned": {rep fields} | null, "reason": ...}``). Only their replay reads it: this second shape of an
    assigned rep is forced by those histories; everything else uses rules.model.RepAssigned."""

    assigned: dict[str, Any] | None
    reason: str

    def answer(self, command: AssignRep) -> RepAssigned | AssignmentFailed:
        if self.assigned is None:
            return AssignmentFailed(command.key, command.team, self.reason)
        got = self.assigned
        rep = Rep(
            got["rep_id"],
            got["rep_name"],
            got["rep_email"],
            command.team,
            got.get("manager_name"),
            got.get("manager_email"),
        )
        return RepAssigned(command.key, rep, got["reason"])


@dataclass
class PlaybookMigration:
    """A playbook switch asked of one lead: planned by the ``plan_migration`` query (dry run), applied by the
    ``migrate_playbook`` update at the main loop's next safe point (rules/migration.py decides both)."""

    options: MigrationOptions
    playbook: PlaybookBundle
    # The lead's stored events, for a dry run's options.recompute_score (the workflow adds those not projected
    # yet); an apply reads them itself once its own projections are stored.
    events: list[TrackedEvent] = field(default_factory=list)
