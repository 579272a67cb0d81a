"""Queries and writes on the read model.

Every function takes an ``AsyncSession`` first. Writers commit (or roll back on error) themselves;
readers never commit, so the caller's ``async with sessionmaker() as session`` ends their transaction.
Writers are idempotent: activities retry, so the same call twice leaves the same rows.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import Row, Select, Table, case, func, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import DeclarativeBase

from rules.assignment import OpenAssignment, to_release
from rules.followups import OPEN_SLA_STATUSES
from rules.model import (
    CapacityHeld,
    FollowUp,
    LeadSnapshot,
    ScoreChange,
    StageChange,
    Touchpoint,
    TrackedEvent,
)
from store.db import rowcount
from store.followup_rows import cancel_open_followups, open_followups, settle_late_followup
from store.models import (
    Assignment,
    EmailRow,
    FollowUpRow,
    Lead,
    ScoreChangeRow,
    StageChangeRow,
    Team,
)
from store.models import Rep as RepRow
from store.models import Touchpoint as TouchpointRow
from store.scope import EVERYONE, Scope

# Attribute keys copied into their own columns (the whole dict is kept in leads.attributes too).
_TEXT_ATTRIBUTES = (
    "email",
    "first_name",
    "last_name",
    "company",
    "title",
    "industry",
    "country",
    "source",
    "utm_source",
    "utm_medium",
    "utm_campaign",
    "utm_term",
    "utm_content",
)


# ---------------------------------------------------------------- helpers


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _dialect(session: AsyncSession) -> str:
    return session.get_bind().dialect.name


def _insert(session: AsyncSession, model: type[DeclarativeBase]) -> sqlite.Insert | postgresql.Insert:
    """An INSERT that supports ON CONFLICT on this session's backend."""
    return _dialect_insert(_dialect(session), model)


def _dialect_insert(dialect: str, target: Any) -> sqlite.Insert | postgresql.Insert:
    """An INSERT into ``target`` (a model or a Core table) that supports ON CONFLICT on ``dialect``."""
    if dialect == "sqlite":
        return sqlite.insert(target)
    if dialect == "postgresql":
        return postgresql.insert(target)
    raise RuntimeError(f"store supports sqlite and postgresql, not {dialect}")


@asynccontextmanager
async def _writing(session: AsyncSession) -> AsyncIterator[None]:
    """Commit what the block wrote, or roll it back and re-raise."""
    try:
        yield
    except BaseException:
        await session.rollback()
        raise
    await session.commit()


def _row_dict(row: Row[Any] | Any) -> dict[str, Any]:
    return dict(row._mapping)


def _select_all(model: type[DeclarativeBase], *, without: tuple[str, ...] = ()) -> Select[Any]:
    """A Core select of the model's columns: plain rows, never stale identity-mapped objects."""
    return select(*(c for c in model.__table__.columns if c.key not in without))


async def _dicts(session: AsyncSession, stmt: Select[Any]) -> list[dict[str, Any]]:
    return [_row_dict(row) for row in (await session.execute(stmt)).all()]


def _text_or_none(value: Any) -> str | None:
    if value is None:
        return None
    value = str(value).strip()
    return value or None


def _int_or_none(value: Any) -> int | None:
    """company_size may arrive as 250, "250", "250.0" or a band like "51-200" (not an int: None)."""
    if value is None or isinstance(value, bool):
        return None
    try:
        number = int(float(value))
    except (TypeError, ValueError, OverflowError):
        return None
    # The column is a 32-bit INTEGER on PostgreSQL; an absurd value must not fail the projection forever.
    return number if 0 <= number < 2**31 else None


# ---------------------------------------------------------------- touchpoints


def _touchpoint_row(lead_id: str, point: Touchpoint) -> dict[str, Any]:
    event, touch = point.event, point.touch
    return {
        "event_id": event.id,
        "lead_id": lead_id,
        "type": event.type,
        "url": event.url,
        "name": event.name,
        "properties": dict(event.properties or {}),
        "occurred_at": event.at,
        "received_at": point.received_at,
        "channel": touch.channel if touch else None,
        "source": touch.source if touch else None,
        "medium": touch.medium if touch else None,
        "campaign": touch.campaign if touch else None,
        "content": touch.content if touch else None,
        "term": touch.term if touch else None,
    }


async def _insert_touchpoints(session: AsyncSession, lead_id: str, touchpoints: list[Touchpoint]) -> int:
    rows: dict[str, dict[str, Any]] = {}
    for point in touchpoints:  # the first of duplicate ids in one batch wins
        rows.setdefault(point.event.id, _touchpoint_row(lead_id, point))
    if not rows:
        return 0
    stmt = _ignoring_insert(_dialect(session), TouchpointRow, ("lead_id", "event_id"), returning="event_id")
    return len((await session.execute(stmt, list(rows.values()))).all())


async def add_touchpoints(
    session: AsyncSession,
    lead_id: str,
    events: Sequence[Touchpoint | TrackedEvent],
    received_at: datetime | None = None,
) -> int:
    """Record a lead's touchpoints (or bare events, received at ``received_at``), ignoring (lead, event id)
    pairs already stored; returns how many were new.

    In production only the lead's projection writes them (the workflow is their one writer); this is for
    backfills and tests."""
    received = received_at or _utcnow()
    points = [e if isinstance(e, Touchpoint) else Touchpoint(e, received) for e in events]
    if not points:
        return 0
    async with _writing(session):
        return await _insert_touchpoints(session, lead_id, points)


async def list_touchpoints(session: AsyncSession, lead_id: str, limit: int = 100) -> list[dict[str, Any]]:
    """A lead's events, newest first."""
    stmt = (
        _select_all(TouchpointRow)
        .where(TouchpointRow.lead_id == lead_id)
        .order_by(TouchpointRow.occurred_at.desc(), TouchpointRow.id.desc())
        .limit(limit)
    )
    return await _dicts(session, stmt)


# ---------------------------------------------------------------- lead projection


def _lead_values(snap: LeadSnapshot, now: datetime) -> dict[str, Any]:
    attrs = dict(snap.attributes or {})
    values: dict[str, Any] = {key: _text_or_none(attrs.get(key)) for key in _TEXT_ATTRIBUTES}
    followup = snap.followup
    values.update(
        id=snap.lead_id,
        company_size=_int_or_none(attrs.get("company_size")),
        attributes=attrs,
        stage=snap.stage,
        score=int(snap.score),
        grade=snap.grade,
        owner_rep_id=snap.owner_rep_id,
        owner_team=snap.owner_team,
        sla_status=followup.status if followup else None,
        sla_due_at=followup.due_at if followup else None,
        playbook_version=snap.playbook_version or None,
        original_source=snap.original_source.source if snap.original_source else None,
        latest_source=snap.latest_source.source if snap.latest_source else None,
        source_category=snap.original_source.channel if snap.original_source else None,
        created_at=snap.created_at or snap.updated_at or now,
        updated_at=snap.updated_at or snap.created_at or now,
    )
    values.update(_sales_values(snap))
    return values


def _sales_values(snap: LeadSnapshot) -> dict[str, Any]:
    """The hand-off's columns (rules/sales.py); the lead workflow is their one writer. The acceptance shows
    while the offered rep still owns the lead."""
    offered, outcome = snap.acceptance, snap.outcome
    current = offered is not None and offered.rep_id == snap.owner_rep_id
    won = outcome is not None and outcome.kind == "won"
    return {
        "acceptance_status": offered.status if offered is not None and current else None,
        "acceptance_due_at": offered.due_at if offered is not None and current else None,
        "outcome": outcome.kind if outcome else None,
        "outcome_at": outcome.at if outcome else None,
        "outcome_by": outcome.by if outcome else None,
        "won_amount": outcome.amount if won and outcome else None,
        "won_currency": outcome.currency if won and outcome else None,
        "won_at": outcome.at if won and outcome else None,
        "won_product": outcome.product if won and outcome else None,
        "close_date": outcome.close_date if won and outcome else None,
        "lost_reason": outcome.reason if outcome is not None and outcome.kind == "lost" else None,
        "disqualify_reason": outcome.reason if outcome is not None and outcome.kind == "disqualified" else None,
    }


async def _upsert_lead(session: AsyncSession, snap: LeadSnapshot, now: datetime) -> bool:
    """Write the leads row; False when a newer snapshot is stored already (this one changes nothing)."""
    values = _lead_values(snap, now)
    keep = ("id",) if snap.created_at is not None else ("id", "created_at")
    stmt = _lead_upsert(_dialect(session), tuple(values), keep)
    return (await session.execute(stmt, values)).first() is not None


@functools.lru_cache(maxsize=16)
def _lead_upsert(dialect: str, columns: tuple[str, ...], keep: tuple[str, ...]) -> Any:
    """The lead upsert, built once per shape and run with each projection's values: building it per call
    (its ``excluded`` alias copies every column of the table) was a tenth of a projection's CPU."""
    table = cast(Table, Lead.__table__)  # the Core table: run with parameters, no ORM bulk machinery
    stmt = _dialect_insert(dialect, table)
    return stmt.on_conflict_do_update(
        index_elements=["id"],
        set_={key: stmt.excluded[key] for key in columns if key not in keep},
        # A retried, older projection must not overwrite a newer one.
        where=stmt.excluded.updated_at >= table.c.updated_at,
    ).returning(table.c.id)


def _score_change_row(lead_id: str, change: ScoreChange) -> dict[str, Any]:
    return {
        "lead_id": lead_id,
        "seq": change.seq,
        "at": change.at,
        "points": float(change.points),
        "score_after": float(change.score_after),
        "rule_id": change.rule_id,
        "reason": change.reason,
        "event_id": change.event_id,
    }


def _stage_change_row(lead_id: str, change: StageChange) -> dict[str, Any]:
    return {
        "lead_id": lead_id,
        "seq": change.seq,
        "at": change.at,
        "from_stage": change.from_stage,
        "to_stage": change.to_stage,
        "reason": change.reason,
    }


async def _insert_ignoring(
    session: AsyncSession, model: type[DeclarativeBase], rows: list[dict[str, Any]], keys: list[str]
) -> None:
    if rows:
        await session.execute(_ignoring_insert(_dialect(session), model, tuple(keys)), rows)


@functools.lru_cache(maxsize=32)
def _ignoring_insert(
    dialect: str, model: type[DeclarativeBase], keys: tuple[str, ...], returning: str | None = None
) -> Any:
    """INSERT ... ON CONFLICT DO NOTHING on the model's Core table, built once and run with many rows: a
    statement with the rows inlined as VALUES was compiled anew for every projection (a quarter of the
    worker's CPU under a tracking batch); this one is compiled once and batched by SQLAlchemy's
    insertmanyvalues, which also keeps each batch under the backend's bound-parameter limit."""
    table = cast(Table, model.__table__)
    stmt = _dialect_insert(dialect, table).on_conflict_do_nothing(index_elements=list(keys))
    return stmt.returning(table.c[returning]) if returning else stmt


async def _upsert_followup(session: AsyncSession, lead_id: str, fu: FollowUp, now: datetime) -> None:
    changing = {
        "status": fu.status,
        "due_at": fu.due_at,
        "remind_at": fu.remind_at,
        "reminded_at": fu.reminded_at,
        "escalated_at": fu.escalated_at,
        "met_at": fu.met_at,
        "updated_at": now,
    }
    fixed = {
        "key": fu.key,
        "lead_id": lead_id,
        "rep_id": fu.rep_id,
        "team_key": fu.team,
        "kind": fu.kind,
        "policy_id": fu.policy_id,
        "started_at": fu.started_at,
    }
    stmt = _insert(session, FollowUpRow).values({**fixed, **changing})
    stmt = stmt.on_conflict_do_update(
        index_elements=["key"],
        set_={key: stmt.excluded[key] for key in changing},
        where=stmt.excluded.updated_at >= FollowUpRow.updated_at,  # as for the lead: never go back
    )
    await session.execute(stmt)


async def project_lead(session: AsyncSession, snap: LeadSnapshot) -> None:
    """Write a lead's snapshot: the leads row, new score/stage history, its current follow-up.

    Rows carry the snapshot's ``updated_at`` (workflow time) and a snapshot older than what is
    stored is ignored, so a late retry cannot roll the lead back.
    """
    # Prefer workflow time over the wall clock: mixing the two would break the ordering guard.
    now = snap.updated_at or snap.created_at or _utcnow()
    async with _writing(session):
        current = await _upsert_lead(session, snap, now)
        if current and snap.capacity is not None:
            await _release_capacity(session, snap.lead_id, snap.capacity)
        if current:
            await cancel_open_followups(session, snap.lead_id, now, snap.followup)
        scores = [_score_change_row(snap.lead_id, c) for c in snap.score_changes]
        await _insert_ignoring(session, ScoreChangeRow, scores, ["lead_id", "seq"])
        stages = [_stage_change_row(snap.lead_id, c) for c in snap.stage_changes]
        await _insert_ignoring(session, StageChangeRow, stages, ["lead_id", "seq"])
        if snap.followup is not None:
            await _upsert_followup(session, snap.lead_id, snap.followup, now)
            if not current:
                await settle_late_followup(session, snap.lead_id, snap.followup, now)
        if snap.touchpoints:
            await _insert_touchpoints(session, snap.lead_id, snap.touchpoints)


async def lead_open_assignments(session: AsyncSession, lead_id: str) -> list[OpenAssignment]:
    stmt = (
        select(Assignment.key, Assignment.rep_id)
        .where(Assignment.lead_id == lead_id, Assignment.open.is_(True))
        .order_by(Assignment.key)
    )
    return [OpenAssignment(key, rep_id) for key, rep_id in (await session.execute(stmt)).all()]


async def _release_capacity(session: AsyncSession, lead_id: str, held: CapacityHeld) -> None:
    """Close the lead's assignments that no longer hold a rep's capacity (rules.assignment.to_release): the
    lead was recycled, disqualified, won or lost, or went to another rep. The lead's projection is the one
    writer of this (besides a reassignment, which closes the old one at once, and erasure)."""
    released = to_release(await lead_open_assignments(session, lead_id), held)
    if released:
        await session.execute(
            update(Assignment)
            .where(Assignment.key.in_(released), Assignment.open.is_(True))
            .values(open=False)
            .execution_options(synchronize_session=False)
        )


async def get_lead(session: AsyncSession, lead_id: str) -> dict[str, Any] | None:
    row = (await session.execute(_select_all(Lead).where(Lead.id == lead_id))).one_or_none()
    return _row_dict(row) if row is not None else None


async def list_score_changes(session: AsyncSession, lead_id: str) -> list[dict[str, Any]]:
    """Why the lead has its score: every change in order."""
    stmt = (
        _select_all(ScoreChangeRow, without=("id",))
        .where(ScoreChangeRow.lead_id == lead_id)
        .order_by(ScoreChangeRow.seq)
    )
    return await _dicts(session, stmt)


async def list_stage_changes(session: AsyncSession, lead_id: str) -> list[dict[str, Any]]:
    stmt = (
        _select_all(StageChangeRow, without=("id",))
        .where(StageChangeRow.lead_id == lead_id)
        .order_by(StageChangeRow.seq)
    )
    return await _dicts(session, stmt)


# ---------------------------------------------------------------- follow-ups


async def list_followups(
    session: AsyncSession,
    *,
    status: str | None,
    limit: int,
    offset: int,
    now: datetime | None = None,
    scope: Scope = EVERYONE,
    owed_only: bool = False,
) -> list[dict[str, Any]]:
    """Follow-ups by due time (soonest / most overdue first), with the lead and rep they concern.

    ``status`` filters on the stored status (the workflow marks a follow-up overdue when its timer fires);
    ``scope`` narrows to one rep's or some teams' follow-ups (a rep's or a manager's scope); ``owed_only``
    leaves out those touched already (an overdue one touched late keeps its status: the breach happened).
    """
    now = now or _utcnow()
    stmt = (
        select(
            FollowUpRow.key,
            FollowUpRow.lead_id,
            Lead.company,
            Lead.email,
            Lead.first_name,
            Lead.last_name,
            FollowUpRow.rep_id,
            RepRow.name.label("rep_name"),
            RepRow.email.label("rep_email"),
            FollowUpRow.team_key,
            FollowUpRow.kind,
            FollowUpRow.policy_id,
            FollowUpRow.status,
            FollowUpRow.started_at,
            FollowUpRow.due_at,
            FollowUpRow.remind_at,
            FollowUpRow.reminded_at,
            FollowUpRow.escalated_at,
            FollowUpRow.met_at,
            FollowUpRow.updated_at,
        )
        .outerjoin(Lead, Lead.id == FollowUpRow.lead_id)
        .outerjoin(RepRow, RepRow.id == FollowUpRow.rep_id)
        .order_by(FollowUpRow.due_at, FollowUpRow.key)
        .limit(limit)
        .offset(offset)
    )
    if status is not None:
        stmt = stmt.where(FollowUpRow.status == status)
    if owed_only:
        stmt = stmt.where(open_followups())  # rules.followups' one definition of "still owed"
    stmt = stmt.where(*scope.followups())
    out = []
    for row in (await session.execute(stmt)).all():
        item = _row_dict(row)
        owed = item["status"] in OPEN_SLA_STATUSES and item["met_at"] is None
        late = (now - item["due_at"]).total_seconds() if owed else 0.0
        item["overdue_by_seconds"] = max(0, int(late))
        out.append(item)
    return out


# ---------------------------------------------------------------- teams and reps


@dataclass
class RepIn:
    id: str
    name: str
    email: str
    active: bool = True
    capacity: int | None = None
    weight: int = 1
    away_until: datetime | None = None


@dataclass
class TeamIn:
    key: str
    name: str
    manager_name: str | None
    manager_email: str | None
    reps: list[RepIn] = field(default_factory=list)


async def upsert_team(session: AsyncSession, team: TeamIn, *, now: datetime | None = None) -> None:
    """Create or update a team and make ``team.reps`` its rep set.

    Reps of the team that are not listed become inactive (kept: assignments refer to them).
    A listed rep that belonged to another team moves here.
    """
    now = now or _utcnow()
    team_values = {
        "key": team.key,
        "name": team.name,
        "manager_name": team.manager_name,
        "manager_email": team.manager_email,
        "updated_at": now,
    }
    async with _writing(session):
        stmt = _insert(session, Team).values(team_values)
        await session.execute(
            stmt.on_conflict_do_update(
                index_elements=["key"], set_={k: stmt.excluded[k] for k in team_values if k != "key"}
            )
        )
        listed = [rep.id for rep in team.reps]
        await session.execute(
            update(RepRow)
            .where(RepRow.team_key == team.key, RepRow.id.not_in(listed))
            .values(active=False)
            .execution_options(synchronize_session=False)
        )
        for rep in team.reps:
            values = {
                "id": rep.id,
                "team_key": team.key,
                "name": rep.name,
                "email": rep.email,
                "active": rep.active,
                "capacity": rep.capacity,
                "weight": rep.weight,
                "away_until": rep.away_until,
            }
            stmt = _insert(session, RepRow).values(values)
            await session.execute(
                stmt.on_conflict_do_update(
                    index_elements=["id"], set_={k: stmt.excluded[k] for k in values if k != "id"}
                )
            )


async def _open_loads(session: AsyncSession, rep_ids: Sequence[str]) -> dict[str, int]:
    """Open assignments per rep (every lead's, in any team): what capacity counts."""
    if not rep_ids:
        return {}
    stmt = (
        select(Assignment.rep_id, func.count())
        .where(Assignment.open.is_(True), Assignment.rep_id.in_(rep_ids))
        .group_by(Assignment.rep_id)
    )
    counts = {rep_id: int(n) for rep_id, n in (await session.execute(stmt)).all()}
    return {rep_id: counts.get(rep_id, 0) for rep_id in rep_ids}


async def list_teams(session: AsyncSession) -> list[dict[str, Any]]:
    """Every team with its reps (active or not) and each rep's open assignments."""
    teams = await _dicts(session, _select_all(Team).order_by(Team.key))
    reps = await _dicts(session, _select_all(RepRow).order_by(RepRow.team_key, RepRow.id))
    loads = await _open_loads(session, [rep["id"] for rep in reps])
    by_team: dict[str, list[dict[str, Any]]] = {team["key"]: [] for team in teams}
    for rep in reps:
        by_team.setdefault(rep["team_key"], []).append({**rep, "open_assignments": loads[rep["id"]]})
    return [{**team, "reps": by_team[team["key"]]} for team in teams]


async def count_teams(session: AsyncSession) -> int:
    return int((await session.execute(select(func.count()).select_from(Team))).scalar_one())


# ---------------------------------------------------------------- emails


async def email_status(session: AsyncSession, key: str) -> str | None:
    """The ledger status of an email key (sending | sent | failed), None if never attempted."""
    return (await session.execute(select(EmailRow.status).where(EmailRow.key == key))).scalar_one_or_none()


async def record_email(
    session: AsyncSession,
    *,
    key: str,
    lead_id: str | None,
    kind: str,
    template: str,
    to_addr: str,
    subject: str | None,
    message_id: str | None,
    status: str,
    error: str | None = None,
    now: datetime,
    variant: str | None = None,
) -> None:
    """Upsert the ledger row for ``key``; call it once per attempt's outcome.

    Every call counts one attempt (``attempts`` += 1). ``sent_at`` is set the first time status is
    "sent"; ``error`` is replaced (None clears it); a None subject or message_id keeps the stored one.
    A "sent" row stays "sent" (error cleared): a late attempt's failure comes after the mail went out.
    """
    values = {
        "key": key,
        "lead_id": lead_id,
        "kind": kind,
        "template": template,
        "to_addr": to_addr,
        "subject": subject,
        "message_id": message_id,
        "variant": variant,
        "status": status,
        "attempts": 1,
        "error": error,
        "created_at": now,
        "sent_at": now if status == "sent" else None,
    }
    async with _writing(session):
        await session.execute(_email_upsert(_dialect(session)), values)


@functools.lru_cache(maxsize=4)
def _email_upsert(dialect: str) -> Any:
    """The ledger upsert, built once per backend and run with each attempt's values (as ``_lead_upsert``:
    building it per call, its ``excluded`` alias copying every column, was half the ledger write's CPU)."""
    table = cast(Table, EmailRow.__table__)
    stmt = _dialect_insert(dialect, table)
    new, old = stmt.excluded, table.c
    return stmt.on_conflict_do_update(
        index_elements=["key"],
        set_={
            "status": case((old.status == "sent", old.status), else_=new.status),
            "to_addr": new.to_addr,
            "subject": func.coalesce(new.subject, old.subject),
            "message_id": func.coalesce(new.message_id, old.message_id),
            "error": case((old.status == "sent", old.error), else_=new.error),
            "attempts": old.attempts + 1,
            "sent_at": func.coalesce(old.sent_at, new.sent_at),
        },
    )


async def list_emails(
    session: AsyncSession,
    *,
    lead_id: str | None = None,
    status: str | None = None,
    limit: int = 100,
    teams: Iterable[str] | None = None,
) -> list[dict[str, Any]]:
    """Ledger rows, newest first; ``status`` "failed" lists the sends that will never go out (with ``error``);
    ``teams`` narrows to mail about leads those teams own (a manager's scope)."""
    stmt = _select_all(EmailRow).order_by(EmailRow.created_at.desc(), EmailRow.key).limit(limit)
    if teams is not None:
        stmt = stmt.where(EmailRow.lead_id.in_(select(Lead.id).where(Lead.owner_team.in_(sorted(teams)))))
    if lead_id is not None:
        stmt = stmt.where(EmailRow.lead_id == lead_id)
    if status is not None:
        stmt = stmt.where(EmailRow.status == status)
    return await _dicts(session, stmt)


# ---------------------------------------------------------------- health


async def ping(session: AsyncSession) -> None:
    """Raises if the database is unreachable (readiness probe)."""
    await session.execute(text("SELECT 1"))


__all__ = [
    "RepIn",
    "TeamIn",
    "add_touchpoints",
    "count_teams",
    "email_status",
    "get_lead",
    "list_emails",
    "list_followups",
    "list_score_changes",
    "list_stage_changes",
    "list_teams",
    "list_touchpoints",
    "ping",
    "project_lead",
    "record_email",
    "upsert_team",
]


async def claim_email(
    session: AsyncSession,
    *,
    key: str,
    kind: str,
    template: str,
    to_addr: str,
    now: datetime,
    stale_after_seconds: int = 600,
) -> bool:
    """Claim a not-yet-sent email key for this process (for jobs that run in every replica).

    True when this caller inserted the claim, or took over a claim left unsent for ``stale_after_seconds``.
    """
    async with _writing(session):
        result = await session.execute(
            _insert(session, EmailRow)
            .values(
                key=key,
                lead_id=None,
                kind=kind,
                template=template,
                to_addr=to_addr,
                status="claimed",
                attempts=0,
                created_at=now,
            )
            .on_conflict_do_nothing(index_elements=["key"])
            # RETURNING, not rowcount: psycopg reports -1 for an ORM insert here, so on PostgreSQL nobody
            # ever won the claim and no digest was sent.
            .returning(EmailRow.key)
        )
        if result.first() is not None:
            return True
        cutoff = now - timedelta(seconds=stale_after_seconds)
        taken = await session.execute(
            update(EmailRow)
            .where(EmailRow.key == key, EmailRow.status.in_(("claimed", "sending")), EmailRow.created_at < cutoff)
            .values(created_at=now, status="claimed")
            .returning(EmailRow.key)
        )
        return taken.first() is not None


async def set_rep_availability(session: AsyncSession, rep_id: str, away_until: datetime | None) -> bool:
    """Mark a rep out of office until ``away_until`` (None: back). False when there is no such rep."""
    async with _writing(session):
        result = await session.execute(update(RepRow).where(RepRow.id == rep_id).values(away_until=away_until))
    return rowcount(result) == 1
