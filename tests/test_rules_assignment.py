"""rules.assignment.assign: the one choice of a rep, pure (production, simulator and backtest call it)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from rules.assignment import OpenAssignment, TeamMember, TeamSnapshot, assign
from rules.model import AssignmentFailed, AssignRep, Rep, RepAssigned

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def team(*members: TeamMember, cursor: str | None = None, lead_open: tuple[OpenAssignment, ...] = ()) -> TeamSnapshot:
    return TeamSnapshot("sales", "Mia", "mia@x.test", cursor, members, lead_open)


def member(rep_id: str, **kw: object) -> TeamMember:
    return TeamMember(rep_id, rep_id.upper(), f"{rep_id}@x.test", **kw)  # type: ignore[arg-type]


def command(strategy: str = "round_robin", **kw: object) -> AssignRep:
    return AssignRep("lead-1", "lead-1:assign:1", "sales", strategy, "default team", **kw)  # type: ignore[arg-type]


def test_round_robin_takes_the_next_id_after_the_cursor_and_moves_it() -> None:
    result = assign(team(member("a"), member("b"), member("c"), cursor="b"), command(), T0)
    assert result.outcome == RepAssigned(
        "lead-1:assign:1",
        Rep("c", "C", "c@x.test", "sales", "Mia", "mia@x.test"),
        "default team; round-robin in team sales",
    )
    assert (result.cursor, result.how) == ("c", "round-robin in team sales")
    wrapped = assign(team(member("a"), member("b"), cursor="b"), command(), T0)
    assert (wrapped.outcome.rep.id, wrapped.cursor) == ("a", "a")  # type: ignore[union-attr]


def test_least_loaded_and_weighted_leave_the_cursor_alone() -> None:
    reps = (member("a", open_assignments=2, total_assignments=3), member("b", open_assignments=1, weight=1))
    least = assign(team(*reps, cursor="a"), command("least_loaded"), T0)
    assert (least.outcome.rep.id, least.cursor, least.how) == ("b", None, "least-loaded (1 open) in team sales")  # type: ignore[union-attr]
    heavy = (member("a", weight=3, total_assignments=2), member("b", weight=1, total_assignments=1))
    weighted = assign(team(*heavy), command("weighted"), T0)
    assert (weighted.outcome.rep.id, weighted.cursor) == ("a", None)  # type: ignore[union-attr]


def test_capacity_out_of_office_inactive_and_excluded_reps_are_skipped() -> None:
    reps = (
        member("a", capacity=1, open_assignments=1),
        member("b", away_until=T0 + timedelta(hours=1)),
        member("c", active=False),
        member("d"),
        member("e"),
    )
    assert assign(team(*reps), command(exclude_rep_ids=["d"]), T0).outcome.rep.id == "e"  # type: ignore[union-attr]
    # Back at away_until exactly.
    assert assign(team(*reps), command(exclude_rep_ids=["d", "e"]), T0 + timedelta(hours=1)).outcome.rep.id == "b"  # type: ignore[union-attr]
    nobody = assign(team(*reps), command(exclude_rep_ids=["d", "e"]), T0).outcome
    assert nobody == AssignmentFailed("lead-1:assign:1", "sales", "nobody available in team sales (1 at capacity)")


def test_the_leads_own_open_assignment_does_not_count_and_closes() -> None:
    own = (OpenAssignment("lead-1:assign:0", "a"),)
    result = assign(team(member("a", capacity=1, open_assignments=1), lead_open=own), command(), T0)
    assert result.outcome.rep.id == "a" and result.close == ("lead-1:assign:0",)  # type: ignore[union-attr]
    # Reassigned elsewhere: the old one closes too.
    moved = assign(team(member("a"), member("b"), lead_open=own), command(exclude_rep_ids=["a"]), T0)
    assert moved.outcome.rep.id == "b" and moved.close == ("lead-1:assign:0",)  # type: ignore[union-attr]


def test_a_named_rep_first_else_the_strategy_says_why() -> None:
    reps = (member("a"), member("b"), member("c", away_until=T0 + timedelta(days=1)))
    named = assign(team(*reps), command(rep_id="b"), T0)
    assert (named.outcome.reason, named.cursor) == ("default team; named rep in team sales", None)
    away = assign(team(*reps), command(rep_id="c"), T0)
    assert away.outcome.reason == "default team; c unavailable; round-robin in team sales"


def test_no_team_and_unknown_strategy() -> None:
    assert assign(None, command(), T0).outcome == AssignmentFailed("lead-1:assign:1", "sales", "no team sales exists")
    with pytest.raises(ValueError, match="strategy"):
        assign(team(member("a")), command("random"), T0)
