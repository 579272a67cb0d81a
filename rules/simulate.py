"""The playbook simulator: the real ``decide`` loop on a virtual clock, with no Temporal and no side effect.

Given a playbook, a lead and a timed list of events and touches, it returns the full trace: score changes
with reasons, stage changes, routing decisions, every email that would be sent and when, SLA timers.
A scenario is data (YAML or JSON), so the same file is a marketer's dry run, a CLI input and a test.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from rules.assignment import TeamMember, TeamSnapshot, capacity_held
from rules.consent import effective_status
from rules.engine import decide
from rules.expressions import parse_duration
from rules.followups import is_open
from rules.model import (
    AssignmentFailed,
    AssignRep,
    ConsentRecord,
    ConsentRecorded,
    ConsentSource,
    ConsentStatus,
    EventsReceived,
    Input,
    LeadState,
    LeadUpserted,
    RepAssigned,
    SendEmail,
    TimerFired,
    TouchLogged,
    TrackedEvent,
)
from rules.playbook import CompiledPlaybook
from rules.team_book import TeamBook

MAX_STEPS = 10_000  # bound a runaway scenario (e.g. a one-minute decay over ten years)
MAX_SPAN = timedelta(days=3660)  # a scenario covers at most ten years
EARLIEST, LATEST = datetime(1970, 1, 1, tzinfo=UTC), datetime(2200, 1, 1, tzinfo=UTC)
# Answers whether the caller's time budget is spent. The simulator reads no clock itself (it stays pure);
# the API passes one in and the loop checks it between inputs.
Deadline = Callable[[], bool]


class BudgetExceeded(RuntimeError):
    """The caller's deadline passed before the run finished; the run stopped where it was."""


class _At(BaseModel):
    model_config = ConfigDict(extra="forbid")
    after: str = Field(default="0m", description="time since the scenario's start, e.g. 0m, 2d, 3d4h")

    def offset(self) -> timedelta:
        text = self.after.replace(" ", "")
        parts = re.findall(r"\d+(?:\.\d+)?[smhdw]", text)
        if not parts or "".join(parts) != text:
            raise ValueError(f'"{self.after}" is not a time offset: write e.g. 0m, 2d, 3d4h')
        total = sum((parse_duration(p) for p in parts), timedelta())
        if total > MAX_SPAN:
            raise ValueError(f'"{self.after}" is more than ten years after the start')
        return total

    @model_validator(mode="after")
    def _valid_offset(self) -> _At:
        self.offset()
        return self


class SimEvent(_At):
    type: str
    url: str | None = None
    name: str | None = None
    properties: dict[str, Any] = {}
    id: str | None = None


class SimTouch(_At):
    kind: str = "call"
    rep_id: str | None = None


class SimUpdate(_At):
    attributes: dict[str, Any]


class SimConsent(_At):
    """A consent record: given with the lead's form (``Scenario.consent``) or later (``Scenario.consents``)."""

    status: ConsentStatus
    source: ConsentSource = "api"
    wording: str | None = None
    form_id: str | None = None

    def record(self, at: datetime) -> ConsentRecord:
        return ConsentRecord(self.status, self.source, at, wording=self.wording, form_id=self.form_id)


class SimRep(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str
    name: str
    email: str
    team: str
    manager_name: str | None = None
    manager_email: str | None = None
    available: bool = True
    # As the team settings have them (PUT /v1/teams): routing treats the rep exactly as production does.
    capacity: int | None = Field(default=None, ge=0)
    weight: int = Field(default=1, ge=1)
    away_for: str | None = Field(default=None, description="out of office from the start for this long, e.g. 2d")
    open_leads: int = Field(default=0, ge=0, description="leads the rep already holds (count against capacity)")

    @model_validator(mode="after")
    def _valid_away(self) -> SimRep:
        if self.away_for is not None:
            parse_duration(self.away_for)
        return self


class Expectation(BaseModel):
    """What an example scenario must end with (examples double as tests)."""

    model_config = ConfigDict(extra="forbid")
    stage: str | None = None
    score: float | None = None
    grade: str | None = None
    owner: str | None = None
    team: str | None = None
    sla: str | None = None
    emails: list[str] | None = Field(default=None, description="templates sent, in order")


class Scenario(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = "scenario"
    description: str | None = None
    start: datetime = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
    lead: dict[str, Any] = Field(json_schema_extra={"required": ["email"]})  # as _checks enforces
    events: list[SimEvent] = Field(default=[], max_length=5000)
    touches: list[SimTouch] = Field(default=[], max_length=1000)
    updates: list[SimUpdate] = Field(default=[], max_length=1000)
    # Consent posted with the lead's form, and consent changes later on (API, unsubscribe, complaint).
    consent: SimConsent | None = None
    consents: list[SimConsent] = Field(default=[], max_length=1000)
    reps: list[SimRep] = Field(default=[], max_length=200)
    run_for: str = "30d"
    expect: Expectation | None = None

    @model_validator(mode="after")
    def _checks(self) -> Scenario:
        if "email" not in self.lead:
            raise ValueError("the scenario's lead needs an email")
        if self.start.tzinfo is None:
            self.start = self.start.replace(tzinfo=UTC)
        if not EARLIEST <= self.start <= LATEST:
            raise ValueError("the scenario must start between 1970 and 2200")
        if parse_duration(self.run_for) > MAX_SPAN:
            raise ValueError(f'run_for "{self.run_for}" is longer than ten years')
        return self


@dataclass
class TraceEntry:
    at: datetime
    # input | score | stage | grade | route | assign | email | email_held | consent | sla | timer | journey | rule_error
    kind: str
    detail: dict[str, Any]


@dataclass
class SimulationResult:
    scenario: str
    trace: list[TraceEntry]
    final: dict[str, Any]
    emails: list[dict[str, Any]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


def scenario_teams(scenario: Scenario) -> list[TeamSnapshot]:
    """The scenario's reps as teams (a team's manager: the first its reps name)."""
    teams: dict[str, list[SimRep]] = {}
    for rep in scenario.reps:
        teams.setdefault(rep.team, []).append(rep)
    out = []
    for key, reps in teams.items():
        manager = next((r for r in reps if r.manager_name or r.manager_email), None)
        members = tuple(
            TeamMember(
                r.id,
                r.name,
                r.email,
                active=r.available,
                capacity=r.capacity,
                weight=r.weight,
                away_until=scenario.start + parse_duration(r.away_for) if r.away_for else None,
                open_assignments=r.open_leads,
            )
            for r in reps
        )
        out.append(
            TeamSnapshot(
                key,
                manager.manager_name if manager else None,
                manager.manager_email if manager else None,
                members=members,
            )
        )
    return out


def _timeline(scenario: Scenario) -> list[tuple[datetime, int, Input]]:
    start = scenario.start
    form_consent = scenario.consent.record(start) if scenario.consent else None
    items: list[tuple[datetime, int, Input]] = [(start, 0, LeadUpserted(dict(scenario.lead), form_consent))]
    for i, e in enumerate(scenario.events):
        at = start + e.offset()
        items.append(
            (at, 1, EventsReceived([TrackedEvent(e.id or f"sim-{i}", e.type, at, e.url, e.name, dict(e.properties))]))
        )
    for i, t in enumerate(scenario.touches):
        at = start + t.offset()
        items.append((at, 2, TouchLogged(f"sim-touch-{i}", t.kind, at, t.rep_id)))
    for u in scenario.updates:
        items.append((start + u.offset(), 1, LeadUpserted(dict(u.attributes))))
    for c in scenario.consents:
        at = start + c.offset()
        items.append((at, 1, ConsentRecorded(c.record(at))))
    return sorted(items, key=lambda item: (item[0], item[1]))


def _describe(inp: Input) -> dict[str, Any]:
    if isinstance(inp, EventsReceived):
        e = inp.events[0]
        return {
            "input": "event",
            "type": e.type,
            **({"url": e.url} if e.url else {}),
            **({"name": e.name} if e.name else {}),
        }
    if isinstance(inp, TimerFired):
        return {"input": "timer", "name": inp.name}
    if isinstance(inp, TouchLogged):
        return {"input": "touch", "kind": inp.kind}
    if isinstance(inp, LeadUpserted):
        return {"input": "lead", "attributes": sorted(inp.attributes)}
    if isinstance(inp, ConsentRecorded):
        return {"input": "consent", "status": inp.record.status, "source": inp.record.source}
    return {"input": type(inp).__name__}


@dataclass
class Run:
    """One lead run through the decision loop on a virtual clock."""

    state: LeadState
    trace: list[TraceEntry]
    emails: list[dict[str, Any]]


def run_timeline(
    pb: CompiledPlaybook,
    lead_id: str,
    pending: list[tuple[datetime, int, Input]],
    end: datetime,
    teams: TeamBook,
    *,
    record_trace: bool = True,
    deadline: Deadline | None = None,
) -> Run:
    """Feed time-ordered inputs and due timers to ``decide`` until ``end``; carry out commands virtually.

    At most ``MAX_STEPS`` inputs; raises :class:`BudgetExceeded` as soon as ``deadline()`` answers true."""
    state = LeadState(lead_id=lead_id)
    run = Run(state, [], [])
    queue: list[tuple[datetime, Input]] = []
    pending = list(pending)

    def apply(at: datetime, inp: Input) -> None:
        before = copy.deepcopy(state) if record_trace else None
        decision = decide(state, inp, at, pb)
        teams.settle(lead_id, capacity_held(state, pb.stage_order))  # as the lead's projection does
        if before is not None:
            if not isinstance(inp, RepAssigned | AssignmentFailed):
                run.trace.append(TraceEntry(at, "input", _describe(inp)))
            _record_changes(before, state, at, run.trace)
        for cmd in decision.commands:
            if isinstance(cmd, SendEmail):
                sent = {"at": at, "kind": cmd.kind, "template": cmd.template, "to": cmd.to, "key": cmd.key}
                run.emails.append(sent)
                if record_trace:
                    run.trace.append(TraceEntry(at, "email", {k: v for k, v in sent.items() if k != "at"}))
            elif isinstance(cmd, AssignRep):
                if record_trace:
                    detail = {
                        "team": cmd.team,
                        "strategy": cmd.strategy,
                        "reason": cmd.reason,
                        "exclude": cmd.exclude_rep_ids,
                    }
                    run.trace.append(TraceEntry(at, "route", detail))
                queue.append((at, teams.assign(cmd, at)))

    for _ in range(MAX_STEPS):
        if deadline is not None and deadline():
            raise BudgetExceeded(f"stopped after {len(run.trace)} trace entries")
        if queue:
            apply(*queue.pop(0))
            continue
        next_input = pending[0][0] if pending else None
        due = min(state.timers.items(), key=lambda kv: kv[1]) if state.timers else None
        if due and due[1] <= end and (next_input is None or due[1] < next_input):
            apply(due[1], TimerFired(due[0]))
        elif next_input is not None and next_input <= end:
            at, _, inp = pending.pop(0)
            apply(at, inp)
        else:
            break
    return run


def final_view(state: LeadState) -> dict[str, Any]:
    return {
        "stage": state.stage,
        "score": state.score,
        "grade": state.grade,
        "grade_reasons": state.grade_reasons,
        "owner": state.owner.rep.id if state.owner else None,
        "team": state.owner.rep.team if state.owner else None,
        "queued_team": state.queued_team,
        "sla": state.followup.status if state.followup else None,
        "journeys": {j: r.status for j, r in state.journeys.items()},
        "enrolments": {j: r.enrolments for j, r in state.journeys.items()},
        "consent": effective_status(state.consents)[0],
        "score_explained": round(sum(c.points for c in state.score_changes), 2),
    }


def simulate(
    pb: CompiledPlaybook,
    scenario: Scenario,
    *,
    teams: Sequence[TeamSnapshot] = (),
    deadline: Deadline | None = None,
) -> SimulationResult:
    """Run ``scenario``; its reps route the lead, else ``teams`` (the store's), else two stand-ins per team."""
    end = scenario.start + parse_duration(scenario.run_for)
    book = TeamBook(scenario_teams(scenario) or teams, stand_ins=not scenario.reps and not teams)
    run = run_timeline(pb, "lead-simulated", _timeline(scenario), end, book, deadline=deadline)
    final = final_view(run.state)
    result = SimulationResult(scenario.name, run.trace, final, run.emails)
    if scenario.expect:
        result.failures = _check(scenario.expect, final, run.emails)
    return result


def _record_changes(before: LeadState, after: LeadState, at: datetime, trace: list[TraceEntry]) -> None:
    for change in after.score_changes[len(before.score_changes) :]:
        trace.append(
            TraceEntry(
                at,
                "score",
                {"points": change.points, "score": change.score_after, "rule": change.rule_id, "reason": change.reason},
            )
        )
    for moved in after.stage_changes[len(before.stage_changes) :]:
        trace.append(TraceEntry(at, "stage", {"from": moved.from_stage, "to": moved.to_stage, "rule": moved.reason}))
    if after.grade != before.grade:
        trace.append(
            TraceEntry(at, "grade", {"grade": after.grade, "points": after.grade_points, "rules": after.grade_reasons})
        )
    if after.owner and (before.owner is None or before.owner.rep.id != after.owner.rep.id):
        trace.append(
            TraceEntry(
                at, "assign", {"rep": after.owner.rep.id, "team": after.owner.rep.team, "reason": after.owner.reason}
            )
        )
    if after.queued_team and after.queued_team != before.queued_team:
        trace.append(TraceEntry(at, "assign", {"rep": None, "queued_in": after.queued_team}))
    bf, af = before.followup, after.followup
    if bf and is_open(bf) and af and af.key != bf.key:  # replaced by a reassignment: the old one ends unmet
        detail = {"status": "cancelled", "policy": bf.policy_id, "rep": bf.rep_id}
        trace.append(TraceEntry(at, "sla", detail | {"reason": f"the lead went to {af.rep_id}"}))
    if af and (bf is None or bf.key != af.key):
        trace.append(
            TraceEntry(
                at,
                "sla",
                {
                    "status": "started",
                    "policy": af.policy_id,
                    "due_at": af.due_at,
                    "remind_at": af.remind_at,
                    "rep": af.rep_id,
                },
            )
        )
    elif af and bf and af.status != bf.status:
        reason = {"reason": af.cancel_reason} if af.cancel_reason else {}
        trace.append(TraceEntry(at, "sla", {"status": af.status, "policy": af.policy_id} | reason))
    for name, when in after.timers.items():
        if before.timers.get(name) != when and not name.startswith("decay"):
            trace.append(TraceEntry(at, "timer", {"name": name, "due_at": when}))
    consent_before, consent_after = effective_status(before.consents)[0], effective_status(after.consents)[0]
    if consent_after != consent_before:
        trace.append(TraceEntry(at, "consent", {"from": consent_before, "to": consent_after}))
    # Nurture the email policy held back: skipped for consent, deferred for a send window or cap.
    for hold in (h for h in after.nurture_holds if h not in before.nurture_holds):  # the list is bounded
        detail = {"action": hold.action, "journey": hold.journey_id, "step": hold.step_id, "template": hold.template}
        trace.append(TraceEntry(at, "email_held", detail | {"reason": hold.reason, "until": hold.until}))
    last_error = before.rule_errors[-1].seq if before.rule_errors else 0
    for error in after.rule_errors:
        if error.seq > last_error:
            trace.append(
                TraceEntry(at, "rule_error", {"rule": error.rule_id, "message": error.message, "event": error.event_id})
            )
    for jid, run in after.journeys.items():
        old = before.journeys.get(jid)
        enrolled = old is None or old.enrolments != run.enrolments  # enrolled, or again (journeys[].reenroll)
        if enrolled:
            trace.append(TraceEntry(at, "journey", {"journey": jid, "status": "enrolled", "enrolment": run.enrolments}))
        if run.status != ("active" if enrolled or old is None else old.status):
            trace.append(TraceEntry(at, "journey", {"journey": jid, "status": run.status, "reason": run.exit_reason}))


def _check(expect: Expectation, final: dict[str, Any], emails: list[dict[str, Any]]) -> list[str]:
    failures = []
    for key in ("stage", "grade", "owner", "team", "sla"):
        wanted = getattr(expect, key)
        if wanted is not None and final[key] != wanted:
            failures.append(f"{key}: expected {wanted!r}, got {final[key]!r}")
    if expect.score is not None and abs(final["score"] - expect.score) > 0.01:
        failures.append(f"score: expected {expect.score}, got {final['score']}")
    if expect.emails is not None and [e["template"] for e in emails] != expect.emails:
        failures.append(f"emails: expected {expect.emails}, got {[e['template'] for e in emails]}")
    return failures


def result_as_dict(result: SimulationResult) -> dict[str, Any]:
    return asdict(result)
