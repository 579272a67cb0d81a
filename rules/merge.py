"""Merging two records of one person (issue 9 item 5): the survivor absorbs the duplicate. Pure.

``close_as_merged`` ends the duplicate (it hands over the state it had); ``absorb`` folds that state into
the survivor. What wins, and why:

- **Score: the duplicate's explained changes are carried over, not its events re-run.** A lead's state keeps
  no events (only their counts and times) and the store's touchpoints are out of reach of pure code, so a
  re-run could only be approximate; the duplicate's changes already say which rule scored which event. Each
  carried change keeps its rule, event and reason ("merged from <id>: ..."), and passes the survivor's rules
  once more: an event both leads scored counts once, and a rule's ``max_total``/``max_per_day`` counts the
  hits of both leads. The duplicate's decay and resets carry as they were, never taking the carried part
  below zero, so the survivor's score is still exactly the sum of its explained changes.
- **Consent: the stricter wins.** Both leads' evidence is kept in time order; when either lead's own records
  said "opted out", a record at merge time keeps the survivor opted out (a later opt-in on the other record
  must not undo an unsubscribe). Complaints carry (they are the person's); hard bounces do not (they concern
  the other address).
- **Owner: the survivor's**; with none (and none being assigned) the duplicate's owner is asked for by name
  (``MergeOutcome.adopt_owner``: the engine requests that assignment, so capacity and availability apply).
- **Attributes: the survivor's**, missing ones filled from the duplicate, each with its origin.
- **Stage: the further along the funnel** (a lead never moves back by being merged).
- **Journeys: the survivor's**; a journey only the duplicate was in continues where it was (its wait carried),
  so nobody gets a welcome mail twice.
- Event dedupe, rule hits and event times, nurture sends (frequency caps) and first/latest source merge too.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace
from datetime import datetime

from rules.consent import effective_status, record_consent
from rules.deliverability import record_feedback
from rules.engine import HISTORY_PER_TYPE, JOURNEY_TIMER_PREFIX, _set_stage
from rules.model import AttributeOrigin, LeadMerged, LeadState, Owner, ScoreChange, SourceTouch
from rules.playbook import CompiledPlaybook
from rules.send_window import MAX_SENT_KEPT

MERGED_STAGE_REASON = "merged from {duplicate}: it was at {stage}"


@dataclass
class MergeOutcome:
    """What the engine still has to do after ``absorb``: ask for the duplicate's owner, if the survivor has none."""

    adopt_owner: Owner | None = None


def merge_refusal(survivor: LeadState, duplicate_id: str) -> str | None:
    """Why ``survivor`` cannot absorb ``duplicate_id`` now, or None (the survivor's side of validation)."""
    if survivor.created_at is None:
        return f"no lead {survivor.lead_id} yet: only events were posted"
    if survivor.merged_into:
        return f"lead {survivor.lead_id} was merged into {survivor.merged_into}: merge into that lead"
    if duplicate_id == survivor.lead_id:
        return "a lead cannot be merged into itself"
    if duplicate_id in survivor.merged_from:
        return f"lead {duplicate_id} is already merged into {survivor.lead_id}"
    return None


def handover_refusal(duplicate: LeadState) -> str | None:
    """Why ``duplicate`` cannot hand itself over, or None (the duplicate's side of validation)."""
    if duplicate.created_at is None:
        return f"no lead {duplicate.lead_id} yet: only events were posted"
    if duplicate.merged_into:
        return f"lead {duplicate.lead_id} is already merged into {duplicate.merged_into}"
    return None


def close_as_merged(state: LeadState, survivor_id: str, now: datetime) -> LeadState:
    """End ``state`` as merged into ``survivor_id``; returns the state as it was, for the survivor.

    The duplicate keeps its history (stage, score, changes) for its own view, but no owner, no follow-up and
    no timers: nothing it started may fire after the merge (the store side is released by an activity)."""
    # A shallow copy: the duplicate takes no input after this, so the two share nothing that changes; the
    # fields closed below get new objects instead of being changed in place (a deep copy cost ~0.1 s here).
    handed_over = replace(state)
    state.merged_into = survivor_id
    state.owner, state.followup, state.pending_assignment, state.queued_team = None, None, None, None
    state.timers = {}
    reason = f"merged into {survivor_id}"
    state.journeys = {
        journey_id: replace(run, status="exited", ended_at=now, exit_reason=reason, waiting_for=None)
        if run.status == "active"
        else run
        for journey_id, run in state.journeys.items()
    }
    state.updated_at = now
    return handed_over


def absorb(state: LeadState, merged: LeadMerged, now: datetime, pb: CompiledPlaybook) -> MergeOutcome:
    """Fold the duplicate's state into ``state`` (the survivor). Idempotent per duplicate id."""
    duplicate, duplicate_id = merged.duplicate, merged.duplicate_id
    if duplicate_id == state.lead_id or duplicate_id in state.merged_from:
        return MergeOutcome()
    state.merged_from.append(duplicate_id)
    _fill_attributes(state, duplicate, duplicate_id)
    _carry_score(state, duplicate, duplicate_id, now, pb)
    _keep_stricter_consent(state, duplicate, duplicate_id, now)
    for feedback in duplicate.email_feedback:
        if feedback.kind == "complaint":
            record_feedback(state, feedback, now)
    state.seen_events.absorb(duplicate.seen_events)
    state.seen_events.remember(duplicate.seen_event_ids, now)
    for event_type, times in duplicate.event_times.items():
        state.event_times[event_type] = sorted(state.event_times.get(event_type, []) + times)[-HISTORY_PER_TYPE:]
    state.nurture_sent = sorted(state.nurture_sent + duplicate.nurture_sent)[-MAX_SENT_KEPT:]
    state.original_source = _earliest(state.original_source, duplicate.original_source)
    state.latest_source = _latest(state.latest_source, duplicate.latest_source)
    if duplicate.created_at is not None and state.created_at is not None:
        state.created_at = min(state.created_at, duplicate.created_at)
    _carry_journeys(state, duplicate)
    order = pb.stage_order
    if duplicate.stage in order and state.stage in order and order.index(duplicate.stage) > order.index(state.stage):
        reason = MERGED_STAGE_REASON.format(duplicate=duplicate_id, stage=duplicate.stage)
        _set_stage(state, duplicate.stage, now, reason, pb)
    adopt = None
    if state.owner is None and state.pending_assignment is None and duplicate.owner is not None:
        adopt = duplicate.owner
    return MergeOutcome(adopt)


def _fill_attributes(state: LeadState, duplicate: LeadState, duplicate_id: str) -> None:
    for key, value in duplicate.attributes.items():
        if value is None or value == "" or state.attributes.get(key) not in (None, ""):
            continue
        state.attributes[key] = value
        origin = duplicate.attribute_origins.get(key)
        if origin is not None:
            state.attribute_origins[key] = AttributeOrigin(origin.at, f"{origin.origin} (merged from {duplicate_id})")


def _carry_score(
    state: LeadState, duplicate: LeadState, duplicate_id: str, now: datetime, pb: CompiledPlaybook
) -> None:
    specs = {rule.spec.id: rule.spec for rule in pb.scoring}
    counted = {(c.rule_id, c.event_id) for c in state.score_changes if c.event_id}
    carried = 0.0  # what the duplicate's changes added so far: its decay never takes more than that
    for change in duplicate.score_changes:
        if change.points > 0:
            if change.event_id and (change.rule_id, change.event_id) in counted:
                continue  # the same event scored by the same rule on both leads counts once
            spec = specs.get(change.rule_id)
            if spec is not None:
                hits = state.rule_hits.setdefault(spec.id, [])
                if spec.max_total is not None and len(hits) >= spec.max_total:
                    continue
                if spec.max_per_day is not None:
                    if sum(1 for h in hits if h.date() == change.at.date()) >= spec.max_per_day:
                        continue
                hits.append(change.at)
                hits.sort()
                del hits[: -max(spec.max_total or 0, spec.max_per_day or 0, 1) * 2]
        applied = round(max(change.points, -carried), 2)
        if applied == 0:
            continue
        carried = round(carried + applied, 2)
        state.score = round(state.score + applied, 2)
        seq = state.score_changes[-1].seq + 1 if state.score_changes else 1
        reason = f"merged from {duplicate_id}: {change.reason}"
        state.score_changes.append(ScoreChange(seq, now, applied, state.score, change.rule_id, reason, change.event_id))


def _keep_stricter_consent(state: LeadState, duplicate: LeadState, duplicate_id: str, now: datetime) -> None:
    ours, our_record = effective_status(state.consents)
    theirs, their_record = effective_status(duplicate.consents)
    for record in duplicate.consents:
        record_consent(state, record, now)
    if effective_status(state.consents)[0] == "opted_out":
        return
    deciding = their_record if theirs == "opted_out" else our_record if ours == "opted_out" else None
    if deciding is not None:
        wording = f"kept on merging {duplicate_id} into {state.lead_id}: an opt-out on either record stays"
        record_consent(state, replace(deciding, at=now, wording=wording, form_id=None), now)


def _earliest(ours: SourceTouch | None, theirs: SourceTouch | None) -> SourceTouch | None:
    if ours is None or (theirs is not None and theirs.at and ours.at and theirs.at < ours.at):
        return theirs
    return ours


def _latest(ours: SourceTouch | None, theirs: SourceTouch | None) -> SourceTouch | None:
    if ours is None or (theirs is not None and theirs.at and ours.at and theirs.at > ours.at):
        return theirs
    return ours


def _carry_journeys(state: LeadState, duplicate: LeadState) -> None:
    for journey_id, run in duplicate.journeys.items():
        if journey_id in state.journeys:
            continue
        state.journeys[journey_id] = copy.deepcopy(run)
        timer = JOURNEY_TIMER_PREFIX + journey_id
        if timer in duplicate.timers:
            state.timers[timer] = duplicate.timers[timer]
