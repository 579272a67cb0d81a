"""``decide``: the lead state machine. Pure: no I/O, no clock (``now`` is given), no randomness.

``decide(state, input, now, playbook) -> Decision(state, commands)``. The caller owns ``state``; decide
updates it in place and returns it with the commands (data) the shell must carry out. Every score change
records the rule and the event behind it, so "why is this lead at 73?" always has an answer.
"""

from __future__ import annotations

import hashlib
from bisect import bisect_left
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from rules import send_window
from rules.assignment import capacity_held
from rules.clock import add_business_time, next_weekday_time, zone
from rules.consent import nurture_blocked, record_consent
from rules.deliverability import record_feedback, undeliverable
from rules.engagement import tracking_for, variant_label
from rules.expressions import RuleArgumentError, parse_duration
from rules.followups import TIMER_SLA_DUE, TIMER_SLA_REASSIGN, TIMER_SLA_REMIND, cancel_if_not_owed
from rules.followups import cancel as cancel_followup
from rules.locale import lead_locale
from rules.model import (
    NURTURE_KIND,
    AssignmentFailed,
    AssignRep,
    Command,
    ConsentRecorded,
    EmailFeedback,
    EventsReceived,
    FollowUp,
    Input,
    JourneyRun,
    LeadMerged,
    LeadSnapshot,
    LeadState,
    LeadUpserted,
    NurtureHold,
    Owner,
    RepAssigned,
    RuleError,
    SalesChange,
    ScoreChange,
    SendEmail,
    SourceTouch,
    StageChange,
    TimerFired,
    TouchLogged,
    Touchpoint,
    TrackedEvent,
)
from rules.playbook import GRADE_ORDER, CompiledJourney, CompiledPlaybook
from rules.profile import give_tracking_source, keeping_email, merge_attributes, note_set, note_touch
from rules.reenrolment import enrol_again, may_enrol_again, next_run
from rules.sources import touch_from_event

HISTORY_PER_TYPE = 200  # event times kept per type for count(..., days=N)
MAX_JOURNEY_STEPS_PER_INPUT = 50
MAX_RULE_ERRORS = 20  # rule errors kept per lead (the latest)
MAX_RULE_ERROR_TEXT = 300
REACT_PASSES = 3  # journey steps can move the stage or score; let the others react, boundedly
NURTURE_HOLDS_KEPT = 20  # recent skipped/deferred nurture sends shown in the live view

TIMER_DECAY = "decay"
TIMER_RECYCLE = "recycle"
TIMER_ASSIGN_RETRY = "assign_retry"
JOURNEY_TIMER_PREFIX = "journey:"


@dataclass
class Decision:
    state: LeadState
    commands: list[Command] = field(default_factory=list)
    # Ids of events in the input that were already counted in the dedupe window (and so ignored).
    duplicate_event_ids: list[str] = field(default_factory=list)
    # Events (and rep touches) this input added, for the read model; duplicates are not among them.
    touchpoints: list[Touchpoint] = field(default_factory=list)
    # Why a SalesChange was refused (rules/sales.py); the state is then unchanged by it.
    refusal: Any = None


def decide(state: LeadState, inp: Input, now: datetime, pb: CompiledPlaybook) -> Decision:
    out: list[Command] = []
    duplicates: list[str] = []
    touchpoints: list[Touchpoint] = []
    refused = None
    if not state.playbook_version:
        state.playbook_version = pb.version
    if isinstance(inp, LeadUpserted):
        if inp.consent is not None:
            record_consent(state, inp.consent, now)
        _upsert(state, inp, now, pb)
    elif isinstance(inp, ConsentRecorded):
        record_consent(state, inp.record, now)
    elif isinstance(inp, EmailFeedback):
        record_feedback(state, inp, now)
    elif isinstance(inp, EventsReceived):
        origin = inp.origin or "tracking"
        creating = state.created_at is None
        if inp.attributes:
            _upsert(state, LeadUpserted(inp.attributes, origin=origin), now, pb)
        if state.seen_event_ids:  # a state recorded before the dedupe window
            state.seen_events.remember(state.seen_event_ids, now)
            state.seen_event_ids = []
        for event in inp.events:
            if not state.seen_events.first_time(event.id, now):
                duplicates.append(event.id)
                continue
            touch = touch_from_event(pb.sources, event, min(event.at, now))
            if touch is not None:
                note_touch(state, touch, pb.sources)
            _score_event(state, event, now, pb, touch)
            touchpoints.append(Touchpoint(event, now, touch))
        if creating and state.created_at is not None:
            give_tracking_source(state, now, origin, pb.sources)
    elif isinstance(inp, TimerFired):
        _timer(state, inp.name, now, pb, out)
    elif isinstance(inp, TouchLogged):
        _touch(state, inp, now)
        note = {"note": inp.note} if inp.note else {}
        touchpoints.append(
            Touchpoint(TrackedEvent(inp.touch_id, f"touch.{inp.kind}", inp.at, None, inp.rep_id, note), now)
        )
    elif isinstance(inp, RepAssigned):
        _assigned(state, inp, now, pb, out)
    elif isinstance(inp, AssignmentFailed):
        _assignment_failed(state, inp, now, pb, out)
    elif isinstance(inp, LeadMerged):
        _merged(state, inp, now, pb, out)
    elif isinstance(inp, SalesChange):
        from rules.sales import apply_change  # rules.sales builds on this module's helpers

        refused, entry = apply_change(state, inp, now, pb, out)
        if refused is not None:
            return Decision(state, out, refusal=refused)
        touchpoints.append(entry)  # type: ignore[arg-type]
    _react(state, now, pb, out)
    state.updated_at = now
    return Decision(state, out, duplicates, touchpoints, refused)


def _merged(state: LeadState, inp: LeadMerged, now: datetime, pb: CompiledPlaybook, out: list[Command]) -> None:
    """A duplicate handed over (rules/merge.py decides what wins); then the survivor is graded again and, when
    it had no owner, asks for the duplicate's owner by name."""
    from rules.merge import absorb  # rules.merge builds on this module's helpers: import it when first used

    outcome = absorb(state, inp, now, pb)
    _grade(state, now, pb)
    owner = outcome.adopt_owner
    if owner is not None:
        reason = f"merged from {inp.duplicate_id}: its owner"
        _request_assignment(state, owner.rep.team, pb.model.routing.strategy, reason, [], out, owner.rep.id)


# ------------------------------------------------------------------ attributes and grade


def _upsert(state: LeadState, inp: LeadUpserted, now: datetime, pb: CompiledPlaybook) -> None:
    if state.created_at is None:
        state.created_at = now
        state.attributes.setdefault("created_at", now.isoformat())
    attributes = inp.attributes if inp.email_change else keeping_email(state, inp.attributes)
    merge_attributes(state, attributes, now, inp.origin or "api", pb.sources)
    _grade(state, now, pb)
    if pb.model.scoring.decay and TIMER_DECAY not in state.timers:
        state.timers[TIMER_DECAY] = now + parse_duration(pb.model.scoring.decay.every)


def _grade(state: LeadState, now: datetime, pb: CompiledPlaybook) -> None:
    points, reasons = 0.0, []
    for rule in pb.grading:
        if _holds(rule.test, state, now, rule_id=rule.spec.id, grade=None):
            points += rule.spec.points
            reasons.append(rule.spec.id)
    thresholds = pb.model.grading.thresholds
    grade = next((g for g in GRADE_ORDER if g in thresholds and points >= thresholds[g]), GRADE_ORDER[-1])
    state.grade, state.grade_points, state.grade_reasons = grade, points, reasons


# ------------------------------------------------------------------ behaviour score


def _history(state: LeadState):  # type: ignore[no-untyped-def]
    def count(event_type: str, days: float | None, now: datetime) -> int:
        times = state.event_times.get(event_type, [])
        if days is None:
            return len(times)
        try:
            since = now - timedelta(days=days)
        except (OverflowError, ValueError):
            raise RuleArgumentError(f"count(..., days={days:g}): that window cannot be computed") from None
        return len(times) - bisect_left(times, since)

    return count


def _holds(
    test: Callable[..., Any],
    state: LeadState,
    now: datetime,
    *,
    rule_id: str,
    event: dict[str, Any] | None = None,
    grade: Any = ...,
    history: Any = None,
) -> bool:
    """Evaluate a compiled condition against the lead (``grade=None`` while the grade is being computed).

    A condition that raises (a value read at run time outside what a function accepts, or anything a
    marketer's expression can trip over) does not hold: it is recorded on the lead and the lead moves on,
    so one bad rule never fails the workflow task of every lead it meets."""
    try:
        return bool(
            test(
                state.attributes,
                event,
                state.score,
                state.grade if grade is ... else grade,
                state.stage,
                now,
                history or _history(state),
            )
        )
    except Exception as exc:
        _record_rule_error(state, rule_id, exc, now, event)
        return False


def _record_rule_error(
    state: LeadState, rule_id: str, exc: Exception, now: datetime, event: dict[str, Any] | None
) -> None:
    message = f"{type(exc).__name__}: {exc}"[:MAX_RULE_ERROR_TEXT]
    event_id = event.get("id") if event else None
    seq = state.rule_errors[-1].seq + 1 if state.rule_errors else 1
    state.rule_errors.append(RuleError(seq, now, rule_id, message, event_id if isinstance(event_id, str) else None))
    del state.rule_errors[:-MAX_RULE_ERRORS]


def _add_points(
    state: LeadState, points: float, now: datetime, rule_id: str, reason: str, event_id: str | None = None
) -> None:
    new_score = max(0.0, round(state.score + points, 2))
    applied = round(new_score - state.score, 2)
    if applied == 0:
        return
    state.score = new_score
    seq = len(state.score_changes) + 1 if not state.score_changes else state.score_changes[-1].seq + 1
    state.score_changes.append(ScoreChange(seq, now, applied, new_score, rule_id, reason, event_id))


def _score_event(
    state: LeadState, event: TrackedEvent, now: datetime, pb: CompiledPlaybook, touch: SourceTouch | None = None
) -> None:
    at = min(event.at, now)
    times = state.event_times.setdefault(event.type, [])
    times.insert(bisect_left(times, at), at)
    del times[:-HISTORY_PER_TYPE]
    view = {
        "id": event.id,
        "type": event.type,
        "at": at,
        "url": event.url,
        "name": event.name,
        "properties": event.properties,
        # The event's marketing touch, if it was one (rules/sources.py): event.source, event.channel, ...
        "channel": touch.channel if touch else None,
        "source": touch.source if touch else None,
        "medium": touch.medium if touch else None,
        "campaign": touch.campaign if touch else None,
        "content": touch.content if touch else None,
        "term": touch.term if touch else None,
    }
    history = _history(state)
    for rule in _scoring_hits(state, view, now, pb, history):
        spec = rule.spec
        hits = state.rule_hits.setdefault(spec.id, [])
        if spec.max_total is not None and len(hits) >= spec.max_total:
            continue
        if spec.max_per_day is not None and sum(1 for h in hits if h.date() == now.date()) >= spec.max_per_day:
            continue
        hits.append(now)
        del hits[: -max(spec.max_total or 0, spec.max_per_day or 0, 1) * 2]
        reason = spec.description or f"{event.type}{' ' + event.url if event.url else ''}"
        _add_points(state, spec.points, now, spec.id, reason, event.id)
    _resume_waiting(state, view, now, pb)


def _scoring_hits(
    state: LeadState, view: dict[str, Any], now: datetime, pb: CompiledPlaybook, history: Any
) -> Iterator[Any]:
    """The scoring rules that hold for this event, in playbook order, each judged when its turn comes.

    The section function (rules/sections.py) answers all rules at once; a rule that reads the score is
    judged on its own in its turn, after the points of the rules before it, as rule by rule always did.
    When the section raises, rule by rule it is, so the failing rule is recorded as before."""
    section = pb.scoring_section
    held: list[int] | None = None
    if section is not None:
        try:
            held = section.test(state.attributes, view, state.score, state.grade, state.stage, now, history)
        except Exception:
            held = None
    if held is None:
        for rule in pb.scoring:
            if _holds(rule.test, state, now, rule_id=rule.spec.id, event=view, history=history):
                yield rule
        return
    for position in sorted([*held, *section.late]) if section.late else held:  # type: ignore[union-attr]
        rule = pb.scoring[position]
        if position not in section.late or _holds(  # type: ignore[union-attr]
            rule.test, state, now, rule_id=rule.spec.id, event=view, history=history
        ):
            yield rule


def _decay(state: LeadState, now: datetime, pb: CompiledPlaybook) -> None:
    decay = pb.model.scoring.decay
    if decay is None:
        return
    every, half_life = parse_duration(decay.every), parse_duration(decay.half_life)
    if state.score > 0:
        # Exponential decay from the last real change, not compounded rounded steps (which stall or race).
        anchor = next((c for c in reversed(state.score_changes) if c.rule_id != "decay"), None)
        base, since = (anchor.score_after, anchor.at) if anchor else (state.score, now - every)
        target = min(round(base * 0.5 ** ((now - since) / half_life), 2), state.score)
        if target < 0.5:
            target = 0.0
        _add_points(state, target - state.score, now, "decay", f"half-life {decay.half_life}")
    state.timers[TIMER_DECAY] = now + every


# ------------------------------------------------------------------ stages, routing, journeys


def _react(state: LeadState, now: datetime, pb: CompiledPlaybook, out: list[Command]) -> None:
    """What follows from the lead's new state: stage moves, routing, journey enrolment and steps."""
    if state.created_at is None:
        return  # events before the lead exists are only recorded
    for _ in range(REACT_PASSES):
        before = (state.stage, state.score, _enrolments(state), state.grade)
        _advance_stage(state, now, pb)
        _route(state, now, pb, out)
        _run_journeys(state, now, pb, out)
        if (state.stage, state.score, _enrolments(state), state.grade) == before:
            break  # stable: journey steps changed nothing the other rules react to
    # A follow-up whose stage or owner is gone ends here, whatever moved them (rules/followups.py).
    cancel_if_not_owed(state, now, pb.stage_order)


def _enrolments(state: LeadState) -> tuple[int, int]:
    return len(state.journeys), sum(run.enrolments for run in state.journeys.values())


def _advance_stage(state: LeadState, now: datetime, pb: CompiledPlaybook) -> None:
    order, stages = pb.stage_order, pb.model.stages
    # Rules into side stages (disqualified, ...) win over the funnel.
    for rule in pb.stages:
        to = rule.spec.to
        if to not in order and to != state.stage and _holds(rule.test, state, now, rule_id=_stage_rule_id(rule)):
            _set_stage(state, to, now, rule.spec.id or rule.spec.when, pb)
            return
    if state.stage in order:
        current = order.index(state.stage)
    elif state.stage in stages.reentry:
        current = 0  # recycled leads climb the funnel again
    else:
        return  # other side stages move only by an explicit change
    target, reason = current, ""
    for rule in pb.stages:
        to = rule.spec.to
        if to in order and order.index(to) > target and _holds(rule.test, state, now, rule_id=_stage_rule_id(rule)):
            target, reason = order.index(to), rule.spec.id or f"{rule.spec.when}"
    if target > current:
        _set_stage(state, order[target], now, reason, pb)


def _stage_rule_id(rule: Any) -> str:
    return rule.spec.id or f"stages: to {rule.spec.to} when {rule.spec.when}"


def _set_stage(state: LeadState, stage: str, now: datetime, reason: str, pb: CompiledPlaybook | None = None) -> None:
    if stage == state.stage:
        return
    seq = state.stage_changes[-1].seq + 1 if state.stage_changes else 1
    state.stage_changes.append(StageChange(seq, now, state.stage, stage, reason))
    state.stage = stage
    state.timers.pop(TIMER_RECYCLE, None)
    if pb is None:
        return
    for recycle in pb.model.stages.recycle:
        if recycle.from_stage == stage:
            state.timers[TIMER_RECYCLE] = now + parse_duration(recycle.after)
    if stage in pb.model.stages.reentry:
        # Back to marketing: the old owner and SLA no longer apply.
        state.owner, state.pending_assignment, state.queued_team = None, None, None
        if state.legacy_followups and state.followup and state.followup.status == "pending":
            state.followup = None  # runs recorded before: dropped (today it ends as cancelled in _react)
        for name in (TIMER_SLA_REMIND, TIMER_SLA_DUE, TIMER_SLA_REASSIGN):
            state.timers.pop(name, None)


def _route(state: LeadState, now: datetime, pb: CompiledPlaybook, out: list[Command]) -> None:
    order, routing = pb.stage_order, pb.model.routing
    if state.owner or state.pending_assignment or state.queued_team:
        return
    if state.stage not in order or routing.at_stage not in order:
        return
    if order.index(state.stage) < order.index(routing.at_stage):
        return
    team, strategy, reason, rep = routing.default_team, routing.strategy, "default team", None
    for rule in pb.routing:
        if _holds(rule.test, state, now, rule_id=rule.spec.id):
            team, strategy, reason = rule.spec.team, rule.spec.strategy or routing.strategy, f"rule {rule.spec.id}"
            rep = rule.spec.rep
            break
    _request_assignment(state, team, strategy, reason, [], out, rep)


def _request_assignment(
    state: LeadState,
    team: str,
    strategy: str,
    reason: str,
    exclude: list[str],
    out: list[Command],
    rep_id: str | None = None,
) -> None:
    state.assignment_seq += 1
    key = f"{state.lead_id}:assign:{state.assignment_seq}"
    state.pending_assignment = key
    out.append(AssignRep(state.lead_id, key, team, strategy, reason, exclude_rep_ids=exclude, rep_id=rep_id))


def _assignment_failed(
    state: LeadState, inp: AssignmentFailed, now: datetime, pb: CompiledPlaybook, out: list[Command]
) -> None:
    if state.pending_assignment != inp.key:
        return
    state.pending_assignment = None
    routing = pb.model.routing
    if routing.fallback_team and inp.team != routing.fallback_team:
        _request_assignment(state, routing.fallback_team, routing.strategy, f"fallback: {inp.reason}", [], out)
        return
    # Nobody anywhere: wait in the team queue and offer the lead again later.
    state.queued_team = state.queued_team or inp.team
    state.timers[TIMER_ASSIGN_RETRY] = now + parse_duration(routing.retry_every)


def _run_journeys(state: LeadState, now: datetime, pb: CompiledPlaybook, out: list[Command]) -> None:
    if state.nurture_paused is not None:
        return  # paused by hand (rules/sales.py): journeys hold their place until resumed
    for cj in pb.journeys:
        run = state.journeys.get(cj.spec.id)
        policy = cj.spec.reenroll
        if run is None or (run.status != "active" and may_enrol_again(policy)):
            holds = _holds(cj.enroll, state, now, rule_id=f"journey:{cj.spec.id}:enroll_when")
            if run is None and holds:
                run = state.journeys[cj.spec.id] = JourneyRun(cj.spec.id, enrolled_at=now)
            elif run is not None and enrol_again(run, holds, policy, now):
                run = state.journeys[cj.spec.id] = next_run(run, now)  # rules/reenrolment.py
            if run is None:
                continue
        if run.status != "active":
            continue
        if cj.exit and _holds(cj.exit, state, now, rule_id=f"journey:{cj.spec.id}:exit_when"):
            _end_journey(state, run, now, "exited", "exit condition met")
            continue
        if JOURNEY_TIMER_PREFIX + cj.spec.id not in state.timers:
            _walk(state, cj, run, now, pb, out)


def _walk(
    state: LeadState, cj: CompiledJourney, run: JourneyRun, now: datetime, pb: CompiledPlaybook, out: list[Command]
) -> None:
    """Run a journey's steps until it waits, exits or ends."""
    steps, timer = cj.spec.steps, JOURNEY_TIMER_PREFIX + cj.spec.id
    for _ in range(MAX_JOURNEY_STEPS_PER_INPUT):
        if run.step >= len(steps):
            _end_journey(state, run, now, "completed", None)
            return
        step = steps[run.step]
        nxt = run.step + 1
        where = f"journey {cj.spec.id} step {step.id}"
        if step.type == "send_email" and step.template:
            retry_at = _send_nurture(state, cj.spec.id, step.id, step.template, now, pb, out)
            if retry_at is not None:
                # Deferred, never dropped: the journey pauses on this step and asks again then.
                state.timers[timer] = retry_at
                return
        elif step.type == "notify_rep" and step.template and state.owner:
            owner = state.owner
            out.append(_staff_email(state, "rep_notify", step.template, owner.rep.email, owner.rep.name, pb))
        elif step.type == "wait":
            if step.until:
                tz = state.attributes.get("timezone")
                tz = tz if isinstance(tz, str) and _valid_zone(tz) else cj.spec.timezone
                state.timers[timer] = next_weekday_time(now, list(step.until.weekdays), step.until.time, tz)
            else:
                state.timers[timer] = now + parse_duration(step.duration or "0s")
            run.step = cj.index[step.next] if step.next else nxt
            return
        elif step.type == "wait_for_event":
            state.timers[timer] = now + parse_duration(step.timeout or "0s")
            run.waiting_for = step.id
            return
        elif step.type == "branch":
            test = cj.conditions[step.id]
            if _holds(test, state, now, rule_id=f"journey:{cj.spec.id}:{step.id}"):
                nxt = cj.index[step.then] if step.then else nxt
            elif step.otherwise:
                nxt = cj.index[step.otherwise]
        elif step.type == "ab_split" and step.variants:
            choice = _bucket(f"{state.lead_id}:{cj.spec.id}:{step.id}", [v.weight for v in step.variants])
            run.variants[step.id] = step.variants[choice].goto
            nxt = cj.index[step.variants[choice].goto]
        elif step.type == "set_field" and step.field:
            state.attributes[step.field] = step.value
            note_set(state, step.field, now, f"journey:{cj.spec.id}")
            _grade(state, now, pb)
        elif step.type == "set_stage" and step.stage:
            _set_stage(state, step.stage, now, where, pb)
        elif step.type == "add_points" and step.points is not None:
            _add_points(state, step.points, now, f"journey:{cj.spec.id}:{step.id}", where)
        elif step.type == "exit":
            _end_journey(state, run, now, "exited", f"step {step.id}")
            return
        if step.next and step.type not in ("branch", "ab_split"):
            nxt = cj.index[step.next]  # any other step may name the step after it
        run.step = nxt
    # Validation rejects loops without a wait; this bound only guards hand-built playbooks.
    _end_journey(state, run, now, "exited", "too many steps without a wait")


def _resume_waiting(state: LeadState, event: dict[str, Any] | None, now: datetime, pb: CompiledPlaybook) -> None:
    """A wait_for_event step ends: with the matching event (``event``) or at its timeout (``None``)."""
    for cj in pb.journeys:
        run = state.journeys.get(cj.spec.id)
        if run is None or run.status != "active" or run.waiting_for is None:
            continue
        step = cj.spec.steps[cj.index[run.waiting_for]]
        if event is not None:
            if not _holds(cj.conditions[step.id], state, now, rule_id=f"journey:{cj.spec.id}:{step.id}", event=event):
                continue
            target = step.on_event
        else:
            if JOURNEY_TIMER_PREFIX + cj.spec.id in state.timers:
                continue  # this journey's timeout has not come
            target = step.on_timeout
        state.timers.pop(JOURNEY_TIMER_PREFIX + cj.spec.id, None)
        run.waiting_for = None
        run.step = cj.index[target] if target else cj.index[step.id] + 1


def _bucket(key: str, weights: list[int]) -> int:
    """A stable, uniform pick by weight: the same lead always lands in the same variant."""
    point = int(hashlib.sha256(key.encode()).hexdigest()[:12], 16) % sum(weights)
    for i, weight in enumerate(weights):
        if point < weight:
            return i
        point -= weight
    return len(weights) - 1


def _valid_zone(name: str) -> bool:
    try:
        zone(name)
    except ValueError:
        return False
    return True


def _end_journey(state: LeadState, run: JourneyRun, now: datetime, status: str, reason: str | None) -> None:
    run.status = status  # type: ignore[assignment]
    run.ended_at, run.exit_reason, run.waiting_for = now, reason, None
    state.timers.pop(JOURNEY_TIMER_PREFIX + run.journey_id, None)


def _lead_context(state: LeadState) -> dict[str, Any]:
    return {
        "lead_id": state.lead_id,
        "lead": dict(state.attributes),
        "stage": state.stage,
        "score": round(state.score),
        "grade": state.grade,
    }


def _next_email_key(state: LeadState, kind: str) -> str:
    state.email_seq += 1
    return f"{state.lead_id}:{kind}:{state.email_seq}"


def _send_nurture(
    state: LeadState,
    journey_id: str,
    step_id: str,
    template: str,
    now: datetime,
    pb: CompiledPlaybook,
    out: list[Command],
) -> datetime | None:
    """Send a journey's email now, skip it (consent), or return when to try again (send window, caps)."""
    policy = pb.model.email
    blocked = undeliverable(state) or nurture_blocked(state.consents, policy.require_opt_in)
    if blocked is not None:
        _note_hold(state, NurtureHold(now, journey_id, step_id, template, "skipped", blocked))
        return None
    zone_name = send_window.lead_zone(state.attributes, policy)
    at, why = send_window.next_send_moment(now, state.nurture_sent, policy, zone_name)
    if why is not None:
        _note_hold(state, NurtureHold(now, journey_id, step_id, template, "deferred", why, at))
        return at
    run = state.journeys.get(journey_id)
    tracking = tracking_for(policy, template)
    variant = variant_label(run.variants) if run else None
    if _email_lead(state, template, f"journey {journey_id} step {step_id}", policy.locale, out, variant, tracking):
        state.nurture_sent.append(now)
        del state.nurture_sent[: -send_window.MAX_SENT_KEPT]
    return None


def _note_hold(state: LeadState, hold: NurtureHold) -> None:
    state.nurture_holds.append(hold)
    del state.nurture_holds[:-NURTURE_HOLDS_KEPT]


def _email_lead(
    state: LeadState,
    template: str,
    reason: str,
    default_locale: str | None,
    out: list[Command],
    variant: str | None = None,
    tracking: tuple[bool, bool] = (False, False),
) -> bool:
    to = state.attributes.get("email")
    if not isinstance(to, str) or not to:
        return False
    name = " ".join(str(state.attributes.get(k, "")) for k in ("first_name", "last_name")).strip() or None
    context = _lead_context(state) | {"reason": reason}
    locale = lead_locale(state.attributes, default_locale)
    key = _next_email_key(state, NURTURE_KIND)
    opens, clicks = tracking
    out.append(SendEmail(key, NURTURE_KIND, template, to, context, name, locale, variant, opens, clicks))
    return True


# ------------------------------------------------------------------ assignment and follow-up SLA


def _assigned(state: LeadState, inp: RepAssigned, now: datetime, pb: CompiledPlaybook, out: list[Command]) -> None:
    if state.pending_assignment != inp.key:
        return  # a stale answer for an assignment superseded since
    state.pending_assignment = None
    state.queued_team = None
    rep = inp.rep
    cancel_followup(state, now, f"the lead went to {rep.id}")  # the previous owner owes it no more
    state.owner = Owner(rep, now, inp.reason)
    policy = _sla_policy(state, now, pb)
    first_touch = parse_duration(policy.first_touch)
    due = _sla_time(now, first_touch, policy, rep.team, pb)
    state.followup_seq += 1
    remind = None
    if policy.remind_before and parse_duration(policy.remind_before) < first_touch:
        remind = _sla_time(now, first_touch - parse_duration(policy.remind_before), policy, rep.team, pb)
    state.followup = FollowUp(
        key=f"{state.lead_id}:followup:{state.followup_seq}",
        kind="first_touch",
        policy_id=policy.id,
        rep_id=rep.id,
        team=rep.team,
        started_at=now,
        due_at=due,
        remind_at=remind if remind and remind > now else None,
        stage=state.stage,
    )
    for name in (TIMER_SLA_REMIND, TIMER_SLA_DUE, TIMER_SLA_REASSIGN):
        state.timers.pop(name, None)
    state.timers[TIMER_SLA_DUE] = due
    if state.followup.remind_at:
        state.timers[TIMER_SLA_REMIND] = state.followup.remind_at
    notifications = pb.model.notifications
    mail = _staff_email(state, "rep_new_lead", notifications.rep_new_lead, rep.email, rep.name, pb)
    from rules.sales import offer  # the rep may accept or reject (SAL); rules.sales builds on this module

    offer(state, inp.key, rep, now, pb, mail)
    out.append(mail)


def _sla_time(start: datetime, span: timedelta, policy: Any, team: str, pb: CompiledPlaybook) -> datetime:
    """``start + span``, counted in the team's business hours when the policy says so."""
    sla = pb.model.sla
    hours = sla.team_hours.get(team) or sla.business_hours
    if not policy.business_hours or hours is None:
        return start + span
    return add_business_time(
        start,
        span,
        tz_name=hours.timezone,
        weekdays=list(hours.days),
        opens=hours.opens,
        closes=hours.closes,
        holidays=frozenset(hours.holidays),
    )


def _sla_policy(state: LeadState, now: datetime, pb: CompiledPlaybook):  # type: ignore[no-untyped-def]
    for policy, test in pb.sla:
        if test is None or _holds(test, state, now, rule_id=f"sla:{policy.id}"):
            return policy
    return pb.sla[-1][0]


def _staff_email(
    state: LeadState, kind: str, template: str, to: str, to_name: str | None, pb: CompiledPlaybook
) -> SendEmail:
    """Operational mail to a rep or manager: in the playbook's locale (the team's, not the lead's)."""
    owner, followup = state.owner, state.followup
    context = _lead_context(state) | {
        "owner": {"name": owner.rep.name, "email": owner.rep.email, "team": owner.rep.team} if owner else None,
        "due_at": followup.due_at.isoformat() if followup else None,
        "policy": followup.policy_id if followup else None,
        "reasons": [f"{c.rule_id} ({c.points:+g})" for c in state.score_changes[-5:]],
    }
    return SendEmail(_next_email_key(state, kind), kind, template, to, context, to_name, pb.model.email.locale)


def _timer(state: LeadState, name: str, now: datetime, pb: CompiledPlaybook, out: list[Command]) -> None:
    state.timers.pop(name, None)
    followup, owner = state.followup, state.owner
    if name.startswith("sal_"):
        from rules.sales import on_timer  # the acceptance SLA (rules/sales.py)

        on_timer(state, name, now, pb, out)
    elif name == TIMER_DECAY:
        _decay(state, now, pb)
    elif name.startswith(JOURNEY_TIMER_PREFIX):
        _resume_waiting(state, None, now, pb)  # a wait_for_event timed out; plain waits just end
    elif name == TIMER_ASSIGN_RETRY:
        if state.queued_team and state.owner is None and state.pending_assignment is None:
            _request_assignment(
                state, state.queued_team, pb.model.routing.strategy, "retry from the team queue", [], out
            )
    elif name == TIMER_RECYCLE:
        for recycle in pb.model.stages.recycle:
            if recycle.from_stage == state.stage:
                if recycle.reset_score and state.score > 0:
                    _add_points(state, -state.score, now, "recycle", f"score reset on recycling to {recycle.to}")
                _set_stage(state, recycle.to, now, f"recycled after {recycle.after} in {recycle.from_stage}", pb)
                break
    elif followup is None or owner is None or (followup.status != "pending" and name != TIMER_SLA_REASSIGN):
        return
    elif name == TIMER_SLA_REMIND:
        followup.reminded_at = now
        out.append(
            _staff_email(
                state, "sla_reminder", pb.model.notifications.sla_reminder, owner.rep.email, owner.rep.name, pb
            )
        )
    elif name == TIMER_SLA_DUE:
        followup.status = "overdue"
        followup.escalated_at = now
        policy = next((p for p, _ in pb.sla if p.id == followup.policy_id), None)
        if policy and policy.escalate_to_manager and owner.rep.manager_email:
            out.append(
                _staff_email(
                    state,
                    "sla_escalation",
                    pb.model.notifications.sla_escalation,
                    owner.rep.manager_email,
                    owner.rep.manager_name,
                    pb,
                )
            )
        if policy and policy.reassign_after and state.followup_seq <= policy.max_reassignments:
            state.timers[TIMER_SLA_REASSIGN] = _sla_time(
                now, parse_duration(policy.reassign_after), policy, owner.rep.team, pb
            )
    elif name == TIMER_SLA_REASSIGN and followup.status == "overdue" and followup.met_at is None:
        _request_assignment(
            state,
            owner.rep.team,
            pb.model.routing.strategy,
            f"SLA {followup.policy_id} missed by {owner.rep.id}",
            [owner.rep.id],
            out,
        )


def _touch(state: LeadState, inp: TouchLogged, now: datetime) -> None:
    followup = state.followup
    if followup is None or followup.met_at is not None or followup.status == "cancelled":
        return
    if inp.at < followup.started_at and not state.legacy_followups:
        return  # a touch from before this follow-up started (backdated) answers an earlier one, not this
    followup.met_at = min(inp.at, now)
    if followup.status == "pending":
        followup.status = "met"
    for name in (TIMER_SLA_REMIND, TIMER_SLA_DUE, TIMER_SLA_REASSIGN):
        state.timers.pop(name, None)


# ------------------------------------------------------------------ views


def snapshot(
    state: LeadState, score_from: int = 0, stage_from: int = 0, pb: CompiledPlaybook | None = None
) -> LeadSnapshot:
    """The read-model row, with only the score/stage changes after the given sequence numbers; with the
    playbook, also which of the lead's assignments still hold a rep's capacity (the store closes the rest)."""
    return LeadSnapshot(
        lead_id=state.lead_id,
        attributes=dict(state.attributes),
        stage=state.stage,
        score=round(state.score),
        grade=state.grade,
        owner_rep_id=state.owner.rep.id if state.owner else None,
        owner_team=state.owner.rep.team if state.owner else state.queued_team,
        created_at=state.created_at,
        updated_at=state.updated_at,
        playbook_version=state.playbook_version,
        followup=state.followup,
        score_changes=[c for c in state.score_changes if c.seq > score_from],
        stage_changes=[c for c in state.stage_changes if c.seq > stage_from],
        original_source=state.original_source,
        latest_source=state.latest_source,
        capacity=capacity_held(state, pb.stage_order) if pb is not None else None,
        acceptance=state.acceptance,
        outcome=state.outcome,
    )


def material_view(state: LeadState) -> tuple[Any, ...]:
    """What must reach the read model at once when it changes (score alone may wait)."""
    f = state.followup
    return (
        state.stage,
        state.grade,
        state.owner.rep.id if state.owner else None,
        state.queued_team,
        (f.key, f.status, f.due_at, f.reminded_at, f.escalated_at, f.met_at) if f else None,
        tuple(sorted((k, str(v)) for k, v in state.attributes.items())),
        (state.acceptance.assignment_key, state.acceptance.status) if state.acceptance else None,
        (state.outcome.kind, state.outcome.at) if state.outcome else None,
    )


# ------------------------------------------------------------------ playbook migration (rules/migration.py)


def rebase(state: LeadState, now: datetime, pb: CompiledPlaybook) -> list[Command]:
    """What a playbook derives from a lead's state once the lead is switched to it: the grade under its
    grading rules, then one reaction (stage moves, routing, journey enrolment and exits, due steps)."""
    out: list[Command] = []
    if state.created_at is not None:
        _grade(state, now, pb)
    _react(state, now, pb, out)
    state.updated_at = now
    return out


def sla_policy_id(state: LeadState, now: datetime, pb: CompiledPlaybook) -> str:
    """The id of the follow-up policy ``pb`` gives this lead now."""
    return str(_sla_policy(state, now, pb).id)


def explain_points(state: LeadState, points: float, now: datetime, rule_id: str, reason: str) -> None:
    """Change the score by ``points`` with a recorded reason (the score stays the sum of its changes)."""
    _add_points(state, points, now, rule_id, reason)
