"""rules/score_history.py: a lead keeps its latest score changes and carries older, projected ones forward,
so the score is still explained by the changes, no decision changes, and every change is projected once."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from rules import decide, load_playbook_text, snapshot
from rules.model import EventsReceived, LeadState, LeadUpserted, ScoreChange, TimerFired, TrackedEvent
from rules.playbook import CompiledPlaybook
from rules.score_history import CARRIED_FORWARD, DECAY_RULE, fold_score_changes
from tests.test_rules_properties import FAST, PLAYBOOKS, actions, simulate

T0 = datetime(2026, 4, 1, 9, 0, tzinfo=UTC)


def explained(changes: list[ScoreChange]) -> float:
    return round(sum(c.points for c in changes), 2)


def latest_anchor(changes: list[ScoreChange]) -> tuple[datetime, float] | None:
    """What decay measures from (rules/engine.py _decay): the latest change that is not a decay step."""
    anchor = next((c for c in reversed(changes) if c.rule_id != DECAY_RULE), None)
    return (anchor.at, anchor.score_after) if anchor else None


# ------------------------------------------------------------------ the fold on its own

steps = st.lists(
    st.tuples(st.booleans(), st.integers(-3000, 3000).map(lambda cents: cents / 100)), min_size=0, max_size=60
)


def history(drawn: list[tuple[bool, float]]) -> list[ScoreChange]:
    """Changes as the engine appends them: seq from 1, the score never below zero, no zero change."""
    changes, score = [], 0.0
    for n, (is_decay, points) in enumerate(drawn):
        new = max(0.0, round(score + points, 2))
        applied = round(new - score, 2)
        if applied == 0:
            continue
        score = new
        rule = DECAY_RULE if is_decay else f"r{n}"
        changes.append(ScoreChange(len(changes) + 1, T0 + timedelta(hours=n), applied, new, rule, "why"))
    return changes


@FAST
@given(drawn=steps, keep=st.integers(1, 10), projected=st.integers(0, 70), again=st.integers(0, 70))
def test_folding_keeps_the_score_explained_and_the_latest_changes(
    drawn: list[tuple[bool, float]], keep: int, projected: int, again: int
) -> None:
    changes = history(drawn)
    folded = fold_score_changes(changes, projected, keep)
    twice = fold_score_changes(folded, max(projected, again), keep)
    for result in (folded, twice):
        assert abs(explained(result) - explained(changes)) <= 1e-6
        seqs = [c.seq for c in result]
        assert seqs == sorted(set(seqs))
        if changes:
            assert result[-1] == changes[-1] and latest_anchor(result) == latest_anchor(changes)
            assert result[-1].score_after == changes[-1].score_after
        # untouched: the latest `keep`, and every change the store has not received yet
        kept = [c for c in changes if c.seq > projected][-keep:] if len(changes) <= keep else changes[-keep:]
        assert all(c in result for c in kept)
        assert all(c in result for c in changes if c.seq > max(projected, again))
        # what was folded is at most two lines, and never a change the store has not received
        folded_lines = [c for c in result if c not in changes]
        assert len(folded_lines) <= 2 and all(c.seq <= max(projected, again) for c in folded_lines)
    projected_all = len(changes)
    bounded = fold_score_changes(changes, projected_all, keep)
    assert len(bounded) <= keep + 2


def test_a_long_history_is_two_carried_lines_and_the_latest_changes() -> None:
    changes = history([(False, 10.0), (False, 5.0)] + [(True, -0.01)] * 300)
    folded = fold_score_changes(changes, projected_through=changes[-1].seq, keep=200)
    assert len(folded) == 202 and folded[2:] == changes[-200:]
    carried, decays = folded[:2]
    assert (carried.rule_id, carried.seq, carried.points, carried.score_after) == (CARRIED_FORWARD, 2, 15.0, 15.0)
    assert carried.at == changes[1].at  # decay still measures from the last real change
    assert (decays.rule_id, decays.seq, decays.points) == (DECAY_RULE, 102, -1.0)
    assert "#3-#102" in decays.reason


# ------------------------------------------------------------------ in the engine's loop, as the workflow folds


@FAST
# keep >= 5: a rep's notification explains the lead's latest five changes (rules/engine.py), so those are kept.
@given(script=actions, pb=PLAYBOOKS, data=st.data(), keep=st.integers(5, 8))
def test_folding_after_projections_changes_no_decision_and_projects_every_change_once(
    script: list[tuple[Any, ...]], pb: CompiledPlaybook, data: st.DataObject, keep: int
) -> None:
    plain = simulate(pb, script)
    projected: list[ScoreChange] = []
    watermark = 0

    def project_then_fold(state: LeadState) -> None:
        nonlocal watermark
        assert abs(state.score - explained(state.score_changes)) <= 1e-6
        if data.draw(st.booleans(), label="project now"):  # as the workflow: some inputs wait for the delay
            projected.extend(snapshot(state, watermark).score_changes)
            if state.score_changes:
                watermark = state.score_changes[-1].seq
                state.score_changes = fold_score_changes(state.score_changes, watermark, keep)
            assert len([c for c in state.score_changes if c.seq <= watermark]) <= keep + 2

    folding = simulate(pb, script, project_then_fold)
    assert folding.scores == plain.scores
    assert [[dataclasses.asdict(c) for c in cs] for cs in folding.commands] == [
        [dataclasses.asdict(c) for c in cs] for cs in plain.commands
    ]
    same = {f.name for f in dataclasses.fields(LeadState)} - {"score_changes"}
    assert {n: getattr(folding.state, n) for n in same} == {n: getattr(plain.state, n) for n in same}
    projected.extend(snapshot(folding.state, watermark).score_changes)
    assert projected == plain.state.score_changes  # each change reached the store once, in order


SLOW_DECAY = load_playbook_text(
    """\
name: slow-decay
scoring:
  decay: {half_life: 90d, every: 1d}
  rules:
    - {id: boost, when: 'event.type == "boost"', points: 100}
routing:
  default_team: t
"""
)


def test_hundreds_of_decay_steps_after_the_last_real_change_decay_exactly_as_before() -> None:
    """The case where the change decay measures from is folded away: its time and score are carried."""
    leads = [LeadState("D1"), LeadState("D1")]
    for state in leads:
        decide(state, LeadUpserted({"email": "d@x.test"}), T0, SLOW_DECAY)
        decide(state, EventsReceived([TrackedEvent("b1", "boost", T0)]), T0, SLOW_DECAY)
    plain, folding = leads
    now = T0
    for _ in range(400):
        now = plain.timers["decay"]
        for state in leads:
            decide(state, TimerFired("decay"), now, SLOW_DECAY)
        folding.score_changes = fold_score_changes(folding.score_changes, folding.score_changes[-1].seq, keep=20)
        assert folding.score == plain.score
    assert len(plain.score_changes) > 300 and len(folding.score_changes) == 22
    # the one real change stays as it was (nothing to carry with it); the decay steps after it are one line
    assert folding.score_changes[0] == plain.score_changes[0] and folding.score_changes[1].rule_id == DECAY_RULE
    assert abs(folding.score - explained(folding.score_changes)) <= 1e-6
