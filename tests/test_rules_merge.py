"""rules/merge.py: what survives when a duplicate lead is merged into another (pure, through decide())."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rules import load_playbook_text
from rules.consent import effective_status
from rules.dedupe import EXACT_PER_DAY, SeenEvents
from rules.engine import JOURNEY_TIMER_PREFIX, TIMER_SLA_DUE
from rules.merge import absorb, close_as_merged, handover_refusal, merge_refusal
from rules.model import (
    AssignRep,
    ConsentRecord,
    ConsentRecorded,
    EmailFeedback,
    EventsReceived,
    LeadMerged,
    LeadUpserted,
    TrackedEvent,
)
from rules.playbook import CompiledPlaybook
from tests.test_rules_engine import SMALL, TEAMS, TEMPLATES, Lead, only, recorded_sum

T0 = datetime(2026, 4, 1, 9, 0, tzinfo=UTC)
ANA = {"email": "ana@example.com", "first_name": "Ana", "title": "Engineer"}
ANA_OLD = {"email": "ana.old@example.com", "first_name": "Ana", "company": "Acme", "phone": "+81 3 1234 5678"}


@pytest.fixture(scope="module")
def pb() -> CompiledPlaybook:
    return load_playbook_text(SMALL, version="small-v1", templates=TEMPLATES, teams=TEAMS)


def make_lead(pb: CompiledPlaybook, lead_id: str, attributes: dict[str, Any] | None, now: datetime = T0) -> Lead:
    lead = Lead(pb, None, now)
    lead.state.lead_id = lead_id
    if attributes is not None:
        lead.send(LeadUpserted(dict(attributes), origin="form"))
    return lead


def merge(survivor: Lead, duplicate: Lead, at: datetime | None = None) -> list[Any]:
    """What the workflows do: the duplicate closes and hands over, the survivor absorbs."""
    at = at or max(survivor.now, duplicate.now)
    handed_over = close_as_merged(duplicate.state, survivor.state.lead_id, at)
    return survivor.send(LeadMerged(duplicate.state.lead_id, handed_over), at)


def test_score_is_the_sum_of_both_leads_explained_changes(pb: CompiledPlaybook) -> None:
    survivor, duplicate = make_lead(pb, "S", ANA), make_lead(pb, "D", ANA_OLD)
    survivor.event("download", id_="s-1")
    duplicate.event("download", id_="d-1")
    duplicate.event("page_view", "https://x.test/pricing", id_="d-2")
    merge(survivor, duplicate)
    state = survivor.state
    assert state.score == 15 + 15 + 40 == recorded_sum(state)
    carried = [c for c in state.score_changes if c.reason.startswith("merged from D")]
    assert [(c.rule_id, c.event_id, c.points) for c in carried] == [("download", "d-1", 15), ("pricing", "d-2", 40)]
    assert [c.seq for c in state.score_changes] == [1, 2, 3]  # the store keys changes by (lead, seq)
    assert state.score_changes[-1].score_after == state.score
    # Past the SQL line: the merged lead moves on by its own rules and is routed.
    assert state.stage == "sql" and only(survivor.commands, AssignRep)


def test_caps_count_the_hits_of_both_leads_and_one_event_scores_once(pb: CompiledPlaybook) -> None:
    survivor, duplicate = make_lead(pb, "S", ANA), make_lead(pb, "D", ANA_OLD)
    survivor.event("webinar", id_="w-s")
    duplicate.event("webinar", id_="w-d")  # max_total 1: the survivor already had it
    survivor.event("download", id_="same")
    duplicate.event("download", id_="same")  # one event posted to both records
    merge(survivor, duplicate)
    assert survivor.state.score == 20 + 15 == recorded_sum(survivor.state)
    assert len(survivor.state.rule_hits["webinar"]) == 1


def test_the_duplicates_decay_carries_but_never_below_what_it_added(pb: CompiledPlaybook) -> None:
    survivor, duplicate = make_lead(pb, "S", ANA), make_lead(pb, "D", ANA_OLD)
    survivor.event("download", id_="s-1")
    duplicate.event("webinar", id_="w-d")
    survivor.event("webinar", id_="w-s")  # the survivor's own webinar: the duplicate's is capped away
    duplicate.fire("decay", T0 + timedelta(days=10))  # the duplicate halves its 20 points
    merge(survivor, duplicate)
    assert survivor.state.score == 35 == recorded_sum(survivor.state)  # no negative carry without its gain
    assert all(c.score_after >= 0 for c in survivor.state.score_changes)


def test_an_opt_out_on_the_duplicate_stays_even_after_a_later_opt_in(pb: CompiledPlaybook) -> None:
    survivor, duplicate = make_lead(pb, "S", ANA), make_lead(pb, "D", ANA_OLD)
    duplicate.send(ConsentRecorded(ConsentRecord("opted_out", "unsubscribe_link", T0)))
    survivor.send(ConsentRecorded(ConsentRecord("opted_in", "form", T0 + timedelta(hours=1))), T0 + timedelta(hours=1))
    merge(survivor, duplicate)
    status, record = effective_status(survivor.state.consents)
    assert status == "opted_out" and record is not None and record.source == "unsubscribe_link"
    assert "an opt-out on either record stays" in (record.wording or "")
    assert [c.source for c in survivor.state.consents][:2] == ["unsubscribe_link", "form"]  # all evidence kept


def test_an_opt_out_on_the_survivor_stays_too(pb: CompiledPlaybook) -> None:
    survivor, duplicate = make_lead(pb, "S", ANA), make_lead(pb, "D", ANA_OLD)
    survivor.send(ConsentRecorded(ConsentRecord("opted_out", "api", T0)))
    duplicate.send(ConsentRecorded(ConsentRecord("opted_in", "form", T0 + timedelta(hours=1))), T0 + timedelta(hours=1))
    merge(survivor, duplicate)
    assert effective_status(survivor.state.consents)[0] == "opted_out"


def test_complaints_carry_hard_bounces_of_the_other_address_do_not(pb: CompiledPlaybook) -> None:
    survivor, duplicate = make_lead(pb, "S", ANA), make_lead(pb, "D", ANA_OLD)
    duplicate.send(EmailFeedback("hard_bounce", T0, "550 no such user"))
    duplicate.send(EmailFeedback("complaint", T0, "spam button"))
    merge(survivor, duplicate)
    assert [f.kind for f in survivor.state.email_feedback] == ["complaint"]
    assert effective_status(survivor.state.consents)[0] == "opted_out"


def test_attributes_are_the_survivors_filled_from_the_duplicate_with_origins(pb: CompiledPlaybook) -> None:
    survivor, duplicate = make_lead(pb, "S", ANA), make_lead(pb, "D", ANA_OLD)
    merge(survivor, duplicate, T0 + timedelta(days=1))
    attributes, origins = survivor.state.attributes, survivor.state.attribute_origins
    assert attributes["email"] == "ana@example.com" and attributes["company"] == "Acme"
    assert attributes["phone"] == duplicate.state.attributes["phone"]
    assert origins["company"].at == T0 and origins["company"].origin == "form (merged from D)"
    assert origins["email"].origin == "form"


def test_an_unowned_survivor_asks_for_the_duplicates_owner_by_name(pb: CompiledPlaybook) -> None:
    survivor, duplicate = make_lead(pb, "S", ANA), make_lead(pb, "D", ANA_OLD)
    duplicate.to_sql()
    duplicate.assign("rep-ben")
    commands = merge(survivor, duplicate)
    (request,) = only(commands, AssignRep)
    assert (request.rep_id, request.team) == ("rep-ben", "inside-sales")
    assert request.reason == "merged from D: its owner"
    assert survivor.state.pending_assignment == request.key and survivor.state.stage == "sql"


def test_an_owned_survivor_keeps_its_owner(pb: CompiledPlaybook) -> None:
    survivor, duplicate = make_lead(pb, "S", ANA), make_lead(pb, "D", ANA_OLD)
    for lead, rep in ((survivor, "rep-aiko"), (duplicate, "rep-ben")):
        lead.to_sql()
        lead.assign(rep)
    assert not only(merge(survivor, duplicate), AssignRep)
    assert survivor.state.owner is not None and survivor.state.owner.rep.id == "rep-aiko"


def test_the_duplicate_closes_without_owner_follow_up_or_timers(pb: CompiledPlaybook) -> None:
    duplicate = make_lead(pb, "D", ANA_OLD)
    duplicate.to_sql()
    duplicate.assign("rep-ben")
    assert duplicate.state.followup is not None and TIMER_SLA_DUE in duplicate.state.timers
    handed_over = close_as_merged(duplicate.state, "S", T0 + timedelta(hours=1))
    state = duplicate.state
    assert state.merged_into == "S" and state.owner is None and state.followup is None and state.timers == {}
    assert all(run.status != "active" for run in state.journeys.values())
    assert handed_over.owner is not None and handed_over.followup is not None and handed_over.merged_into is None
    assert handover_refusal(state) == "lead D is already merged into S"


def test_a_journey_only_the_duplicate_was_in_continues_where_it_was(pb: CompiledPlaybook) -> None:
    duplicate = make_lead(pb, "D", ANA_OLD)  # welcome sent, waiting two days
    wait_until = duplicate.state.timers[JOURNEY_TIMER_PREFIX + "nurture"]
    survivor = make_lead(pb, "S", None)
    survivor.send(EventsReceived([TrackedEvent("s-1", "download", T0)]))  # events only: not yet a lead
    survivor.send(LeadUpserted({"email": "ana@example.com", "plan": "x"}), T0)
    survivor.state.journeys.clear()  # as if the survivor never met the journey's enrolment condition
    survivor.state.timers.pop(JOURNEY_TIMER_PREFIX + "nurture", None)
    commands = merge(survivor, duplicate, T0 + timedelta(hours=1))
    run = survivor.state.journeys["nurture"]
    assert run.step == 2 and survivor.state.timers[JOURNEY_TIMER_PREFIX + "nurture"] == wait_until
    assert commands == []  # the welcome is not sent a second time


def test_the_stage_is_the_further_along_the_funnel(pb: CompiledPlaybook) -> None:
    survivor, duplicate = make_lead(pb, "S", ANA), make_lead(pb, "D", ANA_OLD)
    duplicate.event("page_view", "https://x.test/pricing")
    assert duplicate.state.stage == "mql"
    duplicate.state.score_changes.clear()  # not the score: the stage itself carries
    duplicate.state.score = 0
    merge(survivor, duplicate)
    assert survivor.state.stage == "mql"
    assert survivor.state.stage_changes[-1].reason == "merged from D: it was at mql"


def test_events_either_lead_counted_are_duplicates_for_the_survivor(pb: CompiledPlaybook) -> None:
    survivor, duplicate = make_lead(pb, "S", ANA), make_lead(pb, "D", ANA_OLD)
    duplicate.event("download", id_="retried")
    merge(survivor, duplicate)
    score = survivor.state.score
    survivor.event("download", id_="retried")  # the client retries the post, now to the survivor
    assert survivor.state.score == score


def test_absorbing_the_same_duplicate_twice_changes_nothing(pb: CompiledPlaybook) -> None:
    survivor, duplicate = make_lead(pb, "S", ANA), make_lead(pb, "D", ANA_OLD)
    duplicate.event("download", id_="d-1")
    handed_over = close_as_merged(duplicate.state, "S", T0)
    survivor.send(LeadMerged("D", handed_over))
    once = (survivor.state.score, len(survivor.state.score_changes), list(survivor.state.consents))
    outcome = absorb(survivor.state, LeadMerged("D", handed_over), T0, pb)
    assert outcome.adopt_owner is None
    assert (survivor.state.score, len(survivor.state.score_changes), survivor.state.consents) == once
    assert survivor.state.merged_from == ["D"]


def test_refusals_say_what_is_wrong(pb: CompiledPlaybook) -> None:
    survivor, ghost = make_lead(pb, "S", ANA), make_lead(pb, "G", None)
    assert merge_refusal(survivor.state, "S") == "a lead cannot be merged into itself"
    assert merge_refusal(ghost.state, "D") == "no lead G yet: only events were posted"
    assert handover_refusal(ghost.state) == "no lead G yet: only events were posted"
    survivor.state.merged_from.append("D")
    assert merge_refusal(survivor.state, "D") == "lead D is already merged into S"
    survivor.state.merged_into = "X"
    assert merge_refusal(survivor.state, "E") == "lead S was merged into X: merge into that lead"
    assert merge_refusal(make_lead(pb, "T", ANA).state, "D") is None


EVENT_TYPES = st.sampled_from(["download", "email_click", "webinar", "page_view", "email_open", "careers"])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.lists(st.tuples(EVENT_TYPES, st.integers(0, 5), st.integers(0, 30)), max_size=12),
    st.lists(st.tuples(EVENT_TYPES, st.integers(0, 5), st.integers(0, 30)), max_size=12),
)
def test_after_any_merge_the_score_is_the_sum_of_its_explained_changes(
    pb: CompiledPlaybook, ours: list[tuple[str, int, int]], theirs: list[tuple[str, int, int]]
) -> None:
    survivor, duplicate = make_lead(pb, "S", ANA), make_lead(pb, "D", ANA_OLD)
    for lead, events in ((survivor, ours), (duplicate, theirs)):
        for kind, event_id, day in sorted(events, key=lambda e: e[2]):
            at = T0 + timedelta(days=day)
            url = "https://x.test/careers" if kind == "careers" else "https://x.test/pricing"
            kind = "page_view" if kind == "careers" else kind
            lead.send(EventsReceived([TrackedEvent(f"e{event_id}", kind, at, url=url)]), at)
            if "decay" in lead.state.timers and lead.state.timers["decay"] <= at:
                lead.fire("decay", at)
    merge(survivor, duplicate, T0 + timedelta(days=31))
    state = survivor.state
    assert state.score >= 0 and state.score == recorded_sum(state)
    assert [c.seq for c in state.score_changes] == list(range(1, len(state.score_changes) + 1))
    assert all(c.score_after >= 0 for c in state.score_changes)
    assert sum(1 for c in only(survivor.commands, AssignRep)) <= 2  # routed once, plus at most the owner ask


def test_a_post_under_another_address_never_replaces_the_leads_email(pb: CompiledPlaybook) -> None:
    lead = make_lead(pb, "S", ANA)
    lead.send(LeadUpserted({"email": "ana.old@example.com", "company": "Acme"}))  # an old address resolved here
    assert lead.state.attributes["email"] == "ana@example.com" and lead.state.attributes["company"] == "Acme"
    lead.send(LeadUpserted({"email": "ana@newjob.example"}, email_change=True))  # PATCH /v1/leads/{id}
    assert lead.state.attributes["email"] == "ana@newjob.example"
    assert lead.state.attribute_origins["email"].origin == "api"


def test_seen_events_absorb_exact_and_bloom_days() -> None:
    ours, theirs = SeenEvents(), SeenEvents()
    busy = [f"busy-{i}" for i in range(EXACT_PER_DAY + 10)]  # more than a day keeps exactly: a Bloom day
    for event_id in busy:
        theirs.first_time(event_id, T0)
    theirs.first_time("yesterday", T0 - timedelta(days=1))
    ours.first_time("mine", T0)
    ours.absorb(theirs)
    assert all(ours.seen(event_id, T0) for event_id in [*busy, "yesterday", "mine"])
    assert not ours.seen("never", T0)
    assert [d.day for d in ours.days] == sorted(d.day for d in ours.days)
