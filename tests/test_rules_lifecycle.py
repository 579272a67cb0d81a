"""Lifecycle consistency in ``decide`` (issue 9 item 3): journeys enrol a lead again as the playbook says
(rules/reenrolment.py), and a follow-up ends as cancelled once the lead leaves its stage or its owner
(rules/followups.py)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from rules import load_playbook_text, snapshot
from rules.followups import cancel_if_not_owed, superseded, why_not_owed
from rules.model import FollowUp, LeadUpserted, SendEmail, TouchLogged
from rules.playbook import CompiledPlaybook
from tests.lifecycle_fixtures import lifecycle_playbook
from tests.test_rules_engine import T0, TEAMS, TEMPLATES, Lead

PRICING = "https://x.test/pricing"


def compiled(reenroll: object | None) -> CompiledPlaybook:
    return load_playbook_text(lifecycle_playbook(reenroll), version="lc", templates=TEMPLATES, teams=TEAMS)


def qualify(lead: Lead, rep: str = "rep-aiko") -> None:
    lead.event("page_view", PRICING)
    assert lead.state.stage == "sql"
    lead.assign(rep)


def recycle(lead: Lead) -> None:
    lead.fire("recycle")
    assert lead.state.stage == "recycled"


def welcomes(lead: Lead) -> list[SendEmail]:
    return [e for e in lead.emails("nurture") if e.template == "welcome"]


# ------------------------------------------------------------------ re-enrolment


def test_a_recycled_lead_is_nurtured_again_each_time_it_is_recycled() -> None:
    lead = Lead(compiled("every_time"), {"email": "ann@x.test"})
    qualify(lead)
    recycle(lead)
    run = lead.state.journeys["recycled_nurture"]
    assert (run.status, run.enrolments, len(welcomes(lead))) == ("active", 1, 1)
    qualify(lead, "rep-ben")  # back to SQL: the run exits, the enrolment condition is false again
    assert lead.state.journeys["recycled_nurture"].status == "exited"
    recycle(lead)
    run = lead.state.journeys["recycled_nurture"]
    assert (run.status, run.enrolments, run.step, run.enrolled_at) == ("active", 2, 2, lead.now)
    assert len(welcomes(lead)) == 2
    lead.fire("journey:recycled_nurture")
    assert [e.template for e in lead.emails("nurture")] == ["welcome", "welcome", "case_study"]


def test_once_is_the_default_and_keeps_one_run_per_lead() -> None:
    for reenroll in (None, "once"):
        lead = Lead(compiled(reenroll), {"email": "ann@x.test"})
        qualify(lead)
        recycle(lead)
        qualify(lead, "rep-ben")
        recycle(lead)
        run = lead.state.journeys["recycled_nurture"]
        assert (run.status, run.enrolments, len(welcomes(lead))) == ("exited", 1, 1)


def test_every_time_waits_for_the_condition_to_become_true_again() -> None:
    """A run that completes while the condition still holds does not start over (that would loop)."""
    lead = Lead(compiled("every_time"), {"email": "ann@x.test"})
    qualify(lead)
    recycle(lead)
    lead.fire("journey:recycled_nurture")
    run = lead.state.journeys["recycled_nurture"]
    assert (run.status, run.enrolments) == ("completed", 1)
    lead.send(TouchLogged("t1", "call", lead.now), lead.now + timedelta(days=1))  # inputs come, still recycled
    lead.event("page_view", "/blog")
    assert lead.state.journeys["recycled_nurture"].enrolments == 1 and len(welcomes(lead)) == 1


def test_once_per_lets_go_of_a_return_within_its_window() -> None:
    lead = Lead(compiled({"once_per": {"days": 60}}), {"email": "ann@x.test"})
    qualify(lead)
    recycle(lead)  # day 30: first run
    first = lead.now
    qualify(lead, "rep-ben")
    recycle(lead)  # day 60 < 30 + 60: within the window, let go
    assert lead.state.journeys["recycled_nurture"].enrolments == 1
    qualify(lead)
    recycle(lead)  # day 90: the window since the first enrolment has passed
    run = lead.state.journeys["recycled_nurture"]
    assert lead.now >= first + timedelta(days=60)
    assert (run.status, run.enrolments) == ("active", 2) and len(welcomes(lead)) == 2


# ------------------------------------------------------------------ follow-ups end with their stage or owner


def test_recycling_cancels_an_overdue_follow_up_and_its_timers() -> None:
    lead = Lead(compiled("every_time"), {"email": "ann@x.test"})
    qualify(lead)
    lead.fire("sla_due")
    assert lead.state.followup is not None and lead.state.followup.status == "overdue"
    assert "sla_reassign" in lead.state.timers
    recycle(lead)
    followup = lead.state.followup
    assert followup is not None and followup.status == "cancelled"
    assert (followup.cancelled_at, followup.cancel_reason) == (lead.now, "the lead has no owner any more")
    assert not {"sla_remind", "sla_due", "sla_reassign"} & set(lead.state.timers)
    # the read model gets it as cancelled (the lead's projection writes it)
    assert snapshot(lead.state).followup == followup
    # a touch after the lead left sales meets nothing
    lead.send(TouchLogged("late", "call", lead.now))
    assert lead.state.followup.status == "cancelled" and lead.state.followup.met_at is None


def test_recycling_cancels_a_pending_follow_up_instead_of_dropping_it() -> None:
    lead = Lead(compiled("every_time"), {"email": "ann@x.test"})
    qualify(lead)
    lead.state.timers.pop("sla_due")  # the deadline not reached yet when the lead is recycled
    recycle(lead)
    assert lead.state.followup is not None and lead.state.followup.status == "cancelled"


def test_disqualifying_cancels_the_follow_up_and_nothing_escalates() -> None:
    lead = Lead(compiled("every_time"), {"email": "ann@x.test"})
    qualify(lead)
    due = lead.state.followup.due_at  # type: ignore[union-attr]
    lead.send(LeadUpserted({"company": "Rival Inc"}))
    assert lead.state.stage == "disqualified" and lead.state.owner is not None  # the rep keeps the record
    assert lead.state.followup is not None and lead.state.followup.status == "cancelled"
    assert "left sales" in (lead.state.followup.cancel_reason or "")
    sent = len(lead.emails())
    lead.event("page_view", "/blog")
    lead.now = due + timedelta(days=2)
    lead.event("page_view", "/blog", id_="later")
    assert len(lead.emails()) == sent and lead.state.timers.keys() <= {"recycle"}


def test_a_follow_up_stays_owed_forward_in_the_funnel_and_ends_when_the_lead_goes_back() -> None:
    lead = Lead(compiled("every_time"), {"email": "ann@x.test"})
    qualify(lead)
    lead.state.stage = "opportunity"  # moved on while the rep works it (a sales outcome, a stage rule)
    lead.event("page_view", "/blog")
    assert lead.state.followup is not None and lead.state.followup.status == "pending"
    lead.state.stage = "mql"  # back before the stage that started it (a journey's set_stage)
    assert why_not_owed(lead.state, lead.pb.stage_order) == "the lead went back from sql to mql"
    cancel_if_not_owed(lead.state, lead.now, lead.pb.stage_order)
    assert lead.state.followup.status == "cancelled" and "sla_due" not in lead.state.timers


def test_a_reassignment_ends_the_previous_follow_up() -> None:
    lead = Lead(compiled("every_time"), {"email": "ann@x.test"})
    qualify(lead)
    first = lead.state.followup
    lead.fire("sla_due")
    lead.fire("sla_reassign")
    lead.assign("rep-ben")
    assert first is not None and first.status == "cancelled" and first.cancel_reason == "the lead went to rep-ben"
    current = lead.state.followup
    assert current is not None and (current.rep_id, current.status) == ("rep-ben", "pending")
    # the projection carries only the current one: the store cancels the lead's other open rows
    assert superseded([first.key, current.key], current) == [first.key]


def test_superseded_keeps_only_the_current_follow_up() -> None:
    current = FollowUp("L:followup:3", "first_touch", "p", "rep-a", "t", T0, T0)
    assert superseded(["L:followup:1", "L:followup:3", "L:followup:2"], current) == ["L:followup:1", "L:followup:2"]
    assert superseded(["L:followup:1"], None) == ["L:followup:1"]


def test_runs_recorded_before_keep_the_old_follow_up_behaviour() -> None:
    """``legacy_followups`` (set from workflow.patched) replays old histories as they were made."""
    lead = Lead(compiled("every_time"), {"email": "ann@x.test"})
    lead.state.legacy_followups = True
    qualify(lead)
    lead.fire("sla_due")
    recycle(lead)
    assert lead.state.followup is not None and lead.state.followup.status == "overdue"


@pytest.mark.parametrize("reenroll", ["every_time", {"once_per": {"days": 7}}])
def test_re_enrolment_needs_no_patch_for_playbooks_that_do_not_ask_for_it(reenroll: object) -> None:
    """The default is today's behaviour, so leads on published playbooks replay unchanged."""
    assert compiled(None).journeys[0].spec.reenroll == "once"
    assert compiled(reenroll).journeys[0].spec.reenroll != "once"
