"""Data the pure core works on: a lead's state, the inputs it reacts to, the commands it emits.

Plain dataclasses: cheap to build in the hot path, serialised by Temporal's pydantic converter,
and free of I/O. Times are timezone-aware UTC datetimes supplied by the caller (never read here).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Literal, get_args

from rules.dedupe import SeenEvents

# cancelled: the follow-up ended unmet because the lead left the stage or the owner that started it
# (rules/followups.py); it counts neither as met nor as breached.
SlaStatus = Literal["pending", "met", "overdue", "cancelled"]
SLA_STATUSES: tuple[str, ...] = get_args(SlaStatus)
TouchKind = Literal["call", "email", "meeting", "linkedin", "sms", "other"]
TOUCH_KINDS: tuple[str, ...] = get_args(TouchKind)
ConsentStatus = Literal["opted_in", "opted_out", "unknown"]
ConsentSource = Literal["form", "import", "api", "unsubscribe_link", "complaint"]
# What a relay reports back about mail to the lead's own address that ends nurture to it.
FeedbackKind = Literal["hard_bounce", "complaint"]
CONSENT_STATUSES: tuple[str, ...] = get_args(ConsentStatus)
CONSENT_SOURCES: tuple[str, ...] = get_args(ConsentSource)


# ---------------------------------------------------------------- inputs


@dataclass
class TrackedEvent:
    """A behavioural event (page view, download, email open/click, form, webinar, ...)."""

    id: str
    type: str
    at: datetime
    url: str | None = None
    name: str | None = None
    properties: dict[str, Any] = field(default_factory=dict)


@dataclass
class SourceTouch:
    """One marketing touch as one unit (rules/sources.py): where the person came from, never mixed
    between two visits. ``channel`` is the source map's category for this touch."""

    channel: str
    source: str
    medium: str | None = None
    campaign: str | None = None
    content: str | None = None
    term: str | None = None
    at: datetime | None = None
    # The event id it came with, or the door (form, api, import, tracking) for a lead's own fields.
    origin: str | None = None
    raw_source: str | None = None
    click_id: str | None = None
    referrer: str | None = None


@dataclass
class AttributeOrigin:
    """When a lead attribute was last set, and from where (form, api, import, tracking, journey)."""

    at: datetime
    origin: str


@dataclass
class Touchpoint:
    """An event as the read model keeps it, with its source unit when it was a marketing touch."""

    event: TrackedEvent
    received_at: datetime
    touch: SourceTouch | None = None


@dataclass
class ConsentRecord:
    """What the person said about receiving mail on a channel, where and when (kept as evidence)."""

    status: ConsentStatus
    source: ConsentSource
    at: datetime
    channel: Literal["email"] = "email"
    # The consent text shown, or the form that showed it, where known.
    wording: str | None = None
    form_id: str | None = None


@dataclass
class LeadUpserted:
    """A form post, import or API call carrying attributes; later values win, empty ones never erase."""

    attributes: dict[str, Any]
    # Consent given with the form or import, if any.
    consent: ConsentRecord | None = None
    # The door it came through (form, api, import, ...), kept as each attribute's provenance.
    origin: str | None = None
    # An explicit change of address (PATCH /v1/leads/{id}). Any other post keeps the lead's email: an old or
    # secondary address that resolves to this lead (an alias, rules/merge.py) must not take it over.
    email_change: bool = False


@dataclass
class ConsentRecorded:
    """A consent change on its own: the API, an unsubscribe link or a complaint."""

    record: ConsentRecord


@dataclass
class EventsReceived:
    events: list[TrackedEvent]
    # Identifying attributes sent with the events (create-on-first-event via POST /v1/events).
    attributes: dict[str, Any] = field(default_factory=dict)
    origin: str | None = None


@dataclass
class TimerFired:
    name: str


@dataclass
class TouchLogged:
    """A rep's touch (call, email, meeting) logged against the lead."""

    touch_id: str
    kind: str
    at: datetime
    rep_id: str | None = None
    note: str | None = None


@dataclass
class Rep:
    """A sales rep as a lead knows them: who, in which team, and the manager that team escalates to.

    The one shape of a rep across layers: the store's answer, the assign activity's result, the lead's owner
    and the API's view of it."""

    id: str
    name: str
    email: str
    team: str
    manager_name: str | None = None
    manager_email: str | None = None


@dataclass
class RepAssigned:
    """Result of an AssignRep command: the rep who got the lead, and how they were chosen."""

    key: str
    rep: Rep
    reason: str


@dataclass
class AssignmentFailed:
    key: str
    team: str
    reason: str


@dataclass
class EmailFeedback:
    """A relay's report on mail to the lead's address: a hard bounce (or soft ones in a row) or a complaint."""

    kind: FeedbackKind
    at: datetime
    reason: str
    # The send it concerns, when the relay's message id matched one in the email ledger.
    send_key: str | None = None
    template: str | None = None


# ---------------------------------------------------------------- sales hand-off (rules/sales.py)

SalesAction = Literal[
    "accept", "reject", "stage", "won", "lost", "disqualify", "reassign", "pause_nurture", "resume_nurture"
]  # fmt: skip
SALES_ACTIONS: tuple[str, ...] = get_args(SalesAction)
AcceptanceStatus = Literal["pending", "accepted", "rejected", "rerouted"]
OutcomeKind = Literal["won", "lost", "disqualified"]


@dataclass
class Actor:
    """Who made a manual change: the caller as the API authenticated it (a key, a signed-in user, or a rep
    through the signed link of their notification), never a name taken from a request body."""

    kind: str
    id: str
    role: str
    name: str = ""
    rep_id: str | None = None

    def label(self) -> str:
        return f"{self.role} {self.name or self.id}"


@dataclass
class SalesChange:
    """A rep's or manager's change to a lead (accept, reject, outcomes, reassign, pause): one shape for every
    action, checked by rules.sales.refusal (the workflow update's validator) and applied by decide."""

    change_id: str
    action: SalesAction
    by: Actor
    at: datetime
    reason: str | None = None
    note: str | None = None
    # stage: the stage to set.
    stage: str | None = None
    # won: the deal.
    amount: Decimal | None = None
    currency: str | None = None
    close_date: date | None = None
    product: str | None = None
    # reassign: to this rep (of ``team``) or to ``team``'s strategy.
    rep_id: str | None = None
    team: str | None = None
    # accept/reject through a signed link: the assignment the link was sent for (refused once it is not current).
    assignment_key: str | None = None


@dataclass
class Acceptance:
    """The rep's acceptance of an assignment (SAL): offered on assignment, answered or timed out."""

    assignment_key: str
    rep_id: str
    offered_at: datetime
    status: AcceptanceStatus = "pending"
    # The playbook's acceptance SLA (sales.acceptance.within), if any.
    due_at: datetime | None = None
    reminded_at: datetime | None = None
    escalated_at: datetime | None = None
    decided_at: datetime | None = None
    decided_by: str | None = None
    reason: str | None = None


@dataclass
class Outcome:
    """How sales closed the lead: won (the deal), lost or disqualified (the reason), by whom and when."""

    kind: OutcomeKind
    at: datetime
    by: str
    reason: str | None = None
    note: str | None = None
    amount: Decimal | None = None
    currency: str | None = None
    close_date: date | None = None
    product: str | None = None


@dataclass
class NurturePaused:
    """Nurture held by hand: journeys keep their position and go on when resumed."""

    at: datetime
    by: str
    reason: str | None = None


@dataclass
class LeadMerged:
    """A duplicate lead handed over to this one (rules/merge.py): its whole state, as it was when it stopped."""

    duplicate_id: str
    duplicate: LeadState


Input = (
    LeadUpserted
    | EventsReceived
    | TimerFired
    | TouchLogged
    | RepAssigned
    | AssignmentFailed
    | ConsentRecorded
    | EmailFeedback
    | LeadMerged
    | SalesChange
)


# ---------------------------------------------------------------- commands


# The kind of the marketing mail a journey sends to a lead. Every other kind (rep and manager
# notifications, digests) is operational mail: no unsubscribe, never held by the email policy.
NURTURE_KIND = "nurture"


@dataclass
class SendEmail:
    """Render ``template`` with ``context`` and send it to ``to``; ``key`` makes the send idempotent."""

    key: str
    kind: str
    template: str
    to: str
    context: dict[str, Any]
    to_name: str | None = None
    # The template variant's language (rules/locale.py); None: the sender's default.
    locale: str | None = None
    # The A/B variants the lead is in when a journey sends ("split=variant", comma-joined), for reports.
    variant: str | None = None
    # Engagement tracking the playbook asks for (rules/engagement.py); operational mail is never tracked.
    track_opens: bool = False
    track_clicks: bool = False

    @property
    def nurture(self) -> bool:
        return self.kind == NURTURE_KIND


@dataclass
class AssignRep:
    """Give the lead a rep of ``team`` (rules/assignment.py chooses); ``key`` makes it idempotent."""

    lead_id: str
    key: str
    team: str
    strategy: str
    reason: str
    exclude_rep_ids: list[str] = field(default_factory=list)
    # A named rep to try first (routing rule `rep:`).
    rep_id: str | None = None
    # False: the shell runs it as a normal activity, not a local one. Assignments asked by a person or by the
    # acceptance SLA (rules/sales.py) arrive beside concurrent updates; a local activity started then is what
    # temporalio/sdk-python#1578 mishandles on replay.
    local: bool = True


Command = SendEmail | AssignRep


# ---------------------------------------------------------------- state


@dataclass
class ScoreChange:
    seq: int
    at: datetime
    points: float
    score_after: float
    rule_id: str
    reason: str
    event_id: str | None = None


@dataclass
class StageChange:
    seq: int
    at: datetime
    from_stage: str
    to_stage: str
    reason: str


@dataclass
class Owner:
    """The rep a lead belongs to now, since when and why."""

    rep: Rep
    assigned_at: datetime
    reason: str

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: Any) -> Any:
        # States carried by running leads (continue-as-new inputs) and views of workers not yet upgraded hold
        # the flat shape Owner had before Rep existed; read them as the nested one.
        from pydantic_core import core_schema

        return core_schema.no_info_before_validator_function(_owner_from_flat, handler(source))


def _owner_from_flat(value: Any) -> Any:
    if not isinstance(value, dict) or "rep" in value or "rep_id" not in value:
        return value
    rep = {
        "id": value["rep_id"],
        "name": value.get("rep_name", value["rep_id"]),
        "email": value.get("rep_email", ""),
        "team": value.get("team", ""),
        "manager_name": value.get("manager_name"),
        "manager_email": value.get("manager_email"),
    }
    return {"rep": rep, "assigned_at": value.get("assigned_at"), "reason": value.get("reason", "")}


@dataclass
class FollowUp:
    """A follow-up SLA: the owner must touch the lead before ``due_at``."""

    key: str
    kind: str
    policy_id: str
    rep_id: str
    team: str
    started_at: datetime
    due_at: datetime
    remind_at: datetime | None = None
    status: SlaStatus = "pending"
    reminded_at: datetime | None = None
    escalated_at: datetime | None = None
    met_at: datetime | None = None
    # The stage that started it; None: started before follow-ups recorded it.
    stage: str | None = None
    # When and why it was cancelled (rules/followups.py).
    cancelled_at: datetime | None = None
    cancel_reason: str | None = None


@dataclass
class JourneyRun:
    """Where a lead is in one nurture journey."""

    journey_id: str
    step: int = 0
    status: Literal["active", "completed", "exited"] = "active"
    enrolled_at: datetime | None = None
    ended_at: datetime | None = None
    exit_reason: str | None = None
    # The wait_for_event step the lead is waiting in, if any.
    waiting_for: str | None = None
    # A/B split step id -> the variant (step id) this lead was sent to.
    variants: dict[str, str] = field(default_factory=dict)
    # How many times the lead was enrolled in this journey (journeys[].reenroll, rules/reenrolment.py), and
    # whether the enrolment condition was seen false since this run ended (it must become true *again*).
    enrolments: int = 1
    rearmed: bool = False


@dataclass
class NurtureHold:
    """A nurture send the email policy held back: skipped (consent) or deferred (send window, cap)."""

    at: datetime
    journey_id: str
    step_id: str
    template: str
    action: Literal["skipped", "deferred"]
    reason: str
    # For a deferral: when the send is tried again.
    until: datetime | None = None


@dataclass
class RuleError:
    """A marketer's rule raised while it ran for this lead: it was skipped, and the lead moved on."""

    seq: int
    at: datetime
    rule_id: str
    message: str
    event_id: str | None = None


@dataclass
class LeadState:
    lead_id: str
    attributes: dict[str, Any] = field(default_factory=dict)
    created_at: datetime | None = None
    updated_at: datetime | None = None
    stage: str = "new"
    score: float = 0.0
    grade: str | None = None
    grade_points: float = 0.0
    grade_reasons: list[str] = field(default_factory=list)
    owner: Owner | None = None
    followup: FollowUp | None = None
    score_changes: list[ScoreChange] = field(default_factory=list)
    stage_changes: list[StageChange] = field(default_factory=list)
    # Named timers the workflow sleeps on: name -> due time (carried across continue-as-new).
    timers: dict[str, datetime] = field(default_factory=dict)
    # Event ids counted in the dedupe window (rules/dedupe.py), so a retried post never counts twice.
    seen_events: SeenEvents = field(default_factory=SeenEvents)
    # The last 500 ids as states recorded before the window kept them; taken over into seen_events.
    seen_event_ids: list[str] = field(default_factory=list)
    # rule id -> times it scored (for caps); event type -> times seen (for history windows).
    rule_hits: dict[str, list[datetime]] = field(default_factory=dict)
    event_times: dict[str, list[datetime]] = field(default_factory=dict)
    journeys: dict[str, JourneyRun] = field(default_factory=dict)
    pending_assignment: str | None = None
    # Team whose queue holds the lead when nobody could be assigned.
    queued_team: str | None = None
    assignment_seq: int = 0
    followup_seq: int = 0
    email_seq: int = 0
    playbook_version: str = ""
    # Consent evidence, oldest first (bounded); the effective status is derived in rules/consent.py.
    consents: list[ConsentRecord] = field(default_factory=list)
    # When nurture mail went out, for the playbook's frequency caps (bounded).
    nurture_sent: list[datetime] = field(default_factory=list)
    # The latest nurture sends the policy held back, and why (bounded; shown in the live view).
    nurture_holds: list[NurtureHold] = field(default_factory=list)
    # The latest rules that raised at run time (bounded), for the live view and the simulator trace.
    rule_errors: list[RuleError] = field(default_factory=list)
    # Bounces and complaints reported for the lead's address, oldest first (bounded; rules/deliverability.py).
    email_feedback: list[EmailFeedback] = field(default_factory=list)
    # First touch (never overwritten) and latest touch, each one whole unit (rules/sources.py).
    original_source: SourceTouch | None = None
    latest_source: SourceTouch | None = None
    # attribute -> when and from where it was last set (progressive profiling, rules/profile.py).
    attribute_origins: dict[str, AttributeOrigin] = field(default_factory=dict)
    # Merges (rules/merge.py): the survivor this lead was merged into (it then takes no more inputs), and
    # the duplicates merged into this lead, oldest first.
    merged_into: str | None = None
    merged_from: list[str] = field(default_factory=list)
    # Runs recorded before follow-ups were cancelled with their stage or owner (and before a backdated touch
    # stopped meeting a follow-up that started after it) keep the old behaviour (the lead workflow sets this
    # from workflow.patched; rules/followups.py, engine._touch). Everything else: False.
    legacy_followups: bool = False
    # The sales hand-off (rules/sales.py): the current assignment's acceptance, how sales closed the lead,
    # and a manual pause of nurture.
    acceptance: Acceptance | None = None
    outcome: Outcome | None = None
    nurture_paused: NurturePaused | None = None
    # Reps who rejected the lead or let its acceptance time out since it last reached sales: a reroute
    # excludes them (the acceptance SLA reroutes at most sales.acceptance.max_reroutes times).
    acceptance_declined: list[str] = field(default_factory=list)


# ---------------------------------------------------------------- read-model projection


@dataclass
class CapacityHeld:
    """Which of a lead's assignments still count against a rep's capacity (rules/assignment.py)."""

    # The working owner, whose assignment stays open; None: the lead holds nobody's capacity.
    rep_id: str | None
    # An assignment in flight: its answer may still make an owner, so it stays open too.
    pending_key: str | None = None
    # How many assignments the lead had asked for (its assignment_seq) when the snapshot was taken: one asked
    # later is unknown to this snapshot and stays as it is (a late projection must not close it). None: a
    # snapshot from a worker before this field.
    asked: int | None = None


@dataclass
class LeadSnapshot:
    """What the read model stores about a lead; written only when it changed."""

    lead_id: str
    attributes: dict[str, Any]
    stage: str
    score: int
    grade: str | None
    owner_rep_id: str | None
    owner_team: str | None
    created_at: datetime | None
    updated_at: datetime | None
    playbook_version: str
    followup: FollowUp | None
    # Only the changes not yet projected; the store ignores duplicates by (lead_id, seq).
    score_changes: list[ScoreChange] = field(default_factory=list)
    stage_changes: list[StageChange] = field(default_factory=list)
    # Events not projected yet; the store ignores duplicates by (lead_id, event id).
    touchpoints: list[Touchpoint] = field(default_factory=list)
    original_source: SourceTouch | None = None
    latest_source: SourceTouch | None = None
    # The lead's assignments to keep open; the store closes its others. None (snapshots of workers before
    # capacity release): leave them as they are.
    capacity: CapacityHeld | None = None
    acceptance: Acceptance | None = None
    outcome: Outcome | None = None
