"""Property tests (hypothesis) for rules/migration.py: over random lead histories and target versions, a plan
never changes the lead, is deterministic, and a migrated state is one the new version can run."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rules import decide
from rules.engine import JOURNEY_TIMER_PREFIX
from rules.migration import MigrationOptions, plan_lead_migration, unmapped_steps
from rules.model import EventsReceived, LeadState, LeadUpserted, TimerFired, TrackedEvent
from rules.playbook import CompiledPlaybook, compiled_from_document

T0 = datetime(2026, 4, 1, 9, 0, tzinfo=UTC)
DEFAULT = yaml.safe_load((Path(__file__).resolve().parent.parent / "playbooks" / "default.yaml").read_text())
JOURNEY = yaml.safe_load("""
id: segments
enroll_when: stage == "new" or stage == "mql"
exit_when: stage == "sql"
steps:
  - {id: welcome, type: send_email, template: welcome}
  - {id: pick, type: branch, condition: 'lead.segment == "a"', then: wait_a, else: pick_b}
  - {id: pick_b, type: branch, condition: 'lead.segment == "b"', then: wait_b, else: wait_c}
  - {id: wait_a, type: wait, duration: 2d, next: step_a}
  - {id: wait_b, type: wait, duration: 1d, next: step_b}
  - {id: wait_c, type: wait_for_event, condition: 'event.type == "email_click"', timeout: 3d, on_timeout: step_c}
  - {id: step_a, type: send_email, template: case_study, next: done}
  - {id: step_b, type: send_email, template: case_study, next: done}
  - {id: step_c, type: send_email, template: case_study}
  - {id: done, type: exit}
""")


def version(name: str, change: Any = None) -> CompiledPlaybook:
    doc = copy.deepcopy(DEFAULT)
    doc["fields"] = ["segment"]
    doc["journeys"] = [copy.deepcopy(JOURNEY), copy.deepcopy(DEFAULT["journeys"][0])]
    if change is not None:
        change(doc)
    return compiled_from_document(doc, name)


def renamed(doc: dict[str, Any]) -> None:
    steps = doc["journeys"][0]["steps"]
    steps[2]["else"] = "step_b2"
    steps[4]["next"] = "step_b2"
    steps[:] = [s for s in steps if s["id"] not in ("wait_c", "step_c")]
    next(s for s in steps if s["id"] == "step_b")["id"] = "step_b2"
    doc["scoring"]["rules"][0]["points"] = 25
    doc["stages"]["rules"][0]["when"] = "score >= 10"


def journey_renamed(doc: dict[str, Any]) -> None:
    doc["journeys"][1]["id"] = "nurture_2026"
    doc["sla"]["policies"] = [{"id": "only", "first_touch": "8h"}]


V1 = version("v1")
TARGETS = {
    "same": (version("v2-same"), {}),
    "renamed": (
        version("v2-renamed", renamed),
        {"segments/step_b": "segments/step_b2", "segments/wait_c": "segments/step_a", "segments/step_c": "exit"},
    ),
    "journey_renamed": (
        version("v2-journey", journey_renamed),
        {"welcome_nurture/welcome": "exit", "welcome_nurture/case_study": "nurture_2026/case_study"},
    ),
}
EVENTS = ["download", "email_click", "email_open", "page_view", "webinar_attended"]

moves = st.lists(
    st.one_of(
        st.tuples(st.just("event"), st.sampled_from(EVENTS)),
        st.tuples(st.just("wait"), st.integers(min_value=1, max_value=80)),  # hours
    ),
    max_size=14,
)


def walk(segment: str, steps: list[tuple[str, Any]]) -> tuple[LeadState, list[TrackedEvent], datetime]:
    state, now, events = LeadState(lead_id="lead-" + "b" * 32), T0, []
    decide(
        state, LeadUpserted({"email": "p@example.com", "segment": segment, "title": "VP", "company_size": 300}), now, V1
    )
    for n, (kind, value) in enumerate(steps):
        if kind == "event":
            url = "https://example.com/pricing" if value == "page_view" and n % 2 else None
            event = TrackedEvent(f"e{n}", value, now, url)
            events.append(event)
            decide(state, EventsReceived([event]), now, V1)
        else:
            end = now + timedelta(hours=value)
            while state.timers and min(state.timers.values()) <= end:
                name, due = min(state.timers.items(), key=lambda item: item[1])
                now = max(now, due)
                decide(state, TimerFired(name), now, V1)
            now = end
    return state, events, now


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    segment=st.sampled_from(["a", "b", "c"]),
    steps=moves,
    target=st.sampled_from(sorted(TARGETS)),
    recompute=st.booleans(),
)
def test_a_migrated_lead_is_one_the_new_version_can_run(
    segment: str, steps: list[tuple[str, Any]], target: str, recompute: bool
) -> None:
    state, events, now = walk(segment, steps)
    new, step_map = TARGETS[target]
    assert unmapped_steps(V1, new, step_map) == []
    before = copy.deepcopy(state)
    options = MigrationOptions(new.version, step_map, recompute)
    result = plan_lead_migration(state, V1, new, options, now, events)
    assert state == before, "planning never changes the lead"
    assert plan_lead_migration(state, V1, new, options, now, events).plan == result.plan, "deterministic"
    assert result.plan.outcome == "migrate", result.plan.reason
    lead = result.state
    assert lead is not None and lead.playbook_version == new.version
    assert sum(c.points for c in lead.score_changes) == pytest.approx(lead.score, abs=0.02)
    journeys = {cj.spec.id: cj for cj in new.journeys}
    for journey_id, run in lead.journeys.items():
        timer = JOURNEY_TIMER_PREFIX + journey_id
        if run.status != "active":
            assert timer not in lead.timers and run.waiting_for is None
            continue
        cj = journeys[journey_id]  # an active run is in a journey the new version has
        assert 0 <= run.step <= len(cj.spec.steps)
        if run.waiting_for is not None:
            assert cj.spec.steps[run.step].id == run.waiting_for and cj.spec.steps[run.step].type == "wait_for_event"
            assert timer in lead.timers
    # Remaining waits are kept for every run that moved to a step (not ended by the switch or its reaction).
    for move in result.plan.journeys:
        run = lead.journeys[move.to_journey]
        if move.wait_until is not None and run.status == "active" and move.how in ("same", "mapped"):
            assert lead.timers[JOURNEY_TIMER_PREFIX + move.to_journey] == move.wait_until
    # A second migration to the same version finds the lead current.
    assert plan_lead_migration(lead, new, new, options, now, events).plan.outcome == "current"
    # And the lead keeps running under the new version: its next timers fire without error.
    later = now
    for _ in range(5):
        if not lead.timers:
            break
        name, due = min(lead.timers.items(), key=lambda item: item[1])
        later = max(later, due)
        decide(lead, TimerFired(name), later, new)
    assert not lead.rule_errors
