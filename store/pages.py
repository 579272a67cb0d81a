"""What the pages read from the store beyond the API's lists: the follow-up queue with its leads' score,
grade and source (sortable, filtered, scoped), counts by team and rep, lead search, one lead's follow-ups and
assignments, and weekly trend counts. Read only: the pages write nothing here (the workflow does)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import ColumnElement, and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from store.followup_rows import open_followups
from store.models import Assignment, FollowUpRow, Lead, StageChangeRow, Touchpoint
from store.models import Rep as RepRow
from store.scope import EVERYONE, Scope

QueueSort = Literal["due", "late", "score", "grade", "company", "source", "rep", "team"]
QUEUE_SORTS: tuple[str, ...] = ("due", "late", "score", "grade", "company", "source", "rep", "team")
_SORT_COLUMNS: dict[str, Any] = {
    "due": FollowUpRow.due_at,
    "late": FollowUpRow.due_at,  # the latest is the one due longest ago: due time, reversed
    "score": Lead.score,
    "grade": Lead.grade,
    "company": Lead.company,
    "source": Lead.original_source,
    "rep": FollowUpRow.rep_id,
    "team": FollowUpRow.team_key,
}


@dataclass(frozen=True)
class QueueFilter:
    """Who sees what (the viewer's scope) and what they asked for."""

    scope: Scope = EVERYONE
    team: str | None = None
    rep: str | None = None
    source: str | None = None
    grade: str | None = None
    min_score: int | None = None

    def conditions(self) -> list[ColumnElement[bool]]:
        out = self.scope.followups()
        if self.team:
            out.append(FollowUpRow.team_key == self.team)
        if self.rep:
            out.append(FollowUpRow.rep_id == self.rep)
        if self.source:
            out.append(Lead.original_source == self.source)
        if self.grade:
            out.append(Lead.grade == self.grade)
        if self.min_score is not None:
            out.append(Lead.score >= self.min_score)
        return out


def _open_in_queue(now: datetime, due_within: timedelta) -> ColumnElement[bool]:
    """Overdue and not touched yet, or pending and due within the window. A touch after the deadline sets
    ``met_at`` but leaves the status ``overdue`` (a breach stays a breach, in the store and in Temporal's
    LeadSlaStatus): such a follow-up needs nothing more and leaves the queue."""
    return and_(open_followups(), or_(FollowUpRow.status == "overdue", FollowUpRow.due_at <= now + due_within))


async def queue(
    session: AsyncSession,
    where: QueueFilter,
    *,
    now: datetime,
    due_within: timedelta,
    sort: str = "due",
    descending: bool = False,
    limit: int = 200,
) -> list[dict[str, Any]]:
    """Overdue and due-soon follow-ups with their lead's company, score, grade and source, and how late."""
    column = _SORT_COLUMNS[sort]
    ordering = column.desc() if descending != (sort == "late") else column.asc()
    stmt = (
        select(
            FollowUpRow.key,
            FollowUpRow.lead_id,
            FollowUpRow.status,
            FollowUpRow.due_at,
            FollowUpRow.kind,
            FollowUpRow.team_key,
            FollowUpRow.rep_id,
            RepRow.name.label("rep_name"),
            Lead.email,
            Lead.first_name,
            Lead.last_name,
            Lead.company,
            Lead.score,
            Lead.grade,
            Lead.stage,
            Lead.original_source.label("source"),
        )
        .outerjoin(Lead, Lead.id == FollowUpRow.lead_id)
        .outerjoin(RepRow, RepRow.id == FollowUpRow.rep_id)
        .where(_open_in_queue(now, due_within), *where.conditions())
        .order_by(ordering.nulls_last(), FollowUpRow.key)
        .limit(limit)
    )
    out = []
    for row in (await session.execute(stmt)).all():
        item = dict(row._mapping)
        item["late_seconds"] = max(0, int((now - item["due_at"]).total_seconds()))
        item["section"] = "overdue" if item["status"] == "overdue" else "due_soon"
        out.append(item)
    return out


async def queue_counts(
    session: AsyncSession, where: QueueFilter, *, now: datetime, due_within: timedelta
) -> list[dict[str, Any]]:
    """Per team and rep: overdue (waiting for a touch), touched late (breached, then touched) and due soon.
    Overdue plus touched late is what Temporal's visibility counts as ``LeadSlaStatus = 'overdue'``."""
    touched = FollowUpRow.met_at.is_not(None)
    stmt = (
        select(FollowUpRow.team_key, FollowUpRow.rep_id, FollowUpRow.status, touched, func.count())
        .outerjoin(Lead, Lead.id == FollowUpRow.lead_id)
        .where(or_(_open_in_queue(now, due_within), FollowUpRow.status == "overdue"), *where.conditions())
        .group_by(FollowUpRow.team_key, FollowUpRow.rep_id, FollowUpRow.status, touched)
    )
    counts: dict[tuple[str, str], dict[str, Any]] = {}
    for team, rep, status, was_touched, n in (await session.execute(stmt)).all():
        entry = counts.setdefault(
            (team, rep), {"team": team, "rep_id": rep, "overdue": 0, "touched_late": 0, "due_soon": 0}
        )
        column = "due_soon" if status != "overdue" else ("touched_late" if was_touched else "overdue")
        entry[column] += n
    return sorted(counts.values(), key=lambda e: (e["team"], e["rep_id"]))


async def search_leads(session: AsyncSession, text: str, *, scope: Scope, limit: int = 50) -> list[dict[str, Any]]:
    """Leads whose id is ``text``, or whose email or company contains it (case-insensitive)."""
    # LIKE's own wildcards in the text are dropped: a search for "50%" must not match everything.
    cleaned = text.lower().replace("\\", "").replace("%", "").replace("_", "")
    pattern = f"%{cleaned}%"
    stmt = select(
        Lead.id, Lead.email, Lead.company, Lead.stage, Lead.score, Lead.grade, Lead.owner_rep_id, Lead.owner_team
    ).where(or_(Lead.id == text, func.lower(Lead.email).like(pattern), func.lower(Lead.company).like(pattern)))
    stmt = stmt.where(*scope.leads()).order_by(Lead.score.desc(), Lead.id).limit(limit)
    return [dict(row._mapping) for row in (await session.execute(stmt)).all()]


async def lead_followups(session: AsyncSession, lead_id: str) -> list[dict[str, Any]]:
    stmt = select(FollowUpRow).where(FollowUpRow.lead_id == lead_id).order_by(FollowUpRow.started_at)
    return [
        {c.name: getattr(row, c.name) for c in FollowUpRow.__table__.columns} for row in (await session.scalars(stmt))
    ]


async def lead_assignments(session: AsyncSession, lead_id: str) -> list[dict[str, Any]]:
    stmt = select(Assignment).where(Assignment.lead_id == lead_id).order_by(Assignment.assigned_at)
    return [
        {c.name: getattr(row, c.name) for c in Assignment.__table__.columns} for row in (await session.scalars(stmt))
    ]


def week_of(at: datetime) -> str:
    """The ISO week a time falls in, as 2026-W05."""
    year, week, _ = at.isocalendar()
    return f"{year}-W{week:02d}"


async def weekly_trends(
    session: AsyncSession, start: datetime, end: datetime, qualified: Collection[str], team: str | None
) -> dict[str, dict[str, int]]:
    """Per ISO week of the period: new leads, leads entering a qualified stage, and reps' touches."""
    weeks: dict[str, Counter[str]] = {"new_leads": Counter(), "qualified": Counter(), "touches": Counter()}
    in_team = (Lead.owner_team == team) if team else None
    created = select(Lead.created_at).where(Lead.created_at >= start, Lead.created_at < end)
    reached = (
        select(StageChangeRow.at)
        .join(Lead, Lead.id == StageChangeRow.lead_id)
        .where(StageChangeRow.at >= start, StageChangeRow.at < end, StageChangeRow.to_stage.in_(list(qualified)))
    )
    touched = (
        select(Touchpoint.occurred_at)
        .join(Lead, Lead.id == Touchpoint.lead_id)
        .where(Touchpoint.occurred_at >= start, Touchpoint.occurred_at < end, Touchpoint.type.like("touch.%"))
    )
    for name, stmt in (("new_leads", created), ("qualified", reached), ("touches", touched)):
        if in_team is not None:
            stmt = stmt.where(in_team)
        for (at,) in (await session.execute(stmt)).all():
            weeks[name][week_of(at)] += 1
    labels = []
    cursor = start
    while cursor < end:
        labels.append(week_of(cursor))
        cursor += timedelta(days=7)
    if end > start and week_of(end - timedelta(microseconds=1)) not in labels:
        labels.append(week_of(end - timedelta(microseconds=1)))
    return {name: {label: counter.get(label, 0) for label in labels} for name, counter in weeks.items()}


async def awaiting_acceptance(session: AsyncSession, where: QueueFilter, *, limit: int = 200) -> list[dict[str, Any]]:
    """Leads whose current assignment waits for the rep's accept or reject (rules/sales.py), oldest deadline
    first, in the viewer's scope and filters."""
    conditions = where.scope.leads()
    for wanted, column in ((where.team, Lead.owner_team), (where.rep, Lead.owner_rep_id),
                           (where.source, Lead.original_source), (where.grade, Lead.grade)):  # fmt: skip
        if wanted:
            conditions.append(column == wanted)
    if where.min_score is not None:
        conditions.append(Lead.score >= where.min_score)
    stmt = (
        select(
            Lead.id.label("lead_id"),
            Lead.email,
            Lead.first_name,
            Lead.last_name,
            Lead.company,
            Lead.score,
            Lead.grade,
            Lead.original_source.label("source"),
            Lead.owner_team.label("team_key"),
            Lead.owner_rep_id.label("rep_id"),
            RepRow.name.label("rep_name"),
            Lead.acceptance_due_at.label("due_at"),
        )
        .outerjoin(RepRow, RepRow.id == Lead.owner_rep_id)
        .where(Lead.acceptance_status == "pending", Lead.owner_rep_id.is_not(None), *conditions)
        .order_by(Lead.acceptance_due_at.asc().nulls_last(), Lead.id)
        .limit(limit)
    )
    return [dict(row._mapping) for row in (await session.execute(stmt)).all()]
