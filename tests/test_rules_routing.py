"""Routing decisions in the pure core: named reps, fallback team, the team queue and its retries."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from rules import decide, load_playbook_text
from rules.model import (
    AssignmentFailed,
    AssignRep,
    EventsReceived,
    LeadState,
    LeadUpserted,
    Rep,
    RepAssigned,
    TimerFired,
    TrackedEvent,
)

PLAYBOOK = """
name: routing
scoring:
  rules:
    - {id: pricing, when: 'event.type == "page_view" and contains(event.url, "/pricing")', points: 100}
stages:
  rules:
    - {id: sql, to: sql, when: score >= 100}
routing:
  default_team: inside-sales
  fallback_team: overflow
  retry_every: 2h
  rules:
    - {id: key_account, when: 'lead.company == "Acme"', team: enterprise, rep: rep-erin, strategy: weighted}
"""
PB = load_playbook_text(PLAYBOOK)
T0 = datetime(2026, 3, 2, 9, tzinfo=UTC)


def sql_lead(company: str) -> tuple[LeadState, list[AssignRep]]:
    state = LeadState("L")
    decide(state, LeadUpserted({"email": "x@example.com", "company": company}), T0, PB)
    out = decide(state, EventsReceived([TrackedEvent("e", "page_view", T0, url="/pricing")]), T0, PB).commands
    return state, [c for c in out if isinstance(c, AssignRep)]


def test_a_rule_can_name_the_account_owner() -> None:
    _, (cmd,) = sql_lead("Acme")
    assert (cmd.team, cmd.rep_id, cmd.strategy, cmd.reason) == (
        "enterprise",
        "rep-erin",
        "weighted",
        "rule key_account",
    )


def test_nobody_in_the_team_goes_to_the_fallback_team_then_the_queue_with_retries() -> None:
    state, (first,) = sql_lead("Bo Corp")
    assert (first.team, first.rep_id) == ("inside-sales", None)
    second = decide(state, AssignmentFailed(first.key, "inside-sales", "all away"), T0, PB).commands
    assert [(c.team, c.reason) for c in second] == [("overflow", "fallback: all away")]
    assert decide(state, AssignmentFailed(second[0].key, "overflow", "all away"), T0, PB).commands == []
    assert state.queued_team == "overflow" and state.timers["assign_retry"] == T0 + timedelta(hours=2)
    # The retry timer offers the lead again; a stale answer for the old key changes nothing.
    retry = decide(state, TimerFired("assign_retry"), T0 + timedelta(hours=2), PB).commands
    assert [(c.team, c.reason) for c in retry] == [("overflow", "retry from the team queue")]
    decide(state, RepAssigned(first.key, Rep("rep-x", "X", "x@x", "inside-sales", None, None), "late"), T0, PB)
    assert state.owner is None
    decide(state, RepAssigned(retry[0].key, Rep("rep-o", "O", "o@x", "overflow", None, None), "rr"), T0, PB)
    assert state.owner.rep.id == "rep-o" and state.queued_team is None and state.followup is not None
