"""Lifecycle invariants of ``rules.decide`` over random sequences of inputs (hypothesis), checked after every
decision: the score is the sum of its explained changes, one owner at a time (one assignment asked at once, stale
answers ignored), no follow-up pending or overdue without the owner it belongs to, outside the stages sales
works or before the stage that started it (and no SLA timer without one), timers only in the future of the
decision that set them, and stage moves the playbook allows. Scripts recycle, disqualify and re-enrol leads
(tests/lifecycle_fixtures.py).

Input kinds are data (``KINDS``): each says how hypothesis draws its arguments and how it plays them on the lead as
it stands. A new kind of input (sales outcomes, merges) is one more ``InputKind`` appended to ``KINDS``; every
invariant then holds for scripts mixing it with the others. tests/test_rules_properties.py keeps determinism,
decay and playbook-validation properties (its strategies and score books are reused here).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rules import decide, load_playbook_text
from rules.followups import SLA_TIMERS, is_open, worked_by_sales
from rules.model import (
    AssignmentFailed,
    AssignRep,
    Command,
    EventsReceived,
    Input,
    LeadState,
    LeadUpserted,
    Rep,
    RepAssigned,
    TimerFired,
    TouchLogged,
    TrackedEvent,
)
from rules.playbook import CompiledPlaybook
from tests.lifecycle_fixtures import lifecycle_playbook
from tests.test_rules_properties import (
    DEFAULT_PB,
    EVENT_TYPES,
    FAST,
    NAMES,
    PLAYBOOKS,
    RICH_PB,
    T0,
    URLS,
    attributes,
    check_score_books,
    gap_minutes,
)


@dataclass
class Lead:
    """One lead played through ``decide`` on a clock that only moves forward; ``check`` runs after each input."""

    pb: CompiledPlaybook
    check: Callable[[Lead, Input, datetime, LeadState, list[Command]], None]
    state: LeadState = field(default_factory=lambda: LeadState("P1"))
    now: datetime = T0
    decisions: int = 0

    def apply(self, inp: Input, at: datetime) -> list[Command]:
        self.now = max(self.now, at)
        before = copy.deepcopy(self.state)
        commands = decide(self.state, inp, self.now, self.pb).commands
        self.decisions += 1
        self.check(self, inp, self.now, before, commands)
        return commands


@dataclass(frozen=True)
class InputKind:
    """A kind of input: ``args`` draws what varies, ``play`` feeds the lead the inputs it stands for."""

    name: str
    args: st.SearchStrategy[Any]
    play: Callable[[Lead, Any], None]
    weight: int = 1


def _events(lead: Lead, drawn: list[tuple[str, str | None, str | None, int]]) -> None:
    now = lead.now
    lead.apply(EventsReceived([TrackedEvent(f"e{n}", t, now, url=u, name=nm) for t, u, nm, n in drawn]), now)


def _upsert(lead: Lead, drawn: dict[str, Any]) -> None:
    lead.apply(LeadUpserted(dict(drawn)), lead.now)


def _touch(lead: Lead, minutes: int) -> None:
    lead.apply(TouchLogged(f"t{lead.decisions}", "call", lead.now + timedelta(minutes=minutes), "rep-a"), lead.now)


def _answer_assignment(lead: Lead, drawn: tuple[str, bool, bool]) -> None:
    """The assign activity's answer: for the pending request, or (``stale``) for one superseded since."""
    rep, with_manager, stale = drawn
    key = lead.state.pending_assignment
    key = "P1:assign:stale" if stale or key is None else key
    manager = ("Mina", "mina@x.test") if with_manager else (None, None)
    lead.apply(RepAssigned(key, Rep(rep, rep.upper(), f"{rep}@x.test", "inside-sales", *manager), "test"), lead.now)


def _fail_assignment(lead: Lead, _: None) -> None:
    lead.apply(AssignmentFailed(lead.state.pending_assignment or "P1:assign:stale", "inside-sales", "nobody"), lead.now)


def _fire_earliest_timer(lead: Lead, _: None) -> None:
    if lead.state.timers:
        name, due = min(lead.state.timers.items(), key=lambda item: (item[1], item[0]))
        lead.apply(TimerFired(name), max(lead.now, due))


def _recycle(lead: Lead, _: None) -> None:
    """The recycling timer fires at its time (the clock jumps there): leads leave sales often."""
    due = lead.state.timers.get("recycle")
    if due is not None:
        lead.apply(TimerFired("recycle"), max(lead.now, due))


def _disqualify(lead: Lead, _: None) -> None:
    """A competitor: LIFECYCLE_PB's side-stage rule disqualifies the lead, whatever stage it is in."""
    lead.apply(LeadUpserted({"company": "Rival Inc"}), lead.now)


def _advance(lead: Lead, _: None) -> None:
    """Every timer due by now fires, earliest first, at its due time, as the workflow's loop does."""
    for _round in range(50):
        due_now = sorted((due, name) for name, due in lead.state.timers.items() if due <= lead.now)
        if not due_now:
            return
        lead.apply(TimerFired(due_now[0][1]), lead.now)


EVENT_BATCH = st.lists(
    st.tuples(st.sampled_from(EVENT_TYPES), st.sampled_from(URLS), st.sampled_from(NAMES), st.integers(0, 25)),
    min_size=1,
    max_size=4,
)
# Straight past the SQL line of every playbook here (pricing page, a download, a demo request).
QUALIFYING = st.integers(0, 99).map(
    lambda n: [
        ("page_view", "/pricing", None, n),
        ("download", None, None, n),
        ("form_submit", None, "Request a demo", n),
    ]
)
REPS = st.sampled_from(["rep-a", "rep-b"])
KINDS: list[InputKind] = [
    InputKind("events", EVENT_BATCH, _events, weight=3),
    InputKind("qualifying_events", QUALIFYING, _events),
    InputKind("upsert", attributes, _upsert),
    InputKind("touch", st.integers(-120, 120), _touch),
    InputKind(
        "assigned", st.tuples(REPS, st.booleans(), st.sampled_from([False, False, True])), _answer_assignment, weight=3
    ),
    InputKind("assignment_failed", st.none(), _fail_assignment),
    InputKind("timer", st.none(), _fire_earliest_timer, weight=2),
    InputKind("advance", st.none(), _advance, weight=2),
    InputKind("recycle", st.none(), _recycle, weight=2),
    InputKind("disqualify", st.none(), _disqualify),
]
# Recycling after 30 days, disqualification, SLA reassignment, and a journey enrolling recycled leads every time.
LIFECYCLE_PB = load_playbook_text(lifecycle_playbook("every_time"), version="lifecycle")
LIFECYCLE_PLAYBOOKS = st.sampled_from([LIFECYCLE_PB, RICH_PB, *([LIFECYCLE_PB] * 2)])
# Each script starts with a lead in sales (qualified and assigned), so what follows recycles, disqualifies or
# reassigns a lead that owes a follow-up.
OWNED_FIRST = [
    ("qualifying_events", 0, [("page_view", "/pricing", None, 100)]),
    ("assigned", 0, ("rep-a", True, False)),
]


def scripts(kinds: Sequence[InputKind]) -> st.SearchStrategy[list[tuple[str, int, Any]]]:
    """A lead created with an address, then (kind, minutes later, arguments) steps."""
    steps = st.one_of(
        *(st.tuples(st.just(kind.name), gap_minutes, kind.args) for kind in kinds for _ in range(kind.weight))
    )
    # Half the leads fit well (grade A or B), so routing and the SLA are reached often.
    fit = st.sampled_from([{}, {"title": "VP Sales", "company_size": 500, "country": "US"}])
    first = st.tuples(fit, attributes).map(lambda fd: ("upsert", 0, {"email": "lead@x.test", **fd[1], **fd[0]}))
    return st.tuples(first, st.lists(steps, min_size=4, max_size=40)).map(lambda fr: [fr[0], *fr[1]])


def play(pb: CompiledPlaybook, script: list[tuple[str, int, Any]], kinds: Sequence[InputKind] = KINDS) -> Lead:
    by_name = {kind.name: kind for kind in kinds}
    lead = Lead(pb, check_invariants)
    for name, gap, drawn in script:
        lead.now += timedelta(minutes=gap)
        by_name[name].play(lead, drawn)
    return lead


# ------------------------------------------------------------------ the invariants


def check_invariants(lead: Lead, inp: Input, now: datetime, before: LeadState, commands: list[Command]) -> None:
    state, pb = lead.state, lead.pb
    check_score_books(state)
    for score_change in state.score_changes[len(before.score_changes) :]:
        assert score_change.rule_id and score_change.reason, f"a score change unexplained: {score_change}"
    _one_owner_at_a_time(state, inp, before, commands)
    _no_followup_open_without_its_owner_and_stage(state, pb)
    for name, due in state.timers.items():
        if before.timers.get(name) != due:
            assert due > now, f"timer {name} set to {due}, not after the decision at {now} ({type(inp).__name__})"
    for move in state.stage_changes[len(before.stage_changes) :]:
        assert stage_move_allowed(move.from_stage, move.to_stage, pb), (
            f"{move.from_stage} -> {move.to_stage} ({move.reason}) is no move playbook {pb.version} allows"
        )


def _one_owner_at_a_time(state: LeadState, inp: Input, before: LeadState, commands: list[Command]) -> None:
    asked = [c for c in commands if isinstance(c, AssignRep)]
    assert len(asked) <= 1, f"two assignments asked at once: {asked}"
    if asked:
        assert state.pending_assignment == asked[0].key, "the request asked is not the one the lead waits for"
    if isinstance(inp, RepAssigned) and inp.key != before.pending_assignment:
        assert state.owner == before.owner, "a stale assignment answer changed the owner"
        assert state.followup == before.followup
    if state.owner != before.owner and state.owner is not None:
        assert isinstance(inp, RepAssigned), f"the owner changed on {type(inp).__name__}"


def _no_followup_open_without_its_owner_and_stage(state: LeadState, pb: CompiledPlaybook) -> None:
    followup = state.followup
    if followup is None or not is_open(followup):
        assert not set(SLA_TIMERS) & set(state.timers), f"SLA timers {state.timers} without an open follow-up"
        return
    status = followup.status
    assert state.owner is not None, f"a follow-up is {status} without an owner"
    assert state.owner.rep.id == followup.rep_id, f"a follow-up is {status} for a rep who does not own the lead"
    assert worked_by_sales(state.stage, pb.stage_order), f"a follow-up is {status} in stage {state.stage}"
    started = pb.stage_order.index(followup.stage or state.stage)
    assert pb.stage_order.index(state.stage) >= started, f"a follow-up of {followup.stage} is {status} in {state.stage}"


def stage_move_allowed(from_stage: str, to_stage: str, pb: CompiledPlaybook) -> bool:
    """A stage rule's target (forward in the funnel, or into a side stage), a recycling, or a journey's set_stage."""
    order, stages = pb.stage_order, pb.model.stages
    if to_stage not in order and to_stage not in stages.side:
        return False
    if any(r.from_stage == from_stage and r.to == to_stage for r in stages.recycle):
        return True
    if any(s.type == "set_stage" and s.stage == to_stage for j in pb.model.journeys for s in j.steps):
        return True
    if not any(rule.spec.to == to_stage for rule in pb.stages):
        return False
    if to_stage not in order:
        return True
    start = order.index(from_stage) if from_stage in order else (0 if from_stage in stages.reentry else None)
    return start is not None and order.index(to_stage) > start


@FAST
@given(script=scripts(KINDS), pb=PLAYBOOKS)
def test_lifecycle_invariants_hold_after_every_input(script: list[tuple[str, int, Any]], pb: CompiledPlaybook) -> None:
    lead = play(pb, script)
    assert lead.decisions >= 1


@FAST
@given(script=scripts(KINDS).map(lambda script: [script[0], *OWNED_FIRST, *script[1:]]), pb=LIFECYCLE_PLAYBOOKS)
def test_invariants_hold_while_leads_are_recycled_disqualified_and_reassigned(
    script: list[tuple[str, int, Any]], pb: CompiledPlaybook
) -> None:
    lead = play(pb, script)
    assert lead.decisions >= 1


def test_the_follow_up_check_refuses_an_overdue_follow_up_left_behind() -> None:
    """The check fails on what main left: an overdue follow-up on a recycled lead without an owner."""
    lead = Lead(LIFECYCLE_PB, lambda *args: None)
    lead.apply(LeadUpserted({"email": "lead@x.test"}), T0)
    lead.apply(EventsReceived([TrackedEvent("p", "page_view", T0, url="/pricing")]), T0)
    _answer_assignment(lead, ("rep-a", True, False))
    _fire_earliest_timer(lead, None)  # the SLA deadline: overdue
    assert lead.state.followup is not None and lead.state.followup.status == "overdue"
    lead.state.legacy_followups = True  # what main did
    _recycle(lead, None)
    with pytest.raises(AssertionError, match="overdue without an owner"):
        _no_followup_open_without_its_owner_and_stage(lead.state, LIFECYCLE_PB)


def test_the_stage_check_refuses_what_the_playbook_does_not_allow() -> None:
    """A check that cannot fail proves nothing: moves no rule, recycling or journey step makes are refused."""
    assert stage_move_allowed("new", "sql", DEFAULT_PB) and stage_move_allowed("recycled", "mql", RICH_PB)
    assert stage_move_allowed("sql", "recycled", RICH_PB)  # its recycling
    assert not stage_move_allowed("sql", "new", DEFAULT_PB)  # backwards
    assert not stage_move_allowed("new", "customer", DEFAULT_PB)  # no rule leads there
    assert not stage_move_allowed("sql", "recycled", DEFAULT_PB)  # no recycling in this playbook
    assert not stage_move_allowed("new", "nowhere", RICH_PB)
