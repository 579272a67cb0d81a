"""Whose rows a caller may see: everyone's, one rep's, or some teams'. One place turns it into WHERE clauses
for the lists, counts, pages and exports, so a scope never means two things."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import ColumnElement

from store.models import FollowUpRow, Lead


@dataclass(frozen=True)
class Scope:
    """Whose rows: everyone's (None), one rep's, or some teams'."""

    rep_id: str | None = None
    teams: frozenset[str] | None = None

    def followups(self) -> list[ColumnElement[bool]]:
        """The follow-ups in this scope: the rep's own, or those of the teams."""
        out: list[ColumnElement[bool]] = []
        if self.rep_id is not None:
            out.append(FollowUpRow.rep_id == self.rep_id)
        if self.teams is not None:
            out.append(FollowUpRow.team_key.in_(sorted(self.teams)))
        return out

    def leads(self) -> list[ColumnElement[bool]]:
        """The leads in this scope: owned by the rep, or by one of the teams."""
        out: list[ColumnElement[bool]] = []
        if self.rep_id is not None:
            out.append(Lead.owner_rep_id == self.rep_id)
        if self.teams is not None:
            out.append(Lead.owner_team.in_(sorted(self.teams)))
        return out


EVERYONE = Scope()
