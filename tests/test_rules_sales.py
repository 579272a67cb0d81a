"""The sales hand-off in the pure core (rules/sales.py): accept or reject an assignment, the acceptance SLA,
outcomes and manual changes, each refused with a reason when the lead's state or the playbook forbids it."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from rules import load_playbook_text
from rules.assignment import capacity_held
from rules.engine import Decision, decide
from rules.model import (
    Actor,
    AssignRep,
    EventsReceived,
    LeadState,
    LeadUpserted,
    Rep,
    RepAssigned,
    SalesChange,
    SendEmail,
    TimerFired,
    TrackedEvent,
)
from rules.playbook import CompiledPlaybook, PlaybookError
from rules.sales import TIMER_SAL_DUE, TIMER_SAL_REMIND, TIMER_SAL_REROUTE, awaiting_acceptance

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
TEMPLATES = {"welcome", "rep_new_lead", "sla_reminder", "sla_escalation", "sal_reminder", "sal_escalation"}
BASE = """\
name: sales
scoring:
  rules:
    - {id: pricing, when: 'event.type == "page_view" and contains(event.url, "/pricing")', points: 60}
stages:
  rules:
    - {id: to_sql, to: sql, when: score >= 60}
  recycle:
    - {from: lost, after: 90d}
routing:
  default_team: inside-sales
journeys:
  - id: nurture
    enroll_when: stage == "new"
    steps:
      - {id: hello, type: send_email, template: welcome}
      - {id: wait, type: wait, duration: 2d}
      - {id: again, type: send_email, template: welcome}
"""
AIKO = Rep("rep-aiko", "Aiko", "aiko@x.test", "inside-sales", "Mina", "mina@x.test")
AIKO_KEY = Actor("key", "ak_aiko", "rep", "aiko's key", "rep-aiko")
BEN_KEY = Actor("key", "ak_ben", "rep", "ben's key", "rep-ben")
MANAGER = Actor("user", "mina", "manager", "mina")


def playbook(sales: str = "", **extra: str) -> CompiledPlaybook:
    return load_playbook_text(BASE + sales, version="sales", templates=TEMPLATES, teams={"inside-sales", "japan"})


def change(action: str, by: Actor = AIKO_KEY, **fields: Any) -> SalesChange:
    return SalesChange(f"c-{action}-{id(fields)}", action, by, T0, **fields)  # type: ignore[arg-type]


def sql_lead(pb: CompiledPlaybook, at: datetime = T0) -> LeadState:
    """A lead routed to rep-aiko: created, pricing page (SQL), the assignment answered."""
    state = LeadState(lead_id="lead-" + "1" * 32)
    decide(state, LeadUpserted({"email": "kim@x.test", "company": "Kim Co"}), at, pb)
    decision = decide(state, EventsReceived([TrackedEvent("e1", "page_view", at, "https://x.test/pricing")]), at, pb)
    ask = next(c for c in decision.commands if isinstance(c, AssignRep))
    decide(state, RepAssigned(ask.key, AIKO, "round-robin"), at, pb)
    return state


def refused(decision: Decision) -> tuple[str, str] | None:
    return (decision.refusal.kind, decision.refusal.message) if decision.refusal else None


def test_an_assignment_waits_for_the_reps_acceptance_and_the_notice_carries_what_its_links_sign() -> None:
    pb = playbook()
    state = LeadState(lead_id="lead-" + "1" * 32)
    decide(state, LeadUpserted({"email": "kim@x.test"}), T0, pb)
    ask = next(
        c
        for c in decide(
            state, EventsReceived([TrackedEvent("e", "page_view", T0, "https://x.test/pricing")]), T0, pb
        ).commands
        if isinstance(c, AssignRep)
    )
    notice = decide(state, RepAssigned(ask.key, AIKO, "round-robin"), T0, pb).commands
    mail = next(c for c in notice if isinstance(c, SendEmail) and c.kind == "rep_new_lead")
    assert mail.context["acceptance"]["assignment"] == ask.key and mail.context["acceptance"]["rep_id"] == "rep-aiko"
    assert awaiting_acceptance(state) and state.acceptance is not None and state.acceptance.due_at is None
    assert not any(name.startswith("sal_") for name in state.timers)  # no acceptance SLA in this playbook

    accepted = decide(state, change("accept"), T0 + timedelta(minutes=5), pb)
    assert refused(accepted) is None and state.acceptance.status == "accepted"
    assert state.acceptance.decided_by == "rep aiko's key"
    assert [t.event.type for t in accepted.touchpoints] == ["sales.accept"]
    again = decide(state, change("accept"), T0 + timedelta(minutes=6), pb)
    assert refused(again) == ("conflict", "no assignment of this lead waits for acceptance")


def test_another_rep_and_an_old_links_assignment_are_refused() -> None:
    pb = playbook()
    state = sql_lead(pb)
    assert refused(decide(state, change("accept", BEN_KEY), T0, pb)) == (
        "conflict",
        "the lead was offered to rep-aiko, not to you",
    )
    stale = decide(state, change("accept", assignment_key=state.lead_id + ":assign:0"), T0, pb)
    assert refused(stale) is not None and "no longer current" in refused(stale)[1]  # type: ignore[index]
    assert state.acceptance is not None and state.acceptance.status == "pending"  # refusals change nothing


def test_a_rejection_needs_a_listed_reason_and_a_note_for_other() -> None:
    pb = playbook()
    state = sql_lead(pb)
    assert refused(decide(state, change("reject"), T0, pb))[0] == "invalid"  # type: ignore[index]
    unknown = decide(state, change("reject", reason="too_busy"), T0, pb)
    assert refused(unknown) == (
        "invalid",
        "reason: 'too_busy' is not one of not_a_fit, duplicate, bad_data, no_budget, other"
        " (the playbook's sales section)",
    )
    assert refused(decide(state, change("reject", reason="other"), T0, pb)) == (
        "invalid",
        "note: the reason 'other' needs a note saying what it is",
    )
    assert state.owner is not None and state.acceptance is not None and state.acceptance.status == "pending"


def test_a_rejected_lead_is_rerouted_to_another_rep_of_the_team_as_a_normal_activity() -> None:
    pb = playbook()
    state = sql_lead(pb)
    decision = decide(state, change("reject", reason="not_a_fit"), T0 + timedelta(hours=1), pb)
    ask = next(c for c in decision.commands if isinstance(c, AssignRep))
    assert (ask.team, ask.exclude_rep_ids, ask.local) == ("inside-sales", ["rep-aiko"], False)
    assert state.owner is None and state.pending_assignment == ask.key
    assert state.followup is not None and state.followup.status == "cancelled"  # rules/followups.py
    assert not any(name.startswith("sla_") for name in state.timers)  # the old follow-up went with the owner
    assert decision.touchpoints[0].event.properties["reason"] == "not_a_fit"
    # The next rep gets the offer; rejecting it too keeps both out of the following reroute.
    decide(state, RepAssigned(ask.key, Rep("rep-ben", "Ben", "ben@x.test", "inside-sales"), "rr"), T0, pb)
    again = decide(state, change("reject", BEN_KEY, reason="duplicate"), T0 + timedelta(hours=2), pb)
    assert next(c for c in again.commands if isinstance(c, AssignRep)).exclude_rep_ids == ["rep-aiko", "rep-ben"]


@pytest.mark.parametrize(("on_reject", "stage"), [("recycle", "recycled"), ("disqualify", "disqualified")])
def test_a_rejection_can_recycle_or_disqualify_the_lead(on_reject: str, stage: str) -> None:
    pb = playbook(f"sales:\n  on_reject: {on_reject}\n")
    state = sql_lead(pb)
    decision = decide(state, change("reject", reason="no_budget"), T0, pb)
    assert state.stage == stage and state.owner is None
    assert not any(isinstance(c, AssignRep) for c in decision.commands)  # no bounce straight back to sales
    assert capacity_held(state, pb.stage_order).rep_id is None
    if on_reject == "recycle":
        assert state.score == 0 and state.score_changes[-1].rule_id == "recycle"
    else:
        assert state.outcome is not None and (state.outcome.kind, state.outcome.reason) == ("disqualified", "no_budget")


def test_won_records_the_deal_moves_to_the_won_stage_and_releases_the_reps_capacity() -> None:
    pb = playbook()
    state = sql_lead(pb)
    assert capacity_held(state, pb.stage_order).rep_id == "rep-aiko"
    won = change("won", amount=Decimal("12000.00"), currency="USD", close_date=date(2026, 3, 1), product="Pro")
    decision = decide(state, won, T0 + timedelta(days=10), pb)
    assert refused(decision) is None and state.stage == "customer"
    assert state.outcome is not None and (state.outcome.amount, state.outcome.currency) == (Decimal("12000.00"), "USD")
    assert state.owner is not None and state.owner.rep.id == "rep-aiko"  # credited, but no longer worked
    assert capacity_held(state, pb.stage_order).rep_id is None
    assert state.followup.status == "cancelled" and state.acceptance is None  # type: ignore[union-attr]  # nothing owed
    assert state.stage_changes[-1].reason == "won by rep aiko's key"
    entry = decision.touchpoints[0].event
    assert (entry.type, entry.name, entry.properties["amount"], entry.properties["by_id"]) == (
        "sales.won", "rep aiko's key", "12000.00", "ak_aiko"
    )  # fmt: skip
    assert refused(decide(state, change("lost", reason="timing"), T0, pb))[0] == "conflict"  # type: ignore[index]
    missing = decide(state, change("won", amount=None, currency="USD"), T0, pb)
    assert refused(missing)[0] == "conflict"  # type: ignore[index]  # closed first: the conflict is what to fix


def test_a_lost_lead_stays_lost_then_the_playbook_recycles_it_after_90_days() -> None:
    pb = playbook()
    state = sql_lead(pb)
    decide(state, change("lost", MANAGER, reason="competitor", note="went with Rival"), T0, pb)
    assert (state.stage, state.outcome.kind, state.outcome.by) == ("lost", "lost", "manager mina")  # type: ignore[union-attr]
    assert capacity_held(state, pb.stage_order).rep_id is None
    second = decide(state, change("lost", MANAGER, reason="timing"), T0, pb)
    assert refused(second)[0] == "conflict" and "already lost" in refused(second)[1]  # type: ignore[index]
    decide(state, TimerFired("recycle"), T0 + timedelta(days=90), pb)
    assert state.stage == "recycled" and state.owner is None


def test_setting_the_stage_checks_it_and_reopens_a_closed_lead() -> None:
    pb = playbook()
    state = sql_lead(pb)
    assert refused(decide(state, change("stage", stage="negotiation"), T0, pb))[0] == "invalid"  # type: ignore[index]
    assert refused(decide(state, change("stage", stage="sql"), T0, pb)) == (
        "conflict",
        "the lead is already in stage sql",
    )
    decide(state, change("stage", stage="opportunity", note="demo booked"), T0, pb)
    assert state.stage == "opportunity" and capacity_held(state, pb.stage_order).rep_id == "rep-aiko"
    decide(state, change("disqualify", reason="spam"), T0, pb)
    assert state.stage == "disqualified"
    decide(state, change("stage", MANAGER, stage="opportunity"), T0, pb)
    assert state.outcome is None and state.stage == "opportunity"


def test_a_reassignment_asks_for_the_named_rep_outside_the_local_activity_path() -> None:
    pb = playbook()
    state = sql_lead(pb)
    decision = decide(
        state, change("reassign", MANAGER, rep_id="rep-yui", team="japan", note="speaks Japanese"), T0, pb
    )
    ask = next(c for c in decision.commands if isinstance(c, AssignRep))
    assert (ask.team, ask.rep_id, ask.local) == ("japan", "rep-yui", False)
    assert ask.reason == "reassigned by manager mina: speaks Japanese"
    assert state.owner is None and state.acceptance is None and state.followup.status == "cancelled"  # type: ignore[union-attr]
    assert refused(decide(state, change("reassign", MANAGER), T0, pb))[0] == "invalid"  # type: ignore[index]


def test_paused_nurture_holds_the_journey_where_it_is_until_resumed() -> None:
    pb = playbook()
    state = LeadState(lead_id="lead-" + "2" * 32)
    first = decide(state, LeadUpserted({"email": "ann@x.test"}), T0, pb)
    assert [c.template for c in first.commands if isinstance(c, SendEmail)] == ["welcome"]
    decide(state, change("pause_nurture", MANAGER, reason="asked by phone"), T0, pb)
    assert refused(decide(state, change("pause_nurture", MANAGER), T0, pb))[0] == "conflict"  # type: ignore[index]
    held = decide(state, TimerFired("journey:nurture"), T0 + timedelta(days=2), pb)
    assert not held.commands and state.journeys["nurture"].step == 2
    resumed = decide(state, change("resume_nurture", MANAGER), T0 + timedelta(days=5), pb)
    assert [c.template for c in resumed.commands if isinstance(c, SendEmail)] == ["welcome"]
    assert refused(decide(state, change("resume_nurture", MANAGER), T0, pb)) == ("conflict", "nurture is not paused")


SLA = """\
sales:
  acceptance: {within: 4h, remind_before: 1h, reroute_after: 2h, max_reroutes: 1}
"""


def test_the_acceptance_sla_reminds_escalates_to_the_manager_then_reroutes_once() -> None:
    pb = playbook(SLA)
    state = sql_lead(pb)
    assert state.timers[TIMER_SAL_REMIND] == T0 + timedelta(hours=3) and state.timers[TIMER_SAL_DUE] == T0 + timedelta(
        hours=4
    )
    remind = decide(state, TimerFired(TIMER_SAL_REMIND), T0 + timedelta(hours=3), pb).commands
    assert [(m.kind, m.to) for m in remind if isinstance(m, SendEmail)] == [("sal_reminder", "aiko@x.test")]
    escalate = decide(state, TimerFired(TIMER_SAL_DUE), T0 + timedelta(hours=4), pb).commands
    assert [(m.kind, m.to) for m in escalate if isinstance(m, SendEmail)] == [("sal_escalation", "mina@x.test")]
    assert "acceptance" not in escalate[0].context  # type: ignore[union-attr]  # no rep-signed links to the manager
    reroute = decide(state, TimerFired(TIMER_SAL_REROUTE), T0 + timedelta(hours=6), pb).commands
    ask = next(c for c in reroute if isinstance(c, AssignRep))
    assert ask.exclude_rep_ids == ["rep-aiko"] and "not accepted by rep-aiko within 4h" in ask.reason
    assert state.owner is None and state.acceptance is not None and state.acceptance.status == "rerouted"
    # The next rep lets it time out too: max_reroutes 1, so it stays with them (escalated, not rerouted).
    decide(
        state,
        RepAssigned(ask.key, Rep("rep-ben", "Ben", "ben@x.test", "inside-sales", "Mina", "mina@x.test"), "rr"),
        T0,
        pb,
    )
    decide(state, TimerFired(TIMER_SAL_DUE), T0 + timedelta(hours=10), pb)
    last = decide(state, TimerFired(TIMER_SAL_REROUTE), T0 + timedelta(hours=12), pb)
    assert not any(isinstance(c, AssignRep) for c in last.commands) and state.owner.rep.id == "rep-ben"  # type: ignore[union-attr]


def test_an_accepted_lead_hears_no_more_from_the_acceptance_sla() -> None:
    pb = playbook(SLA)
    state = sql_lead(pb)
    decide(state, change("accept"), T0 + timedelta(hours=1), pb)
    assert not any(name.startswith("sal_") for name in state.timers)


def test_the_sales_section_is_validated_at_its_lines() -> None:
    with pytest.raises(PlaybookError) as caught:
        load_playbook_text(
            BASE + "sales:\n  outcomes:\n    lost: {stage: gone}\n  reject_reasons: [Not A Fit]\n",
            version="bad", templates=TEMPLATES, teams={"inside-sales"},
        )  # fmt: skip
    text = str(caught.value)
    assert "reasons are short snake_case words" in text
    with pytest.raises(PlaybookError) as caught:
        load_playbook_text(BASE + "sales:\n  outcomes:\n    lost: {stage: gone}\n", version="bad", templates=TEMPLATES)
    assert '"gone" is not a stage' in str(caught.value) and "line" in str(caught.value)
    with pytest.raises(PlaybookError) as caught:
        load_playbook_text(
            BASE + SLA, version="bad", templates={"welcome", "rep_new_lead", "sla_reminder", "sla_escalation"}
        )
    assert 'no email template "sal_reminder"' in str(caught.value)


def test_the_shipped_sales_playbook_and_the_default_validate_against_the_templates() -> None:
    from activities.rendering import EmailRenderer
    from settings import ROOT

    templates = EmailRenderer(ROOT / "templates").available()
    assert {"sal_reminder", "sal_escalation"} <= templates
    for name in ("sales_handoff.yaml", "default.yaml"):
        pb = load_playbook_text((ROOT / "playbooks" / name).read_text(encoding="utf-8"), templates=templates)
        assert "lost" in pb.model.stages.side and pb.model.sales.outcomes.lost.stage == "lost"
