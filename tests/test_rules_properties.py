"""Property tests (hypothesis) for the pure core: determinism, score bookkeeping, decay, playbook validation."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rules import PlaybookError, decide, load_playbook_text
from rules.expressions import Vocabulary, compile_expression
from rules.model import (
    AssignmentFailed,
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

T0 = datetime(2026, 4, 1, 9, 0, tzinfo=UTC)
DEFAULT_TEXT = (Path(__file__).resolve().parent.parent / "playbooks" / "default.yaml").read_text(encoding="utf-8")
DEFAULT_PB = load_playbook_text(DEFAULT_TEXT, version="default")
SQL_RULE = 'when: score >= 60 and grade in ["A", "B", "C"]'
assert DEFAULT_TEXT.count(SQL_RULE) == 1
# The default playbook with an easier SQL line, so random walks reach routing and the SLA more often.
EASY_PB = load_playbook_text(DEFAULT_TEXT.replace(SQL_RULE, "when: score >= 25"), version="easy")
# Journeys v2 and the stage lifecycle: every step type, a side-stage rule and recycling.
RICH_PB = load_playbook_text(
    """\
name: rich
scoring:
  decay: {half_life: 5d, every: 12h}
  rules:
    - {id: pv, when: 'event.type == "page_view"', points: 7, max_per_day: 3}
    - {id: dl, when: 'event.type == "download"', points: 15}
    - {id: unsub, when: 'event.type == "unsubscribe"', points: -25}
    - {id: pricing, when: 'contains(event.url, "pricing")', points: 20, max_total: 2}
stages:
  rules:
    - {to: mql, when: score >= 20}
    - {to: sql, when: score >= 45}
    - {to: disqualified, when: 'lead.country == "FR" and count("unsubscribe") >= 2'}
  recycle:
    - {from: sql, after: 4d}
routing:
  at_stage: sql
  default_team: inside-sales
sla:
  policies:
    - {id: fast, first_touch: 6h, remind_before: 2h, reassign_after: 6h}
journeys:
  - id: j
    enroll_when: stage == "new" or stage == "recycled"
    exit_when: stage == "disqualified"
    steps:
      - {id: hello, type: send_email, template: welcome}
      - {id: w, type: wait_for_event, condition: 'event.type in ["email_click", "download"]', timeout: 2d,
         on_timeout: hot}
      - {id: bonus, type: add_points, points: 30}
      - {id: hot, type: branch, condition: score >= 20, then: split, else: nudge}
      - {id: split, type: ab_split, variants: [{goto: a}, {goto: b, weight: 2}]}
      - {id: a, type: set_field, field: industry, value: saas}
      - {id: b, type: wait, until: {weekdays: [tue, fri], time: "10:00"}}
      - {id: nudge, type: send_email, template: case_study}
      - {id: tell, type: notify_rep, template: sla_reminder}
      - {id: pause, type: wait, duration: 1d}
      - {id: up, type: set_stage, stage: mql}
      - {id: again, type: goto, next: w}
""",
    version="rich",
)

# No example database: these tests write nothing to disk.
FAST = settings(max_examples=100, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])

EVENT_TYPES = ["page_view", "download", "email_open", "email_click", "form_submit", "webinar_attended", "unsubscribe"]
PLAYBOOKS = st.sampled_from([RICH_PB, EASY_PB, DEFAULT_PB])
URLS = [None, "/pricing", "/careers", "/blog", "https://acme.test/Pricing?plan=pro"]
NAMES = [None, "Request a demo", "newsletter"]

attributes = st.fixed_dictionaries(
    {},
    optional={
        "email": st.sampled_from(["", "a@x.test", "b@y.test"]),
        "title": st.sampled_from(["", "VP Sales", "engineer", "部長", None]),
        "company_size": st.one_of(st.none(), st.integers(0, 5000), st.just("big")),
        "industry": st.sampled_from(["saas", "retail", "Finance"]),
        "country": st.sampled_from(["JP", "US", "FR", ""]),
        "job_function": st.sampled_from(["it", "ops"]),
    },
)
# minutes between inputs: often round figures around the playbooks' waits, sometimes anything
gap_minutes = st.one_of(st.sampled_from([0, 1, 30, 240, 1440, 2 * 1440 + 1, 5 * 1440]), st.integers(0, 5 * 1440))
EVENTS_ACTION = st.tuples(
    st.just("events"),
    gap_minutes,
    st.lists(
        st.tuples(st.sampled_from(EVENT_TYPES), st.sampled_from(URLS), st.sampled_from(NAMES), st.integers(0, 25)),
        min_size=1,
        max_size=4,
    ),
)
_actions = st.lists(
    st.one_of(
        EVENTS_ACTION,
        EVENTS_ACTION,
        EVENTS_ACTION,  # listed three times: events are the most common input
        st.tuples(st.just("advance"), gap_minutes),
        st.tuples(st.just("timer"), gap_minutes),
        st.tuples(st.just("upsert"), gap_minutes, attributes),
        st.tuples(st.just("assign"), gap_minutes, st.sampled_from(["rep-a", "rep-b"]), st.booleans()),
        st.tuples(st.just("fail"), gap_minutes),
        st.tuples(st.just("touch"), gap_minutes, st.integers(-120, 120)),
    ),
    min_size=4,
    max_size=40,
)
# Mostly a lead that exists (with an address) from the start; sometimes events arrive first.
actions = st.one_of(
    st.builds(
        lambda first, rest: [("upsert", 0, first), *rest],
        attributes.map(lambda a: {"email": "lead@x.test", **a}),
        _actions,
    ),
    _actions,
)


@dataclass
class Run:
    state: LeadState
    commands: list[list[Command]]
    inputs: list[Input]
    scores: list[float]


def simulate(
    pb: CompiledPlaybook, script: list[tuple[Any, ...]], check: Callable[[LeadState], None] | None = None
) -> Run:
    """Play a script of actions on a fresh lead; time only moves forward. ``timer`` fires the earliest timer (at
    its due time if that is later), ``advance`` fires every timer due by the new time in order, as the workflow
    would; answers to assignments use the pending key (or a stale one when nothing is pending)."""
    state, now = LeadState("P1"), T0
    run = Run(state, [], [], [])

    def step(inp: Input, at: datetime) -> None:
        decision = decide(state, inp, at, pb)
        assert decision.state is state
        run.inputs.append(inp)
        run.commands.append(decision.commands)
        run.scores.append(state.score)
        if check is not None:
            check(state)

    for action in script:
        kind, gap = action[0], action[1]
        now += timedelta(minutes=gap)
        inp: Input
        if kind == "events":
            inp = EventsReceived([TrackedEvent(f"e{n}", t, now, url=u, name=nm) for t, u, nm, n in action[2]])
        elif kind == "timer":
            if not state.timers:
                continue
            name, due = min(state.timers.items(), key=lambda item: (item[1], item[0]))
            now = max(now, due)
            inp = TimerFired(name)
        elif kind == "advance":  # the clock moves on: every timer due by then fires, in order
            for _ in range(50):
                due_now = sorted((due, name) for name, due in state.timers.items() if due <= now)
                if not due_now:
                    break
                due, name = due_now[0]
                step(TimerFired(name), max(due, now - timedelta(minutes=gap)))
            continue
        elif kind == "upsert":
            inp = LeadUpserted(dict(action[2]))
        elif kind == "assign":
            rep, with_manager = action[2], action[3]
            key = state.pending_assignment or "P1:assign:stale"
            manager = ("Mina", "mina@x.test") if with_manager else (None, None)
            inp = RepAssigned(key, Rep(rep, rep.upper(), f"{rep}@x.test", "inside-sales", *manager), "test")
        elif kind == "fail":
            inp = AssignmentFailed(state.pending_assignment or "P1:assign:stale", "inside-sales", "nobody")
        else:
            inp = TouchLogged(f"t{len(run.inputs)}", "call", now + timedelta(minutes=action[2]), "rep-a")
        step(inp, now)
    return run


def check_score_books(state: LeadState) -> None:
    assert state.score >= 0
    assert abs(state.score - round(sum(c.points for c in state.score_changes), 2)) <= 1e-6
    if state.score_changes:
        assert state.score_changes[-1].score_after == state.score
        assert [c.seq for c in state.score_changes] == list(range(1, len(state.score_changes) + 1))
        assert all(c.score_after >= 0 and c.points != 0 for c in state.score_changes)


# ------------------------------------------------------------------ (1) determinism


@FAST
@given(script=actions, pb=PLAYBOOKS)
def test_same_inputs_give_the_same_state_and_commands(script: list[tuple[Any, ...]], pb: CompiledPlaybook) -> None:
    first, second = simulate(pb, script), simulate(pb, script)
    assert first.inputs == second.inputs
    assert first.scores == second.scores
    assert dataclasses.asdict(first.state) == dataclasses.asdict(second.state)
    assert [[dataclasses.asdict(c) for c in cs] for cs in first.commands] == [
        [dataclasses.asdict(c) for c in cs] for cs in second.commands
    ]


# ------------------------------------------------------------------ (2) score bookkeeping


@FAST
@given(script=actions, pb=PLAYBOOKS)
def test_score_is_the_sum_of_its_recorded_changes_and_never_negative(
    script: list[tuple[Any, ...]], pb: CompiledPlaybook
) -> None:
    run = simulate(pb, script, check_score_books)
    keys = [c.key for cs in run.commands for c in cs]
    assert len(keys) == len(set(keys)), "command keys must be unique"
    if pb is not RICH_PB:  # no side-stage rules, no recycling: the funnel only moves forward
        order = pb.stage_order
        moves = [(order.index(c.from_stage), order.index(c.to_stage)) for c in run.state.stage_changes]
        assert all(a < b for a, b in moves), "stages only move forward"
    for journey in run.state.journeys.values():
        assert (journey.status == "active") == (journey.ended_at is None)
        assert journey.waiting_for is None or journey.status == "active"


# ------------------------------------------------------------------ (3) decay


DECAY_PLAYBOOK = """\
name: decay
scoring:
  decay:
    half_life: {half_life}h
    every: {every}h
  rules:
    - id: boost
      when: event.type == "boost"
      points: {points}
routing:
  default_team: t
"""


@FAST
@given(
    half_life=st.integers(1, 24 * 90),
    every=st.integers(1, 72),
    points=st.integers(1, 50_000).map(lambda cents: cents / 100),
    hits=st.integers(1, 3),
    steps=st.integers(1, 60),
)
def test_decay_is_monotone_and_never_negative(half_life: int, every: int, points: float, hits: int, steps: int) -> None:
    pb = load_playbook_text(DECAY_PLAYBOOK.format(half_life=half_life, every=every, points=points))
    state, now = LeadState("D1"), T0
    decide(state, LeadUpserted({"email": "d@x.test"}), now, pb)
    for i in range(hits):
        decide(state, EventsReceived([TrackedEvent(f"b{i}", "boost", now)]), now, pb)
    start = previous = state.score
    assert start == pytest.approx(points * hits, abs=0.011)
    for _ in range(steps):
        due = state.timers["decay"]
        assert due == now + timedelta(hours=every)
        now = due
        decide(state, TimerFired("decay"), now, pb)
        assert 0 <= state.score <= previous
        check_score_books(state)
        previous = state.score
    assert state.timers["decay"] == now + timedelta(hours=every)
    # it never stalls: once the exact half-life curve has lost 2 cents, the score has dropped
    if start * (1 - 0.5 ** (steps * every / half_life)) >= 0.02:
        assert state.score < start


# ------------------------------------------------------------------ (4) generated playbooks

WORDS = st.sampled_from(["vp", "director", "head of", "chief", "manager"])
SMALL_INT = st.integers(0, 500)


def _leaf(with_event: bool) -> st.SearchStrategy[str]:
    lead_only = [
        SMALL_INT.map(lambda n: f"score >= {n}"),
        SMALL_INT.map(lambda n: f"lead.company_size > {n}"),
        st.lists(st.sampled_from(["JP", "US", "DE"]), min_size=1, max_size=3).map(
            lambda cs: f"lead.country in {json.dumps(cs)}"
        ),
        WORDS.map(lambda w: f'matches(lead.title, "{w}")'),
        SMALL_INT.map(lambda n: f"days_since(lead.created_at) < {n}"),
        st.sampled_from(["A", "B", "C"]).map(lambda g: f'grade == "{g}"'),
        st.sampled_from(["mql", "sql"]).map(lambda s: f'stage != "{s}"'),
        SMALL_INT.map(lambda n: f"lead.company_size * 2 + 1 >= {n}"),
        st.sampled_from(["gmail.com", ".jp"]).map(lambda s: f'ends_with(lead.email, "{s}")'),
    ]
    with_events = [
        st.sampled_from(EVENT_TYPES).map(lambda t: f'event.type == "{t}"'),
        st.sampled_from(["/pricing", "/careers", "demo"]).map(lambda p: f'contains(event.url, "{p}")'),
        st.sampled_from(["/pricing", "/blog"]).map(lambda p: f'"{p}" not in event.url'),
        st.tuples(st.sampled_from(EVENT_TYPES), st.integers(1, 30), st.integers(0, 9)).map(
            lambda a: f'count("{a[0]}", days={a[1]}) >= {a[2]}'
        ),
        st.sampled_from(["plan", "seats"]).map(lambda k: f'event.properties["{k}"] == "pro"'),
    ]
    return st.one_of(*(lead_only + (with_events if with_event else [])))


def expressions(with_event: bool) -> st.SearchStrategy[str]:
    return st.recursive(
        _leaf(with_event),
        lambda inner: st.one_of(
            st.tuples(inner, inner).map(lambda ab: f"({ab[0]}) and ({ab[1]})"),
            st.tuples(inner, inner).map(lambda ab: f"{ab[0]} or {ab[1]}"),
            inner.map(lambda a: f"not ({a})"),
        ),
        max_leaves=4,
    )


rule_ids = st.builds(
    lambda head, tail: head + tail,
    st.sampled_from("abcdefghijklmnopqrstuvwxyz"),
    st.text("abcdefghijklmnopqrstuvwxyz0123456789_", max_size=12),
)
points = st.one_of(st.integers(-50, 100), st.integers(-5000, 10_000).map(lambda c: c / 100))


EXPRESSIONS = {True: expressions(with_event=True), False: expressions(with_event=False)}


@st.composite
def rule_sets(draw: st.DrawFn, with_event: bool, min_size: int = 1) -> list[dict[str, Any]]:
    ids = draw(st.lists(rule_ids, min_size=min_size, max_size=5, unique=True))
    return [{"id": i, "when": draw(EXPRESSIONS[with_event]), "points": draw(points)} for i in ids]


def render(scoring: list[dict[str, Any]], grading: list[dict[str, Any]]) -> tuple[str, dict[str, list[int]]]:
    """A playbook's YAML, and for each scoring rule the line numbers of its keys (1-based), in order."""
    lines = ["name: generated", "fields: [job_function]", "scoring:", "  rules:"]
    spans: dict[str, list[int]] = {}
    for index, rule in enumerate(scoring):
        start = len(lines) + 1
        for n, (key, value) in enumerate(rule.items()):
            lines.append(f"{'    - ' if n == 0 else '      '}{key}: {json.dumps(value, ensure_ascii=False)}")
        spans[f"scoring.{index}"] = list(range(start, len(lines) + 1))
    lines += ["grading:", "  rules:" if grading else "  rules: []"]
    for rule in grading:
        lines.append(f"    - id: {json.dumps(rule['id'])}")
        lines.append(f"      when: {json.dumps(rule['when'])}")
        lines.append(f"      points: {json.dumps(rule['points'])}")
    lines += ["routing:", "  default_team: inside-sales"]
    return "\n".join(lines) + "\n", spans


LEADS = st.fixed_dictionaries(
    {},
    optional={
        "title": st.one_of(st.none(), st.just("VP Sales"), st.integers(), st.text(max_size=5)),
        "company_size": st.one_of(st.none(), st.integers(-10, 10_000), st.text(max_size=3), st.floats(allow_nan=True)),
        "country": st.one_of(st.none(), st.sampled_from(["JP", "jp", "FR"]), st.integers()),
        "email": st.one_of(st.none(), st.just("a@b.jp"), st.lists(st.text(max_size=2), max_size=2)),
        "created_at": st.one_of(st.none(), st.just("2026-01-01"), st.just("junk"), st.integers()),
    },
)
EVENTS = st.fixed_dictionaries(
    {
        "id": st.just("e"),
        "type": st.sampled_from([*EVENT_TYPES, ""]),
        "at": st.just(T0),
        "url": st.one_of(st.none(), st.sampled_from(URLS[1:]), st.integers()),
        "name": st.none(),
        "properties": st.dictionaries(st.sampled_from(["plan", "seats"]), st.one_of(st.none(), st.text(max_size=3))),
    }
)


@FAST
@given(scoring=rule_sets(with_event=True), grading=rule_sets(with_event=False, min_size=0))
def test_generated_valid_playbooks_validate(scoring: list[dict[str, Any]], grading: list[dict[str, Any]]) -> None:
    text, _ = render(scoring, grading)
    pb = load_playbook_text(text, teams={"inside-sales"}, templates=None)
    assert [(r.spec.id, r.spec.when, r.spec.points) for r in pb.scoring] == [
        (r["id"], r["when"], r["points"]) for r in scoring
    ]
    assert [r.spec.id for r in pb.grading] == [r["id"] for r in grading]


@FAST
@given(text=EXPRESSIONS[True], lead=LEADS, event=EVENTS, score=st.one_of(st.none(), st.floats(0, 1e6)))
def test_generated_expressions_evaluate_without_raising(
    text: str, lead: dict[str, Any], event: dict[str, Any], score: float | None
) -> None:
    rule = compile_expression(text, Vocabulary())

    def history(event_type: str, days: float | None, now: datetime) -> int:
        assert event_type in EVENT_TYPES and days is not None and now == T0
        return len(event_type)

    result = rule(lead, event, score, None, "new", T0, history)
    assert isinstance(result, bool)


DEFECTS = ["bad_expression", "unknown_field", "unknown_function", "unknown_key", "bad_points", "zero_cap", "duplicate"]


@dataclass(frozen=True)
class Injected:
    kind: str
    index: int
    key: str  # the key whose line the first issue must name


def inject(rules: list[dict[str, Any]], kind: str, index: int) -> tuple[list[dict[str, Any]], Injected]:
    rules = [dict(r) for r in rules]
    rule = rules[index]
    if kind == "bad_expression":
        rule["when"] = rule["when"].replace("==", "=", 1) if "==" in rule["when"] else f"{rule['when']} >"
        key = "when"
    elif kind == "unknown_field":
        rule["when"] = f'({rule["when"]}) and lead.titel == "vp"'
        key = "when"
    elif kind == "unknown_function":
        rule["when"] = f'upper(lead.title) == "VP" or ({rule["when"]})'
        key = "when"
    elif kind == "unknown_key":
        rule["poins"] = 3
        key = "poins"
    elif kind == "bad_points":
        rule["points"] = "lots"
        key = "points"
    elif kind == "zero_cap":
        rule["max_per_day"] = 0
        key = "max_per_day"
    else:
        assert index > 0
        rule["id"] = rules[0]["id"]
        key = "id"
    return rules, Injected(kind, index, key)


@FAST
@given(data=st.data(), scoring=rule_sets(with_event=True), grading=rule_sets(with_event=False, min_size=0))
def test_generated_broken_playbooks_point_at_the_injected_rule(
    data: st.DataObject, scoring: list[dict[str, Any]], grading: list[dict[str, Any]]
) -> None:
    kind = data.draw(st.sampled_from(DEFECTS if len(scoring) > 1 else DEFECTS[:-1]), label="defect")
    index = data.draw(st.integers(1 if kind == "duplicate" else 0, len(scoring) - 1), label="index")
    broken, injected = inject(scoring, kind, index)
    text, spans = render(broken, grading)
    with pytest.raises(PlaybookError) as info:
        load_playbook_text(text, teams={"inside-sales"})
    first = info.value.issues[0]
    span = spans[f"scoring.{index}"]
    expected_line = span[list(broken[index]).index(injected.key)]
    assert first.line is not None
    assert span[0] <= first.line <= span[-1], (first, text)
    assert first.line == expected_line, (first, text)
    assert first.path == f"scoring.rules[{index}].{injected.key}"
    assert len(info.value.issues) == 1, info.value.issues
