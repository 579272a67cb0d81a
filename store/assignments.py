"""Assignments in the read model: load a team under its lock, let rules/assignment.py choose, apply the answer.

The store holds no routing rule: :func:`assign_rep` reads what the choice needs (the team's reps with their
loads, the cursor, the lead's own open assignments) into a :class:`rules.assignment.TeamSnapshot`, calls
:func:`rules.assignment.assign` and writes its answer: the new assignment, the closings, the cursor. The
simulator applies the same answer to teams it keeps in memory (rules/team_book.py).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Row, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from rules.assignment import AssignmentResult, TeamMember, TeamSnapshot, assign
from rules.model import AssignmentFailed, AssignRep, Rep, RepAssigned
from store.db import rowcount
from store.models import Assignment, Team
from store.models import Rep as RepRow
from store.repo import _dialect, _dicts, _open_loads, _select_all, _writing, lead_open_assignments

TeamRow = Row[str, str | None, str | None, str | None]  # key, rr_cursor, manager_name, manager_email


async def _lock_team(session: AsyncSession, team_key: str) -> TeamRow | None:
    """Serialise assignment per team; returns the team row read under the lock, or None if unknown."""
    if _dialect(session) == "sqlite":
        # A write as the transaction's first statement takes SQLite's single write lock (waiting on
        # busy_timeout), so the reads that follow see every earlier assignment. SELECT first would
        # read a snapshot that a concurrent writer can make stale.
        await session.execute(
            update(Team)
            .where(Team.key == team_key)
            .values(rr_cursor=Team.rr_cursor)
            .execution_options(synchronize_session=False)
        )
        query = select(Team.key, Team.rr_cursor, Team.manager_name, Team.manager_email)
    else:
        query = select(Team.key, Team.rr_cursor, Team.manager_name, Team.manager_email).with_for_update()
    return (await session.execute(query.where(Team.key == team_key))).one_or_none()


async def _total_counts(session: AsyncSession, team_key: str, rep_ids: list[str]) -> dict[str, int]:
    """Every assignment ever made to each rep in this team (the weighted strategy's share so far)."""
    counts = dict.fromkeys(rep_ids, 0)
    if rep_ids:
        rows = await session.execute(
            select(Assignment.rep_id, func.count())
            .where(Assignment.team_key == team_key, Assignment.rep_id.in_(rep_ids))
            .group_by(Assignment.rep_id)
        )
        counts.update({rep_id: int(n) for rep_id, n in rows.all()})
    return counts


async def team_snapshot(session: AsyncSession, team: TeamRow, lead_id: str | None) -> TeamSnapshot:
    """The team as the choice reads it for ``lead_id``'s command (call under the team's lock)."""
    stmt = select(
        RepRow.id, RepRow.name, RepRow.email, RepRow.active, RepRow.capacity, RepRow.weight, RepRow.away_until
    ).where(RepRow.team_key == team.key)
    reps = (await session.execute(stmt)).all()
    ids = [r.id for r in reps]
    loads, totals = await _open_loads(session, ids), await _total_counts(session, team.key, ids)
    members = tuple(
        TeamMember(r.id, r.name, r.email, r.active, r.capacity, r.weight or 1, r.away_until, loads[r.id], totals[r.id])
        for r in reps
    )
    lead_open = tuple(await lead_open_assignments(session, lead_id)) if lead_id is not None else ()
    return TeamSnapshot(team.key, team.manager_name, team.manager_email, team.rr_cursor, members, lead_open)


async def _existing_answer(session: AsyncSession, command: AssignRep) -> RepAssigned | None:
    """The answer already given to ``command.key`` (a retried activity gets the same rep)."""
    stmt = (
        select(
            Assignment.rep_id,
            Assignment.team_key,
            Assignment.reason,
            RepRow.name,
            RepRow.email,
            Team.manager_name,
            Team.manager_email,
        )
        .outerjoin(RepRow, RepRow.id == Assignment.rep_id)
        .outerjoin(Team, Team.key == Assignment.team_key)
        .where(Assignment.key == command.key)
    )
    row = (await session.execute(stmt)).one_or_none()
    if row is None:
        return None
    rep = Rep(row.rep_id, row.name or row.rep_id, row.email or "", row.team_key, row.manager_name, row.manager_email)
    return RepAssigned(command.key, rep, f"{command.reason}; {row.reason}" if command.reason else row.reason)


async def _apply(session: AsyncSession, command: AssignRep, result: AssignmentResult, now: datetime) -> None:
    answer = result.outcome
    if not isinstance(answer, RepAssigned):
        return
    if result.close:
        await session.execute(
            update(Assignment)
            .where(Assignment.key.in_(result.close), Assignment.open.is_(True))
            .values(open=False)
            .execution_options(synchronize_session=False)
        )
    session.add(
        Assignment(
            key=command.key,
            lead_id=command.lead_id,
            team_key=answer.rep.team,
            rep_id=answer.rep.id,
            reason=result.how,
            assigned_at=now,
        )
    )
    if result.cursor is not None:
        await session.execute(
            update(Team)
            .where(Team.key == answer.rep.team)
            .values(rr_cursor=result.cursor)
            .execution_options(synchronize_session=False)
        )


async def assign_rep(session: AsyncSession, command: AssignRep, now: datetime) -> RepAssigned | AssignmentFailed:
    """Give ``command``'s lead a rep of its team (rules.assignment.assign chooses); idempotent by
    ``command.key``: the same key gets the same answer, and a retry moves no cursor."""
    async with _writing(session):
        team = await _lock_team(session, command.team)
        existing = await _existing_answer(session, command)
        if existing is not None:
            return existing
        snapshot = await team_snapshot(session, team, command.lead_id) if team is not None else None
        result = assign(snapshot, command, now)
        await _apply(session, command, result, now)
        return result.outcome


async def list_assignments(
    session: AsyncSession, *, lead_id: str | None = None, open_only: bool = False
) -> list[dict[str, Any]]:
    stmt = _select_all(Assignment).order_by(Assignment.assigned_at, Assignment.key)
    if lead_id is not None:
        stmt = stmt.where(Assignment.lead_id == lead_id)
    if open_only:
        stmt = stmt.where(Assignment.open.is_(True))
    return await _dicts(session, stmt)


async def team_snapshots(session: AsyncSession) -> list[TeamSnapshot]:
    """Every team with its reps and their loads as they stand (no lock): what the simulator and the backtest
    route through, so they choose as production would."""
    teams = (await session.execute(select(Team.key, Team.rr_cursor, Team.manager_name, Team.manager_email))).all()
    return [await team_snapshot(session, team, None) for team in teams]


async def release_lead(session: AsyncSession, lead_id: str) -> int:
    """Close every open assignment of a lead that is gone (erased): it holds nobody's capacity any more.
    Returns how many closed."""
    async with _writing(session):
        return await close_open_assignments(session, lead_id)


async def close_open_assignments(session: AsyncSession, lead_id: str) -> int:
    """Close a lead's open assignments inside the caller's transaction; returns how many closed."""
    result = await session.execute(
        update(Assignment)
        .where(Assignment.lead_id == lead_id, Assignment.open.is_(True))
        .values(open=False)
        .execution_options(synchronize_session=False)
    )
    return rowcount(result)


async def rep_team(session: AsyncSession, rep_id: str) -> tuple[str, bool] | None:
    """The team a rep belongs to and whether they are active, or None when there is no such rep (a manual
    reassignment names a rep; the API checks it before asking the lead's workflow)."""
    row = (await session.execute(select(RepRow.team_key, RepRow.active).where(RepRow.id == rep_id))).one_or_none()
    return (row[0], bool(row[1])) if row is not None else None


async def team_exists(session: AsyncSession, team_key: str) -> bool:
    return (await session.execute(select(Team.key).where(Team.key == team_key))).first() is not None
