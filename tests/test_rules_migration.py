"""rules/migration.py: planning one lead's switch to another playbook version (pure, on the default playbook)."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from rules import decide
from rules.migration import (
    MigrationOptions,
    plan_lead_migration,
    resting_steps,
    step_map_problems,
    unmapped_steps,
)
from rules.model import EventsReceived, LeadState, LeadUpserted, Rep, RepAssigned, SendEmail, TimerFired, TrackedEvent
from rules.playbook import CompiledPlaybook, compiled_from_document

T0 = datetime(2026, 4, 1, 9, 0, tzinfo=UTC)
DEFAULT = yaml.safe_load((Path(__file__).resolve().parent.parent / "playbooks" / "default.yaml").read_text())


def playbook(version: str, change: Any = None) -> CompiledPlaybook:
    """The default playbook as ``version``, after ``change(document)``."""
    doc = copy.deepcopy(DEFAULT)
    if change is not None:
        change(doc)
    return compiled_from_document(doc, version)


def journey(doc: dict[str, Any]) -> dict[str, Any]:
    return doc["journeys"][0]


def lead(pb: CompiledPlaybook, events: list[TrackedEvent] = (), **attributes: Any) -> LeadState:  # type: ignore[assignment]
    """A lead created at T0 (welcome sent, waiting 3 days before the case study), then ``events`` an hour on."""
    state = LeadState(lead_id="lead-" + "a" * 32)
    attrs = {"email": "ann@example.com", "title": "Engineer", "company_size": 10} | attributes
    decide(state, LeadUpserted(attrs), T0, pb)
    if events:
        decide(state, EventsReceived(list(events)), T0 + timedelta(hours=1), pb)
    return state


def event(n: int, type_: str = "download", url: str | None = None) -> TrackedEvent:
    return TrackedEvent(f"ev-{n}", type_, T0 + timedelta(minutes=30 + n), url)


V1 = playbook("v1")
NOW = T0 + timedelta(days=1)


def test_a_lead_keeps_its_step_and_its_remaining_wait_when_the_step_still_exists() -> None:
    state = lead(V1)
    assert state.journeys["welcome_nurture"].step == 2  # resumes at case_study after wait_3d
    due = state.timers["journey:welcome_nurture"]
    v2 = playbook(
        "v2", lambda d: d["scoring"]["rules"].append({"id": "demo", "when": 'event.type == "demo"', "points": 1})
    )
    before = copy.deepcopy(state)
    result = plan_lead_migration(state, V1, v2, MigrationOptions("v2"), NOW)
    assert state == before, "planning never changes the lead"
    assert result.plan.outcome == "migrate" and result.state is not None
    assert result.state.playbook_version == "v2" and result.state.timers["journey:welcome_nurture"] == due
    [move] = result.plan.journeys
    assert (move.from_step, move.to_step, move.how, move.wait_until) == ("case_study", "case_study", "same", due)
    assert result.commands == [] and result.plan.changes == []


def test_a_lead_already_on_the_target_is_current() -> None:
    result = plan_lead_migration(lead(V1), V1, V1, MigrationOptions("v1"), NOW)
    assert (result.plan.outcome, result.state) == ("current", None)


def renamed_case_study(doc: dict[str, Any]) -> None:
    steps = journey(doc)["steps"]
    steps[2] = {"id": "case_study_2026", "type": "send_email", "template": "case_study"}
    steps.append({"id": "wait_again", "type": "wait", "duration": "2d"})
    steps.append({"id": "last_word", "type": "send_email", "template": "welcome"})


def test_a_removed_step_without_a_map_is_refused_and_listed() -> None:
    v2 = playbook("v2", renamed_case_study)
    assert resting_steps(V1.journeys[0].spec) == ["welcome", "case_study"]
    assert [u.key for u in unmapped_steps(V1, v2, {})] == ["welcome_nurture/case_study"]
    assert unmapped_steps(V1, v2, {"welcome_nurture/case_study": "welcome_nurture/case_study_2026"}) == []
    result = plan_lead_migration(lead(V1), V1, v2, MigrationOptions("v2"), NOW)
    assert result.plan.outcome == "refused" and result.state is None
    assert [u.key for u in result.plan.unmapped] == ["welcome_nurture/case_study"]
    assert "welcome_nurture/case_study" in (result.plan.reason or "")


def test_a_step_map_moves_the_lead_and_keeps_the_remaining_wait() -> None:
    v2 = playbook("v2", renamed_case_study)
    state = lead(V1)
    due = state.timers["journey:welcome_nurture"]
    options = MigrationOptions("v2", {"welcome_nurture/case_study": "welcome_nurture/case_study_2026"})
    result = plan_lead_migration(state, V1, v2, options, NOW)
    assert result.plan.outcome == "migrate" and result.state is not None
    assert result.state.journeys["welcome_nurture"].step == 2
    assert result.state.timers["journey:welcome_nurture"] == due
    assert "journey welcome_nurture at case_study -> welcome_nurture/case_study_2026" in result.plan.changes
    # When the wait ends the lead goes on under v2: the renamed step, then v2's new wait.
    pb_state = result.state
    decision = decide(pb_state, TimerFired("journey:welcome_nurture"), due, v2)
    assert [c.template for c in decision.commands if isinstance(c, SendEmail)] == ["case_study"]
    assert pb_state.timers["journey:welcome_nurture"] == due + timedelta(days=2)


def test_exit_in_the_step_map_ends_the_journey() -> None:
    v2 = playbook("v2", renamed_case_study)
    result = plan_lead_migration(lead(V1), V1, v2, MigrationOptions("v2", {"welcome_nurture/case_study": "exit"}), NOW)
    assert result.state is not None
    run = result.state.journeys["welcome_nurture"]
    assert run.status == "exited" and "journey:welcome_nurture" not in result.state.timers
    assert "left by the migration to v2" in (run.exit_reason or "")


def test_a_renamed_journey_is_mapped_across_with_its_wait() -> None:
    def rename(doc: dict[str, Any]) -> None:
        journey(doc)["id"] = "nurture_2026"

    v2 = playbook("v2", rename)
    assert [u.key for u in unmapped_steps(V1, v2, {})] == ["welcome_nurture/welcome", "welcome_nurture/case_study"]
    state = lead(V1)
    due = state.timers["journey:welcome_nurture"]
    options = MigrationOptions("v2", {"welcome_nurture/case_study": "nurture_2026/case_study"})
    result = plan_lead_migration(state, V1, v2, options, NOW)
    assert result.state is not None
    assert list(result.state.journeys) == ["nurture_2026"]
    assert result.state.timers["journey:nurture_2026"] == due and "journey:welcome_nurture" not in result.state.timers
    # v2's enrolment does not enrol the lead a second time: it already runs the journey.
    assert result.plan.journeys_enrolled == [] and result.commands == []


def test_bad_step_maps_are_named() -> None:
    v2 = playbook("v2", renamed_case_study)
    problems = step_map_problems(
        v2,
        {"nojourney": "exit", "welcome_nurture/case_study": "welcome_nurture/gone", "a/b": "other/x", "c/d": "plain"},
    )
    assert len(problems) == 4
    assert any('no step "gone"' in p for p in problems) and any('no journey "other"' in p for p in problems)


def test_a_wait_for_event_keeps_waiting_or_becomes_a_plain_wait() -> None:
    def waits_for_click(doc: dict[str, Any]) -> None:
        journey(doc)["steps"][1] = {
            "id": "wait_click", "type": "wait_for_event", "condition": 'event.type == "email_click"', "timeout": "5d",
            "on_timeout": "case_study",
        }  # fmt: skip

    v1 = playbook("v1", waits_for_click)
    state = lead(v1)
    assert state.journeys["welcome_nurture"].waiting_for == "wait_click"
    due = state.timers["journey:welcome_nurture"]
    same = plan_lead_migration(state, v1, playbook("v2", waits_for_click), MigrationOptions("v2"), NOW)
    assert same.state is not None and same.state.journeys["welcome_nurture"].waiting_for == "wait_click"
    assert same.plan.journeys[0].waiting_for_event

    # v3 waits 3 days instead: the lead's timeout becomes a plain wait ending at the same time.
    options = MigrationOptions("v3", {"welcome_nurture/wait_click": "welcome_nurture/case_study"})
    moved = plan_lead_migration(state, v1, playbook("v3"), options, NOW)
    assert moved.state is not None
    run = moved.state.journeys["welcome_nurture"]
    assert (run.waiting_for, run.step, moved.state.timers["journey:welcome_nurture"]) == (None, 2, due)


def test_new_stage_rules_apply_at_the_switch() -> None:
    state = lead(V1, [event(1)])  # 15 points: not an MQL under v1 (30)
    assert (state.stage, round(state.score)) == ("new", 15)

    def lower_mql(doc: dict[str, Any]) -> None:
        doc["stages"]["rules"][0]["when"] = "score >= 10"

    result = plan_lead_migration(state, V1, playbook("v2", lower_mql), MigrationOptions("v2"), NOW)
    assert result.state is not None and result.state.stage == "mql"
    assert (result.plan.stage_before, result.plan.stage_after) == ("new", "mql")
    assert "stage new -> mql" in result.plan.changes
    assert result.state.stage_changes[-1].reason == "mql_threshold"


def test_score_recomputed_under_the_new_rules_is_explained() -> None:
    events = [event(1), event(2), event(3, "page_view", "https://example.com/pricing")]
    state = lead(V1, events)
    assert round(state.score) == 70  # 15 + 15 + 40
    SAME_DAY = T0 + timedelta(hours=12)  # before the first decay: the replay's score is the rules' sum

    def cheaper_downloads(doc: dict[str, Any]) -> None:
        doc["scoring"]["rules"][0]["points"] = 5

    v2 = playbook("v2", cheaper_downloads)
    kept = plan_lead_migration(state, V1, v2, MigrationOptions("v2"), SAME_DAY, events)
    assert kept.state is not None and round(kept.state.score) == 70 and not kept.plan.score_recomputed
    result = plan_lead_migration(state, V1, v2, MigrationOptions("v2", recompute_score=True), SAME_DAY, events)
    assert result.state is not None and result.plan.score_recomputed
    assert (result.plan.score_before, result.plan.score_after) == (70, 50)
    change = result.state.score_changes[-1]
    assert (change.rule_id, change.points) == ("migration", -20.0)
    assert sum(c.points for c in result.state.score_changes) == pytest.approx(result.state.score)
    # A repeated event id counts once; rep touches are not behaviour.
    again = plan_lead_migration(
        state,
        V1,
        v2,
        MigrationOptions("v2", recompute_score=True),
        SAME_DAY,
        [*events, events[0], event(9, "touch.call")],
    )
    assert again.plan.score_after == 50


def sql_lead(pb: CompiledPlaybook) -> LeadState:
    events = [event(1), event(2, "webinar_attended"), event(3, "page_view", "https://example.com/pricing")]
    state = lead(pb, events, title="VP Sales", company_size=500, country="US")
    assert state.stage == "sql" and state.pending_assignment
    rep = Rep("rep-ben", "Ben", "ben@example.com", "inside-sales", "Mina", "mina@example.com")
    assigned = RepAssigned(state.pending_assignment, rep, "round robin")
    decide(state, assigned, T0 + timedelta(hours=3), pb)
    assert state.followup is not None
    return state


def test_a_pending_follow_up_keeps_its_due_time_and_gets_a_policy_of_the_new_version() -> None:
    state = sql_lead(V1)
    assert state.followup is not None and state.followup.policy_id == "hot_lead"
    due = state.followup.due_at

    def new_policies(doc: dict[str, Any]) -> None:
        doc["sla"]["policies"] = [{"id": "everyone", "first_touch": "8h", "reassign_after": "2h"}]

    result = plan_lead_migration(state, V1, playbook("v2", new_policies), MigrationOptions("v2"), NOW)
    assert result.state is not None and result.state.followup is not None
    assert (result.state.followup.policy_id, result.state.followup.due_at) == ("everyone", due)
    assert result.state.timers["sla_due"] == state.timers["sla_due"]
    assert "follow-up policy hot_lead -> everyone (due kept)" in result.plan.changes


def test_a_stage_the_new_version_lacks_is_refused() -> None:
    state = lead(V1)
    state.stage = "recycled"

    def no_recycled(doc: dict[str, Any]) -> None:
        doc["stages"]["side"] = ["disqualified"]
        doc["stages"]["reentry"] = []

    result = plan_lead_migration(state, V1, playbook("v2", no_recycled), MigrationOptions("v2"), NOW)
    assert result.plan.outcome == "refused" and 'stage "recycled"' in (result.plan.reason or "")


def test_decay_and_recycle_timers_follow_the_new_version() -> None:
    state = lead(V1)
    assert "decay" in state.timers

    def recycle_new_leads(doc: dict[str, Any]) -> None:
        del doc["scoring"]["decay"]
        doc["stages"]["recycle"] = [{"from": "new", "after": "30d", "to": "recycled"}]

    result = plan_lead_migration(state, V1, playbook("v2", recycle_new_leads), MigrationOptions("v2"), NOW)
    assert result.state is not None
    assert "decay" not in result.state.timers
    assert result.state.timers["recycle"] == T0 + timedelta(days=30)
