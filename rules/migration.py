"""Playbook upgrades for running leads: the pure plan that moves one lead from its playbook version to another.

``plan_lead_migration(state, old, new, options, now, events)`` answers, for one lead, what switching would
change (stage, journey positions, pending waits, follow-up SLA, score when recomputed, mail sent at once) and
the migrated state, or a refusal. The dry run (a query) and the apply (an update handled by the workflow's
main loop between inputs) both call it on the lead's own state, so they give the same answer; the workflow
only installs the returned state and starts the returned commands.

Journey positions move by step id: a lead resting at step ``s`` of journey ``j`` rests at the step with the
same id in the new version, keeping its remaining wait (the journey timer's due time). A step that no longer
exists needs a declared step map entry (``"j/s": "j2/s2"``, or ``"exit"`` to leave that journey), else the
lead is refused, and :func:`unmapped_steps` lets the API refuse the whole migration up front.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from rules.engine import JOURNEY_TIMER_PREFIX, TIMER_DECAY, TIMER_RECYCLE, explain_points, rebase, sla_policy_id
from rules.expressions import parse_duration
from rules.followups import is_open
from rules.model import AssignRep, Command, EventsReceived, Input, LeadState, LeadUpserted, SendEmail, TrackedEvent
from rules.playbook import CompiledJourney, CompiledPlaybook, Journey
from rules.simulate import run_timeline
from rules.team_book import TeamBook

STEP_EXIT = "exit"  # step map target: leave the journey (the run ends as exited)
END = "(end)"  # a run past its last step: it completes at its next walk
MIGRATION_RULE_ID = "migration"

MigrationOutcome = Literal["migrate", "current", "refused"]
MoveKind = Literal["same", "mapped", "exited", "completed"]
# What happened to one lead in a migration run (progress): planned in a dry run, migrated when applied,
# current when already on the target, refused (steps without a map), skipped (its workflow has ended), failed.
LeadStatus = Literal["planned", "migrated", "current", "refused", "skipped", "failed"]


@dataclass
class MigrationOptions:
    """What the marketer asked: the target version, the step map and whether to recompute scores."""

    target_version: str
    # "old_journey/old_step" -> "new_journey/new_step", or "exit" to leave the journey.
    step_map: dict[str, str] = field(default_factory=dict)
    recompute_score: bool = False


@dataclass
class UnmappedStep:
    """A journey step leads can rest at in ``version`` that the target lacks and the step map does not cover."""

    version: str
    journey_id: str
    step_id: str

    @property
    def key(self) -> str:
        return f"{self.journey_id}/{self.step_id}"


@dataclass
class JourneyMove:
    """Where one active journey run rests before and after the switch."""

    journey_id: str
    from_step: str
    to_journey: str
    to_step: str
    # same: the step kept its id; mapped: the step map moved it; exited: the map ended the run;
    # completed: it was past its last step in a journey the new version lacks.
    how: MoveKind
    # The journey's pending wait (wait, wait_for_event timeout, deferred send): its due time is kept.
    wait_until: datetime | None = None
    waiting_for_event: bool = False


@dataclass
class LeadMigrationPlan:
    """One lead's answer: what would change (dry run) or what changed (apply)."""

    lead_id: str
    from_version: str
    to_version: str
    outcome: MigrationOutcome
    reason: str | None = None
    unmapped: list[UnmappedStep] = field(default_factory=list)
    stage_before: str = ""
    stage_after: str = ""
    grade_before: str | None = None
    grade_after: str | None = None
    score_before: int = 0
    score_after: int = 0
    score_recomputed: bool = False
    journeys: list[JourneyMove] = field(default_factory=list)
    # Journeys the new version enrols the lead in, or ends, at the switch.
    journeys_enrolled: list[str] = field(default_factory=list)
    journeys_ended: list[str] = field(default_factory=list)
    followup_policy_before: str | None = None
    followup_policy_after: str | None = None
    followup_due_at: datetime | None = None
    timers_before: dict[str, datetime] = field(default_factory=dict)
    timers_after: dict[str, datetime] = field(default_factory=dict)
    # Templates mailed and the team asked for a rep at the switch itself.
    emails: list[str] = field(default_factory=list)
    routed_to: str | None = None
    changes: list[str] = field(default_factory=list)


@dataclass
class LeadMigrationResult:
    """One lead in a migration run, as the run's progress lists it."""

    lead_id: str
    status: LeadStatus
    plan: LeadMigrationPlan | None = None
    error: str | None = None


@dataclass
class MigrationResult:
    plan: LeadMigrationPlan
    # The migrated state and the commands to start, when the plan is to migrate.
    state: LeadState | None = None
    commands: list[Command] = field(default_factory=list)


# ------------------------------------------------------------------ the static check (before any lead)


def resting_steps(journey: Journey) -> list[str]:
    """Step ids a lead can rest at between inputs: the step a wait resumes at, a wait_for_event step (the
    lead waits in it) and a send_email step (a send deferred by the send window or a cap)."""
    index = {step.id: i for i, step in enumerate(journey.steps)}
    found: set[str] = set()
    for i, step in enumerate(journey.steps):
        if step.type in ("wait_for_event", "send_email"):
            found.add(step.id)
        elif step.type == "wait":
            resume = index[step.next] if step.next else i + 1
            if resume < len(journey.steps):
                found.add(journey.steps[resume].id)
    return [step.id for step in journey.steps if step.id in found]


def unmapped_steps(old: CompiledPlaybook, new: CompiledPlaybook, step_map: dict[str, str]) -> list[UnmappedStep]:
    """Resting steps of ``old`` that ``new`` lacks (by journey and step id) and ``step_map`` does not cover."""
    out = []
    for cj in old.journeys:
        target = _journey(new, cj.spec.id)
        for step_id in resting_steps(cj.spec):
            if f"{cj.spec.id}/{step_id}" in step_map or (target is not None and step_id in target.index):
                continue
            out.append(UnmappedStep(old.version, cj.spec.id, step_id))
    return out


def step_map_problems(new: CompiledPlaybook, step_map: dict[str, str]) -> list[str]:
    """Entries of a step map that cannot work: malformed keys, targets the new version lacks."""
    problems = []
    for key, target in step_map.items():
        if key.count("/") != 1 or not all(key.split("/")):
            problems.append(f'"{key}": a key names an old step as "journey/step"')
        if target == STEP_EXIT:
            continue
        journey_id, _, step_id = target.partition("/")
        cj = _journey(new, journey_id)
        if not step_id or "/" in step_id:
            problems.append(f'"{key}": "{target}" must name a new step as "journey/step", or be "{STEP_EXIT}"')
        elif cj is None:
            problems.append(f'"{key}": the target version has no journey "{journey_id}"')
        elif step_id not in cj.index:
            problems.append(f'"{key}": journey "{journey_id}" of the target version has no step "{step_id}"')
    return problems


# ------------------------------------------------------------------ one lead


def plan_lead_migration(
    state: LeadState,
    old: CompiledPlaybook,
    new: CompiledPlaybook,
    options: MigrationOptions,
    now: datetime,
    events: Iterable[TrackedEvent] = (),
) -> MigrationResult:
    """Plan (and compute) the switch of one lead from ``old`` to ``new``. Never changes ``state``.

    ``events``: the lead's behavioural events, for ``options.recompute_score`` (replayed through ``new``)."""
    plan = LeadMigrationPlan(
        lead_id=state.lead_id,
        from_version=state.playbook_version,
        to_version=new.version,
        outcome="migrate",
        stage_before=state.stage,
        stage_after=state.stage,
        grade_before=state.grade,
        grade_after=state.grade,
        score_before=round(state.score),
        score_after=round(state.score),
        followup_policy_before=state.followup.policy_id if state.followup else None,
        followup_due_at=state.followup.due_at if state.followup else None,
        timers_before=dict(state.timers),
        timers_after=dict(state.timers),
    )
    plan.followup_policy_after = plan.followup_policy_before
    if state.playbook_version == new.version:
        plan.outcome, plan.reason = "current", f"already on {new.version}"
        return MigrationResult(plan)
    # The event dedupe window and event history are large and a switch never writes them: shared, not copied
    # (the caller keeps one of the two states: the migrated one, or the lead's own after a dry run).
    lead = copy.deepcopy(state, {id(state.seen_events): state.seen_events, id(state.event_times): state.event_times})
    refusal = _move_journeys(lead, old, new, options.step_map, now, plan)
    if refusal is None and lead.stage not in new.stage_order and lead.stage not in new.model.stages.side:
        refusal = f'stage "{lead.stage}" does not exist in {new.version}: add it to stages.order or stages.side'
    if refusal is not None or plan.unmapped:
        plan.outcome = "refused"
        plan.reason = refusal or "journey steps without a step map entry: " + ", ".join(u.key for u in plan.unmapped)
        return MigrationResult(plan)
    _keep_followup(lead, new, now, plan)
    _retime(lead, new, now)
    if options.recompute_score:
        _recompute_score(lead, new, now, events, plan)
    lead.playbook_version = new.version
    journeys_before = {j: r.status for j, r in lead.journeys.items()}
    commands = rebase(lead, now, new)
    _describe(lead, commands, journeys_before, plan)
    return MigrationResult(plan, lead, commands)


def _journey(pb: CompiledPlaybook, journey_id: str) -> CompiledJourney | None:
    return next((cj for cj in pb.journeys if cj.spec.id == journey_id), None)


def _move_journeys(
    lead: LeadState,
    old: CompiledPlaybook,
    new: CompiledPlaybook,
    step_map: dict[str, str],
    now: datetime,
    plan: LeadMigrationPlan,
) -> str | None:
    """Move every active journey run to its new position; returns a refusal reason, or None."""
    for journey_id, run in list(lead.journeys.items()):
        if run.status != "active":
            continue
        old_cj = _journey(old, journey_id)
        steps = old_cj.spec.steps if old_cj else []
        at = run.waiting_for or (steps[run.step].id if run.step < len(steps) else END)
        timer = lead.timers.get(JOURNEY_TIMER_PREFIX + journey_id)
        key = f"{journey_id}/{at}"
        same = _journey(new, journey_id)
        how: MoveKind
        if key in step_map:
            target, how = step_map[key], "mapped"
        elif same is not None and (at == END or at in same.index):
            target, how = key, "same"
        elif same is None and at == END:
            target, how = STEP_EXIT, "completed"
        else:
            plan.unmapped.append(UnmappedStep(lead.playbook_version, journey_id, at))
            continue
        if target == STEP_EXIT:
            run.status = "completed" if how == "completed" else "exited"
            run.ended_at, run.waiting_for = now, None
            run.exit_reason = None if how == "completed" else f"step {at} left by the migration to {new.version}"
            lead.timers.pop(JOURNEY_TIMER_PREFIX + journey_id, None)
            ended: MoveKind = "completed" if how == "completed" else "exited"
            plan.journeys.append(JourneyMove(journey_id, at, journey_id, STEP_EXIT, ended))
            continue
        to_journey, _, to_step = target.partition("/")
        cj = _journey(new, to_journey)
        assert cj is not None  # step_map_problems / the lookup above
        if to_journey != journey_id:
            if to_journey in lead.journeys:
                return f'step {key} maps into journey "{to_journey}", which the lead has already been in'
            del lead.journeys[journey_id]
            run.journey_id = to_journey
            lead.journeys[to_journey] = run
            if timer is not None:
                lead.timers[JOURNEY_TIMER_PREFIX + to_journey] = lead.timers.pop(JOURNEY_TIMER_PREFIX + journey_id)
        run.step = len(cj.spec.steps) if to_step == END else cj.index[to_step]
        waits_for_event = to_step != END and cj.spec.steps[run.step].type == "wait_for_event"
        # A lead waiting for an event keeps waiting only in a step that waits for one; elsewhere its
        # timeout becomes a plain wait that ends at the same time, and the journey goes on from the new step.
        run.waiting_for = to_step if run.waiting_for is not None and waits_for_event else None
        plan.journeys.append(JourneyMove(journey_id, at, to_journey, to_step, how, timer, run.waiting_for is not None))
    return None


def _keep_followup(lead: LeadState, new: CompiledPlaybook, now: datetime, plan: LeadMigrationPlan) -> None:
    """A running follow-up keeps its due times; its policy is the new version's choice when the old one is gone
    (that policy's escalation and reassignment then apply)."""
    followup = lead.followup
    if followup is None or not is_open(followup):  # met or cancelled: nothing left to run
        return
    if followup.policy_id not in {policy.id for policy, _ in new.sla}:
        followup.policy_id = sla_policy_id(lead, now, new)
    plan.followup_policy_after = followup.policy_id


def _retime(lead: LeadState, new: CompiledPlaybook, now: datetime) -> None:
    """Timers the playbook owns: score decay, and recycling out of the lead's stage."""
    decay = new.model.scoring.decay
    if decay is None:
        lead.timers.pop(TIMER_DECAY, None)
    elif TIMER_DECAY not in lead.timers and lead.created_at is not None:
        lead.timers[TIMER_DECAY] = now + parse_duration(decay.every)
    recycle = next((r for r in new.model.stages.recycle if r.from_stage == lead.stage), None)
    if recycle is None:
        lead.timers.pop(TIMER_RECYCLE, None)
    elif TIMER_RECYCLE not in lead.timers:
        entered = next((c.at for c in reversed(lead.stage_changes) if c.to_stage == lead.stage), lead.created_at)
        entered = entered or now
        lead.timers[TIMER_RECYCLE] = max(now, entered + parse_duration(recycle.after))


def _recompute_score(
    lead: LeadState, new: CompiledPlaybook, now: datetime, events: Iterable[TrackedEvent], plan: LeadMigrationPlan
) -> None:
    """The score the lead's own events earn under the new rules (caps, windows and decay as they ran),
    reached by one explained change so the score stays the sum of its changes."""
    if lead.created_at is None:
        return
    created = lead.created_at
    seen: set[str] = set()
    timeline: list[tuple[datetime, int, Input]] = [(created, 0, LeadUpserted(dict(lead.attributes)))]
    for event in sorted(events, key=lambda e: e.at):
        if event.id in seen or event.type.startswith("touch."):  # rep touches are projected as touchpoints
            continue
        seen.add(event.id)
        timeline.append((max(event.at, created), 1, EventsReceived([event])))
    timeline.sort(key=lambda item: (item[0], item[1]))
    replay = run_timeline(new, lead.lead_id, timeline, now, TeamBook(stand_ins=True), record_trace=False).state
    reason = f"score recomputed under playbook {new.version} from {len(seen)} events"
    explain_points(lead, replay.score - lead.score, now, MIGRATION_RULE_ID, reason)
    # Caps count what the new rules scored, so a capped rule does not score again at once.
    lead.rule_hits = replay.rule_hits
    plan.score_recomputed = True


def _describe(
    lead: LeadState, commands: list[Command], journeys_before: Mapping[str, str], plan: LeadMigrationPlan
) -> None:
    plan.stage_after, plan.grade_after, plan.score_after = lead.stage, lead.grade, round(lead.score)
    plan.timers_after = dict(lead.timers)
    plan.emails = [c.template for c in commands if isinstance(c, SendEmail)]
    plan.routed_to = next((c.team for c in commands if isinstance(c, AssignRep)), None)
    plan.journeys_enrolled = [j for j in lead.journeys if j not in journeys_before]
    plan.journeys_ended = [
        j for j, status in journeys_before.items() if status == "active" and lead.journeys[j].status != "active"
    ]
    changes = plan.changes
    if plan.stage_before != plan.stage_after:
        changes.append(f"stage {plan.stage_before} -> {plan.stage_after}")
    if plan.grade_before != plan.grade_after:
        changes.append(f"grade {plan.grade_before} -> {plan.grade_after}")
    if plan.score_before != plan.score_after:
        changes.append(f"score {plan.score_before} -> {plan.score_after}")
    for move in plan.journeys:
        if move.how != "same" or move.journey_id != move.to_journey:
            changes.append(f"journey {move.journey_id} at {move.from_step} -> {move.to_journey}/{move.to_step}")
    changes += [f"enrolled in journey {j}" for j in plan.journeys_enrolled]
    changes += [f"journey {j} ended" for j in plan.journeys_ended]
    if plan.followup_policy_before != plan.followup_policy_after:
        changes.append(f"follow-up policy {plan.followup_policy_before} -> {plan.followup_policy_after} (due kept)")
    for name in sorted(set(plan.timers_before) | set(plan.timers_after)):
        before, after = plan.timers_before.get(name), plan.timers_after.get(name)
        if before != after and not name.startswith(JOURNEY_TIMER_PREFIX):
            changes.append(f"timer {name}: {_at(before)} -> {_at(after)}")
    changes += [f"email {t} sent at the switch" for t in plan.emails]
    if plan.routed_to:
        changes.append(f"routed to team {plan.routed_to}")


def _at(moment: datetime | None) -> str:
    return moment.isoformat() if moment else "none"
