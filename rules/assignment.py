"""Which rep gets a lead, and which assignments still count against a rep's capacity. Pure.

One function decides an assignment for production, the simulator and the backtest alike: :func:`assign`
takes a team as loaded under its lock (:class:`TeamSnapshot`), the command and the time, and answers the
rep (or why nobody), the new round-robin cursor and the lead's assignments that close. The store loads the
snapshot and applies the answer; the simulator keeps its teams in memory (rules/team_book.py) and applies
it there. :func:`capacity_held` and :func:`to_release` say which of a lead's open assignments keep holding
a rep's capacity once the lead moves on (recycled, disqualified, won, lost, reassigned): the lead's
projection carries the first, and the store closes what the second names.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import get_args

from rules.followups import worked_by_sales
from rules.model import AssignmentFailed, AssignRep, CapacityHeld, LeadState, Rep, RepAssigned
from rules.playbook import Strategy

STRATEGIES: tuple[str, ...] = get_args(Strategy)


@dataclass(frozen=True)
class TeamMember:
    """A rep of the team as the choice sees them, with their load."""

    id: str
    name: str
    email: str
    active: bool = True
    # Open assignments the rep may hold at once (None: no limit).
    capacity: int | None = None
    weight: int = 1
    # Out of office until then (exclusive); None: in.
    away_until: datetime | None = None
    # Open assignments the rep holds now, every lead's (the command's own lead included).
    open_assignments: int = 0
    # Every assignment the rep ever got in this team: the weighted strategy's share so far.
    total_assignments: int = 0


@dataclass(frozen=True)
class OpenAssignment:
    key: str
    rep_id: str


@dataclass(frozen=True)
class TeamSnapshot:
    """What the choice reads, loaded under the team's lock."""

    key: str
    manager_name: str | None = None
    manager_email: str | None = None
    # The rep round-robin chose last.
    cursor: str | None = None
    members: tuple[TeamMember, ...] = ()
    # The command's lead's own open assignments (in any team): they close when it gets a rep, and do not
    # count against the rep who holds them (a lead reassigned to its own rep is not over capacity).
    lead_open: tuple[OpenAssignment, ...] = ()


@dataclass(frozen=True)
class AssignmentResult:
    outcome: RepAssigned | AssignmentFailed
    # How the rep was chosen, as the assignment record keeps it ("round-robin in team inside-sales").
    how: str = ""
    # The round-robin cursor after this choice; None: unchanged.
    cursor: str | None = None
    # Keys of the lead's open assignments that close (the lead goes to its new rep).
    close: tuple[str, ...] = ()


def assign(team: TeamSnapshot | None, command: AssignRep, now: datetime) -> AssignmentResult:
    """Choose a rep of ``team`` for ``command``'s lead; ``team`` None means no such team.

    Eligible: active, not excluded, not out of office at ``now``, under capacity (the lead's own open
    assignments not counted). The named rep (``command.rep_id``) first if eligible, else the strategy:
    round_robin (next id after the cursor, wrapping), least_loaded (fewest open, then id), weighted (the rep
    furthest below its weighted share of every assignment so far, then id).
    """
    if command.strategy not in STRATEGIES:
        raise ValueError(f"unknown assignment strategy {command.strategy!r}; expected one of {', '.join(STRATEGIES)}")
    if team is None:
        return AssignmentResult(AssignmentFailed(command.key, command.team, f"no team {command.team} exists"))
    own = team.lead_open
    loads = {m.id: m.open_assignments - sum(1 for a in own if a.rep_id == m.id) for m in team.members}
    present = [
        m
        for m in sorted(team.members, key=lambda m: m.id)  # ids in plain string order, whatever the database's
        if m.active and m.id not in command.exclude_rep_ids and (m.away_until is None or m.away_until <= now)
    ]
    eligible = [m for m in present if m.capacity is None or loads[m.id] < m.capacity]
    if not eligible:
        full = len(present) - len(eligible)
        detail = f" ({full} at capacity)" if full else ""
        return AssignmentResult(
            AssignmentFailed(command.key, command.team, f"nobody available in team {team.key}{detail}")
        )
    named = next((m for m in eligible if m.id == command.rep_id), None) if command.rep_id else None
    cursor = None
    if named is not None:
        member, how = named, "named rep"
    elif command.strategy == "least_loaded":
        member = min(eligible, key=lambda m: (loads[m.id], m.id))
        how = f"least-loaded ({loads[member.id]} open)"
    elif command.strategy == "weighted":
        # The rep furthest below its weighted share gets the next lead (smooth weighted round-robin).
        member = min(eligible, key=lambda m: ((m.total_assignments + 1) / max(m.weight, 1), m.id))
        how = f"weighted (weight {member.weight})"
    else:
        after = [m for m in eligible if team.cursor is None or m.id > team.cursor]
        member, how = (after or eligible)[0], "round-robin"
        cursor = member.id
    if command.rep_id and named is None:
        how = f"{command.rep_id} unavailable; {how}"
    how = f"{how} in team {team.key}"
    rep = Rep(member.id, member.name, member.email, team.key, team.manager_name, team.manager_email)
    reason = f"{command.reason}; {how}" if command.reason else how
    return AssignmentResult(RepAssigned(command.key, rep, reason), how, cursor, tuple(a.key for a in own))


def capacity_held(state: LeadState, stage_order: Sequence[str]) -> CapacityHeld:
    """Whose capacity the lead takes: its owner's while sales works it (in a funnel stage short of the last;
    a won, recycled, disqualified or lost lead holds nobody's), and the assignment still in flight."""
    owner = state.owner
    worked = owner is not None and worked_by_sales(state.stage, stage_order)
    return CapacityHeld(
        owner.rep.id if owner is not None and worked else None, state.pending_assignment, state.assignment_seq
    )


def to_release(open_assignments: Sequence[OpenAssignment], held: CapacityHeld) -> list[str]:
    """Keys of a lead's open assignments that no longer hold capacity: all but the working owner's and the
    one in flight (its answer may still make an owner)."""
    return [
        a.key
        for a in open_assignments
        if a.rep_id != held.rep_id and a.key != held.pending_key and not _asked_after(a.key, held.asked)
    ]


def _asked_after(key: str, asked: int | None) -> bool:
    """Whether assignment ``key`` was asked after the snapshot's ``asked`` count (keys end in the lead's
    assignment sequence number: rules.engine._request_assignment)."""
    number = key.rpartition(":")[2]
    return asked is not None and number.isdigit() and int(number) > asked
