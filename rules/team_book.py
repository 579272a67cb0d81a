"""Teams kept in memory, for the simulator and the backtest: the store's assignment records without a database.

The book answers an AssignRep exactly as production does: it builds the same :class:`TeamSnapshot` the store
loads under its lock, calls the same :func:`rules.assignment.assign` and applies the answer the same way
(the new assignment, the closings, the cursor), so a simulation routes like production for every strategy,
capacity, out-of-office rep, exclusion and named rep. :meth:`TeamBook.settle` releases capacity as the
lead's projection does.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime

from rules.assignment import OpenAssignment, TeamMember, TeamSnapshot, assign, to_release
from rules.model import AssignmentFailed, AssignRep, CapacityHeld, RepAssigned

STAND_INS_PER_TEAM = 2


@dataclass
class AssignmentRecord:
    key: str
    lead_id: str
    team: str
    rep_id: str
    how: str
    assigned_at: datetime
    open: bool = True


def stand_in_team(key: str) -> TeamSnapshot:
    """Two made-up reps, for a scenario that names no reps: routing still shows where the lead would go."""
    members = tuple(
        TeamMember(f"{key}-rep-{i}", f"{key} rep {i}", f"rep{i}@{key}.example")
        for i in range(1, STAND_INS_PER_TEAM + 1)
    )
    return TeamSnapshot(key, f"{key} manager", f"manager@{key}.example", None, members)


class TeamBook:
    """Teams as given (their members' loads are the loads to start from) plus the assignments made here."""

    def __init__(self, teams: Iterable[TeamSnapshot] = (), *, stand_ins: bool = False) -> None:
        self.teams = {team.key: team for team in teams}
        self.cursors = {key: team.cursor for key, team in self.teams.items()}
        self.records: dict[str, AssignmentRecord] = {}
        self.answers: dict[str, RepAssigned] = {}
        # Whether a team nobody described gets stand-in reps (else it does not exist: nobody available).
        self.stand_ins = stand_ins

    def _team(self, key: str) -> TeamSnapshot | None:
        if key not in self.teams and self.stand_ins:
            self.teams[key] = stand_in_team(key)
            self.cursors[key] = None
        return self.teams.get(key)

    def snapshot(self, team_key: str, lead_id: str) -> TeamSnapshot | None:
        """What the store would load under the team's lock for ``lead_id``."""
        team = self._team(team_key)
        if team is None:
            return None
        records = list(self.records.values())
        members = tuple(
            replace(
                m,
                open_assignments=m.open_assignments + sum(1 for r in records if r.open and r.rep_id == m.id),
                total_assignments=m.total_assignments
                + sum(1 for r in records if r.team == team_key and r.rep_id == m.id),
            )
            for m in team.members
        )
        lead_open = tuple(
            OpenAssignment(r.key, r.rep_id)
            for r in sorted(records, key=lambda r: r.key)
            if r.open and r.lead_id == lead_id
        )
        return replace(team, cursor=self.cursors.get(team_key), members=members, lead_open=lead_open)

    def assign(self, command: AssignRep, now: datetime) -> RepAssigned | AssignmentFailed:
        """Idempotent by key, like the store."""
        if command.key in self.answers:
            return self.answers[command.key]
        result = assign(self.snapshot(command.team, command.lead_id), command, now)
        answer = result.outcome
        if isinstance(answer, RepAssigned):
            for key in result.close:
                self.records[key].open = False
            self.records[command.key] = AssignmentRecord(
                command.key, command.lead_id, answer.rep.team, answer.rep.id, result.how, now
            )
            if result.cursor is not None:
                self.cursors[answer.rep.team] = result.cursor
            self.answers[command.key] = answer
        return answer

    def settle(self, lead_id: str, held: CapacityHeld) -> None:
        """What the lead's projection does in the store: close its assignments that hold no capacity now."""
        mine = [OpenAssignment(r.key, r.rep_id) for r in self.open_assignments(lead_id)]
        for key in to_release(mine, held):
            self.records[key].open = False

    def open_assignments(self, lead_id: str | None = None) -> list[AssignmentRecord]:
        return [r for r in self.records.values() if r.open and (lead_id is None or r.lead_id == lead_id)]
