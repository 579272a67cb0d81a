"""The read model's tables (SQLAlchemy 2 typed declarative models).

Any change here needs a new migration in store/migrations/versions (tests compare the two).
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Numeric,
    String,
    Text,
    UniqueConstraint,
    false,
    true,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

# Deterministic constraint names: the same on SQLite and PostgreSQL, and batch migrations need them.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# Autoincrement ids for tables that grow with traffic; SQLite only autoincrements INTEGER PRIMARY KEY.
BigIntId = BigInteger().with_variant(Integer(), "sqlite")


MIN_STORED = datetime(1, 1, 2, tzinfo=UTC)
MAX_STORED = datetime(9999, 12, 30, tzinfo=UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC in, timezone-aware UTC out, on every backend.

    SQLite has no timezone support and SQLAlchemy drops tzinfo there, so values are stored as naive
    UTC (which also keeps them ordered as text) and tagged UTC on the way out. Naive inputs are taken
    to be UTC already.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    @property
    def python_type(self) -> type[datetime]:
        return datetime

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise TypeError(f"UTCDateTime needs a datetime, got {type(value).__name__}")
        try:
            value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        except OverflowError:
            # 0001-01-01T00:00+14:00 has no UTC datetime: a clear, permanent error instead of OverflowError.
            raise ValueError(f"the time {value.isoformat()} cannot be stored: it has no UTC equivalent") from None
        # A day's margin: PostgreSQL answers in the session's time zone, which must not overflow on the way out.
        if not MIN_STORED <= value <= MAX_STORED:
            raise ValueError(f"the time {value.isoformat()} cannot be stored: too close to year 1 or 9999")
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# Exact money: 18 digits with 4 decimals covers yen totals and cent-level currencies alike.
Money = Numeric(18, 4)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {
        datetime: UTCDateTime(),
        str: String(),
        dict[str, Any]: JSON(),
    }


class Lead(Base):
    __tablename__ = "leads"

    id: Mapped[str] = mapped_column(String(), primary_key=True)
    email: Mapped[str | None] = mapped_column(index=True)
    first_name: Mapped[str | None]
    last_name: Mapped[str | None]
    company: Mapped[str | None]
    title: Mapped[str | None]
    company_size: Mapped[int | None] = mapped_column(Integer())
    industry: Mapped[str | None]
    country: Mapped[str | None]
    source: Mapped[str | None]
    utm_source: Mapped[str | None]
    utm_medium: Mapped[str | None]
    utm_campaign: Mapped[str | None]
    utm_term: Mapped[str | None]
    utm_content: Mapped[str | None]
    attributes: Mapped[dict[str, Any]] = mapped_column(JSON(), default=dict)
    stage: Mapped[str] = mapped_column(index=True)
    score: Mapped[int] = mapped_column(Integer(), default=0, index=True)
    grade: Mapped[str | None]
    owner_rep_id: Mapped[str | None] = mapped_column(index=True)
    owner_team: Mapped[str | None]
    sla_status: Mapped[str | None] = mapped_column(index=True)
    sla_due_at: Mapped[datetime | None]
    playbook_version: Mapped[str | None]
    created_at: Mapped[datetime] = mapped_column(index=True)
    updated_at: Mapped[datetime]
    # Sources as data (issue 8 item 5): the first touch's canonical source (never overwritten), the
    # latest touch's, and the source map's category (organic, paid, social, email, referral, event, direct).
    original_source: Mapped[str | None] = mapped_column(index=True)
    latest_source: Mapped[str | None]
    source_category: Mapped[str | None]
    # Money (item 6): set when the lead is won (deal amount in won_currency) or lost.
    won_amount: Mapped[Decimal | None] = mapped_column(Money)
    won_currency: Mapped[str | None] = mapped_column(String(3))
    won_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), index=True)
    lost_reason: Mapped[str | None] = mapped_column(Text())
    # The sales hand-off (0013, rules/sales.py): the current assignment's acceptance (pending, accepted,
    # rejected, rerouted) and its deadline, how sales closed the lead (won, lost, disqualified) and by whom.
    acceptance_status: Mapped[str | None] = mapped_column(index=True)
    acceptance_due_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    outcome: Mapped[str | None] = mapped_column(index=True)
    outcome_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), index=True)
    outcome_by: Mapped[str | None] = mapped_column(Text())
    won_product: Mapped[str | None] = mapped_column(Text())
    close_date: Mapped[date | None] = mapped_column(Date())
    disqualify_reason: Mapped[str | None] = mapped_column(Text())


class Touchpoint(Base):
    __tablename__ = "touchpoints"
    # Serves "this lead's recent events" without a sort.
    # One row per (lead, event id): the lead's workflow is the one writer and a retried projection is ignored.
    __table_args__ = (
        Index("ix_touchpoints_lead_id_occurred_at", "lead_id", "occurred_at"),
        UniqueConstraint("lead_id", "event_id"),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    event_id: Mapped[str]
    # No foreign key: a touchpoint may be projected with the snapshot that first creates the lead row.
    lead_id: Mapped[str] = mapped_column(index=True)
    # Indexed for the email report (opens and clicks).
    type: Mapped[str] = mapped_column(index=True)
    url: Mapped[str | None] = mapped_column(Text())
    name: Mapped[str | None]
    properties: Mapped[dict[str, Any]] = mapped_column(JSON(), default=dict)
    occurred_at: Mapped[datetime]
    received_at: Mapped[datetime]
    # One marketing touch as one unit (UTM, referrer or click id folded by the source map), for attribution.
    channel: Mapped[str | None]
    source: Mapped[str | None]
    medium: Mapped[str | None]
    campaign: Mapped[str | None]
    content: Mapped[str | None]
    term: Mapped[str | None]


class ScoreChangeRow(Base):
    __tablename__ = "score_changes"
    __table_args__ = (UniqueConstraint("lead_id", "seq"),)

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    lead_id: Mapped[str]
    seq: Mapped[int] = mapped_column(Integer())
    at: Mapped[datetime]
    points: Mapped[float] = mapped_column(Float())
    score_after: Mapped[float] = mapped_column(Float())
    rule_id: Mapped[str]
    reason: Mapped[str] = mapped_column(Text())
    event_id: Mapped[str | None]


class StageChangeRow(Base):
    __tablename__ = "stage_changes"
    __table_args__ = (UniqueConstraint("lead_id", "seq"),)

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    lead_id: Mapped[str]
    seq: Mapped[int] = mapped_column(Integer())
    at: Mapped[datetime]
    from_stage: Mapped[str]
    to_stage: Mapped[str]
    reason: Mapped[str] = mapped_column(Text())


class Team(Base):
    __tablename__ = "teams"

    key: Mapped[str] = mapped_column(String(), primary_key=True)
    name: Mapped[str]
    manager_name: Mapped[str | None]
    manager_email: Mapped[str | None]
    # Last rep id handed out by round-robin; the next pick is the first active rep after it.
    rr_cursor: Mapped[str | None]
    updated_at: Mapped[datetime]


class Rep(Base):
    __tablename__ = "reps"

    id: Mapped[str] = mapped_column(String(), primary_key=True)
    team_key: Mapped[str] = mapped_column(ForeignKey("teams.key"), index=True)
    name: Mapped[str]
    email: Mapped[str]
    active: Mapped[bool] = mapped_column(Boolean(), default=True, server_default=true())
    # Most open assignments this rep may hold; NULL means unlimited.
    capacity: Mapped[int | None] = mapped_column(Integer())
    weight: Mapped[int] = mapped_column(Integer(), default=1, server_default="1")
    # Out of office until then: no new leads (NULL: available).
    away_until: Mapped[datetime | None] = mapped_column(UTCDateTime())


class Assignment(Base):
    __tablename__ = "assignments"
    # Load counting: open assignments per rep.
    __table_args__ = (Index("ix_assignments_rep_id_open", "rep_id", "open"),)

    # Deterministic idempotency key chosen by the workflow.
    key: Mapped[str] = mapped_column(String(), primary_key=True)
    lead_id: Mapped[str] = mapped_column(index=True)
    team_key: Mapped[str]
    rep_id: Mapped[str]
    reason: Mapped[str] = mapped_column(Text())
    assigned_at: Mapped[datetime]
    # False once the lead leaves the rep (reassigned, recycled, won, disqualified or lost, erased), so capacity
    # counts only what a rep still holds (rules/assignment.py: capacity_held, to_release).
    open: Mapped[bool] = mapped_column(Boolean(), default=True, server_default=true())


class FollowUpRow(Base):
    __tablename__ = "followups"

    key: Mapped[str] = mapped_column(String(), primary_key=True)
    lead_id: Mapped[str] = mapped_column(index=True)
    rep_id: Mapped[str]
    team_key: Mapped[str]
    kind: Mapped[str]
    policy_id: Mapped[str]
    status: Mapped[str] = mapped_column(index=True)
    started_at: Mapped[datetime]
    due_at: Mapped[datetime] = mapped_column(index=True)
    remind_at: Mapped[datetime | None]
    reminded_at: Mapped[datetime | None]
    escalated_at: Mapped[datetime | None]
    met_at: Mapped[datetime | None]
    updated_at: Mapped[datetime]


class EmailRow(Base):
    __tablename__ = "emails"

    # Idempotency key of the SendEmail command.
    key: Mapped[str] = mapped_column(String(), primary_key=True)
    # None for emails that concern no single lead (the managers' digest).
    lead_id: Mapped[str | None] = mapped_column(index=True)
    kind: Mapped[str]
    template: Mapped[str]
    to_addr: Mapped[str]
    subject: Mapped[str | None] = mapped_column(Text())
    # Looked up by the relay's bounce and complaint reports (POST /v1/email-events).
    message_id: Mapped[str | None] = mapped_column(index=True)
    # The A/B variants the lead was in when a journey sent it ("split=variant"), for the email report.
    variant: Mapped[str | None]
    status: Mapped[str]  # sending | sent | failed
    attempts: Mapped[int] = mapped_column(Integer(), default=0, server_default="0")
    error: Mapped[str | None] = mapped_column(Text())
    created_at: Mapped[datetime]
    sent_at: Mapped[datetime | None]


class PlaybookVersion(Base):
    __tablename__ = "playbook_versions"

    version: Mapped[int] = mapped_column(Integer(), primary_key=True, autoincrement=True)
    hash: Mapped[str] = mapped_column(unique=True)
    author: Mapped[str | None]
    note: Mapped[str | None] = mapped_column(Text())
    document: Mapped[str] = mapped_column(Text())
    created_at: Mapped[datetime]
    published: Mapped[bool] = mapped_column(Boolean(), default=False, server_default=false())


class LeadKey(Base):
    """A lead's data key (AES-256-GCM) for its Temporal payloads, wrapped by the master key.

    Erasure clears ``wrapped_key`` and sets ``erased_at``: the histories encrypted with it become
    unreadable (crypto-shredding), and the row stays as the record that this lead was erased.
    """

    __tablename__ = "lead_keys"

    lead_id: Mapped[str] = mapped_column(String(), primary_key=True)
    key_id: Mapped[str] = mapped_column(unique=True)
    # Which master key wrapped it (a fingerprint, never the key): rotation re-wraps the others.
    master_key_id: Mapped[str | None] = mapped_column(index=True)
    wrapped_key: Mapped[bytes | None] = mapped_column(LargeBinary())
    created_at: Mapped[datetime]
    erased_at: Mapped[datetime | None]


class Suppression(Base):
    """Addresses and domains no email may go to (store/suppressions.py).

    Matched by ``address_hash`` (a keyed hash of the address, or of ``@domain``). ``address`` holds the plain
    address or domain where an operator must read it (unsubscribed, hard_bounce, complaint, manual) and is
    NULL for an erased person, who stays on the list as the hash alone.
    """

    __tablename__ = "suppressions"

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    address_hash: Mapped[str] = mapped_column(unique=True)
    reason: Mapped[str] = mapped_column(index=True)  # unsubscribed, hard_bounce, complaint, manual, erased
    created_at: Mapped[datetime] = mapped_column(index=True)
    scope: Mapped[str] = mapped_column(default="address", server_default="address")  # address or domain
    address: Mapped[str | None]
    note: Mapped[str | None]
    lead_id: Mapped[str | None]


class ImportRun(Base):
    """One CSV import: its options, where it stopped (resume point) and its counts."""

    __tablename__ = "imports"

    id: Mapped[str] = mapped_column(String(), primary_key=True)
    filename: Mapped[str]
    file_path: Mapped[str] = mapped_column(Text())
    source: Mapped[str]
    consent_basis: Mapped[str | None]
    default_country: Mapped[str | None]
    column_map: Mapped[dict[str, Any]] = mapped_column(JSON(), default=dict)
    status: Mapped[str]  # pending | running | interrupted | failed | done
    error: Mapped[str | None] = mapped_column(Text())
    bytes_total: Mapped[int] = mapped_column(BigInteger(), default=0)
    bytes_done: Mapped[int] = mapped_column(BigInteger(), default=0)
    # Last CSV line whose rows are delivered and reported: a resumed run starts after it.
    lines_done: Mapped[int] = mapped_column(Integer(), default=1)
    rows_read: Mapped[int] = mapped_column(Integer(), default=0)
    created: Mapped[int] = mapped_column(Integer(), default=0)
    merged_existing: Mapped[int] = mapped_column(Integer(), default=0)
    merged_duplicate: Mapped[int] = mapped_column(Integer(), default=0)
    rejected: Mapped[int] = mapped_column(Integer(), default=0)
    warnings: Mapped[int] = mapped_column(Integer(), default=0)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]


class ImportLead(Base):
    """Each lead an import touches, with the first line that named it: written before delivery, so a resumed
    run classifies rows exactly as the interrupted one did (first occurrence, duplicate, existing lead)."""

    __tablename__ = "import_leads"

    import_id: Mapped[str] = mapped_column(String(), primary_key=True)
    lead_id: Mapped[str] = mapped_column(String(), primary_key=True)
    first_line: Mapped[int] = mapped_column(Integer())
    existed: Mapped[bool] = mapped_column(Boolean())


class ImportIssue(Base):
    """A report line: a rejected, merged or corrected row of an import."""

    __tablename__ = "import_issues"

    import_id: Mapped[str] = mapped_column(String(), primary_key=True)
    line: Mapped[int] = mapped_column(Integer(), primary_key=True)
    outcome: Mapped[str]  # rejected | merged | cleaned
    reason: Mapped[str] = mapped_column(Text())
    email: Mapped[str | None]
    lead_id: Mapped[str | None]


class SourceCost(Base):
    """What a source (or one of its campaigns) cost over a period; written only by the API (PUT /v1/costs).

    ``campaign`` is '' for the whole source, so the unique key needs no NULL semantics (which differ
    between SQLite and PostgreSQL). Periods are whole days, both ends inclusive.
    """

    __tablename__ = "source_costs"
    __table_args__ = (UniqueConstraint("source", "campaign", "period_start", "period_end", "currency"),)

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    source: Mapped[str] = mapped_column(index=True)
    campaign: Mapped[str] = mapped_column(default="")
    # Category for sources no lead came from yet (reports otherwise take the leads' category).
    category: Mapped[str | None]
    period_start: Mapped[date] = mapped_column(Date(), index=True)
    period_end: Mapped[date] = mapped_column(Date())
    amount: Mapped[Decimal] = mapped_column(Money)
    currency: Mapped[str] = mapped_column(String(3))
    note: Mapped[str | None] = mapped_column(Text())
    updated_at: Mapped[datetime]


class EmailFeedbackRow(Base):
    """A relay's report about one message: hard or soft bounce, complaint, or delivery.

    The address is kept only as a keyed hash (soft bounces are counted per address without keeping it);
    ``email_key`` and ``lead_id`` are set when the message id matched the email ledger.
    """

    __tablename__ = "email_feedback"
    __table_args__ = (Index("ix_email_feedback_address_hash_occurred_at", "address_hash", "occurred_at"),)

    # The relay's event id, or a hash of what identifies the report (a resent webhook counts once).
    id: Mapped[str] = mapped_column(String(), primary_key=True)
    address_hash: Mapped[str]
    type: Mapped[str]  # hard_bounce | soft_bounce | complaint | delivered
    message_id: Mapped[str | None]
    email_key: Mapped[str | None] = mapped_column(index=True)
    lead_id: Mapped[str | None] = mapped_column(index=True)
    reason: Mapped[str | None] = mapped_column(Text())
    # True when this report ended mail to the address (a hard bounce, a complaint, the last soft one in a row).
    suppressed: Mapped[bool] = mapped_column(Boolean(), default=False, server_default=false())
    occurred_at: Mapped[datetime]
    received_at: Mapped[datetime]


class WriteKey(Base):
    """A tracking write key (Segment/RudderStack style): it may only post events, nothing else.

    Only a SHA-256 of the key is kept (keys are random, 192 bits: no salt or slow hash needed)."""

    __tablename__ = "write_keys"

    id: Mapped[str] = mapped_column(String(), primary_key=True)  # public handle, e.g. wk_3f9a1c2e
    name: Mapped[str]
    key_hash: Mapped[str] = mapped_column(unique=True)
    created_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]


class InboundSource(Base):
    """A form (public posts) or a webhook sender (signed posts), with the field mapping of its posts.

    A webhook's signing secret is not stored: it is derived from the id key and ``secret_nonce``, so the
    table leaks nothing and re-creating the source rotates it."""

    __tablename__ = "inbound_sources"

    kind: Mapped[str] = mapped_column(String(), primary_key=True)  # form | webhook
    id: Mapped[str] = mapped_column(String(), primary_key=True)
    config: Mapped[dict[str, Any]]
    secret_nonce: Mapped[str | None]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class VisitorLink(Base):
    """An anonymous visitor (or a non-email userId) stitched onto a lead; written only by the visitor
    workflow's activity, read by the API to send that visitor's later events straight to the lead."""

    __tablename__ = "visitor_links"

    visitor_id: Mapped[str] = mapped_column(String(), primary_key=True)
    lead_id: Mapped[str] = mapped_column(index=True)
    linked_at: Mapped[datetime]


class LeadAlias(Base):
    """Another lead id of the same person: a duplicate merged into ``lead_id``, or the id of an address the lead
    took on (an email change). Written only by the lead's workflow (activities/lead_merge.py); the API reads it
    to send events, touches and lookups for the alias to the lead. Chains are flattened on write."""

    __tablename__ = "lead_aliases"

    alias_id: Mapped[str] = mapped_column(String(), primary_key=True)
    lead_id: Mapped[str] = mapped_column(index=True)
    reason: Mapped[str]  # merged | email_change
    created_at: Mapped[datetime]


# Keys, users, sessions and the audit log live in their own module; importing it registers their tables.
from store import access_models as _access_models  # noqa: E402, F401
