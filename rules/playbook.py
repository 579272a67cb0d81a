"""The playbook: the one versioned YAML document marketers own (scoring, grading, stages, routing,
SLA policies, journeys), parsed into typed models, validated as a whole, compiled once per version.

Errors name the YAML line and say what is wrong in words a marketer understands.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from rules.expressions import ExpressionError, Vocabulary, compile_expression, parse_duration
from rules.locale import LOCALE_PATTERN
from rules.sales_playbook import Sales, sales_issues
from rules.sections import CompiledSection, compile_section
from rules.sources import CompiledSources, SourceMap, compile_sources

Duration = Annotated[str, Field(description="a duration such as 30m, 24h, 7d")]
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WORKING_WEEK: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri")
DEFAULT_STAGES = ["new", "mql", "sql", "opportunity", "customer"]
# "lost": where a lost deal goes (sales.outcomes.lost, rules/sales_playbook.py).
DEFAULT_SIDE_STAGES = ["disqualified", "recycled", "lost"]
GRADE_ORDER = ["A", "B", "C", "D", "E", "F"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_duration(value: str | None) -> str | None:
    if value is not None and parse_duration(value) <= timedelta(0):
        raise ValueError(f'"{value}" must be longer than zero, like 30m, 24h or 7d')
    return value


class ScoreRule(_Strict):
    id: str
    when: str
    points: float
    description: str | None = None
    max_per_day: int | None = Field(default=None, ge=1)
    max_total: int | None = Field(default=None, ge=1)


class Decay(_Strict):
    half_life: Duration
    every: Duration = "1d"

    _d = field_validator("half_life", "every")(_check_duration)


class Scoring(_Strict):
    rules: list[ScoreRule] = []
    decay: Decay | None = None


class GradeRule(_Strict):
    id: str
    when: str
    points: float
    description: str | None = None


class Grading(_Strict):
    rules: list[GradeRule] = []
    # Lowest fit points for each grade; a lead gets the best grade whose threshold it reaches.
    thresholds: dict[str, float] = {"A": 80, "B": 60, "C": 40, "D": 20, "E": 10, "F": 0}

    @field_validator("thresholds")
    @classmethod
    def _grades(cls, value: dict[str, float]) -> dict[str, float]:
        unknown = [g for g in value if g not in GRADE_ORDER]
        if unknown:
            raise ValueError(f"grades are A to F; {', '.join(unknown)} is not one")
        return value


class StageRule(_Strict):
    to: str
    when: str
    id: str | None = None


class Recycle(_Strict):
    """A lead in stage ``from_stage`` for ``after`` moves to ``to`` (back into nurture)."""

    from_stage: str = Field(alias="from")
    after: Duration
    to: str = "recycled"
    # Back to nurture with a clean behaviour score, so old points do not lift it straight back to SQL.
    reset_score: bool = True

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
    _d = field_validator("after")(_check_duration)


class Stages(_Strict):
    order: list[str] = DEFAULT_STAGES
    side: list[str] = DEFAULT_SIDE_STAGES
    rules: list[StageRule] = []
    recycle: list[Recycle] = []
    # Side stages whose leads climb the funnel again from its first stage (e.g. recycled).
    reentry: list[str] = ["recycled"]


Strategy = Literal["round_robin", "least_loaded", "weighted"]


class RoutingRule(_Strict):
    id: str
    when: str
    team: str
    strategy: Strategy | None = None
    # A named rep of the team (e.g. the account owner); the team's strategy when that rep is unavailable.
    rep: str | None = None


class Routing(_Strict):
    # Routing happens when the lead reaches this stage (or a later one) and has no owner.
    at_stage: str = "sql"
    rules: list[RoutingRule] = []
    default_team: str
    strategy: Strategy = "round_robin"
    # Where a lead goes when nobody in its team can take it (all away, inactive or at capacity).
    fallback_team: str | None = None
    # A lead waiting in a team queue is offered again this often.
    retry_every: Duration = "1h"

    _d = field_validator("retry_every")(_check_duration)


class BusinessHours(_Strict):
    """When a team works: SLA clocks with ``business_hours: true`` run only inside these hours."""

    timezone: str = "UTC"
    days: list[Weekday] = list(WORKING_WEEK)
    opens: str = Field(default="09:00", pattern=r"^([01]\d|2[0-3]):[0-5]\d$")
    closes: str = Field(default="18:00", pattern=r"^([01]\d|2[0-3]):[0-5]\d$|^24:00$")
    holidays: list[date] = []

    @field_validator("timezone")
    @classmethod
    def _tz(cls, value: str) -> str:
        from rules.clock import zone

        zone(value)
        return value

    @model_validator(mode="after")
    def _window(self) -> BusinessHours:
        if self.closes <= self.opens or not self.days:
            raise ValueError("business hours need at least one day and opens before closes")
        return self


class SlaPolicy(_Strict):
    id: str
    when: str | None = None
    first_touch: Duration = "24h"
    remind_before: Duration | None = None
    escalate_to_manager: bool = True
    reassign_after: Duration | None = None
    # How many times an untouched lead moves to the next rep before it stays with the manager.
    max_reassignments: int = Field(default=1, ge=0, le=10)
    # Count the SLA clock only in the team's business hours (sla.business_hours / sla.team_hours).
    business_hours: bool = False

    _d = field_validator("first_touch", "remind_before", "reassign_after")(_check_duration)


class Sla(_Strict):
    policies: list[SlaPolicy] = [SlaPolicy(id="default")]
    business_hours: BusinessHours | None = None
    # Per-team hours (team key -> hours), e.g. a Tokyo team and a Berlin team.
    team_hours: dict[str, BusinessHours] = {}


StepType = Literal[
    "send_email", "wait", "wait_for_event", "branch", "ab_split", "set_field", "set_stage", "add_points",
    "notify_rep", "goto", "exit",
]  # fmt: skip


class WaitUntil(_Strict):
    """Wait until the next given weekday(s) at a local time, in the lead's time zone (or the journey's)."""

    weekdays: list[Weekday] = list(WORKING_WEEK)
    time: str = Field(default="09:00", pattern=r"^([01]\d|2[0-3]):[0-5]\d$")


class Variant(_Strict):
    goto: str
    weight: int = Field(default=1, ge=1)


class Step(_Strict):
    id: str
    type: StepType
    template: str | None = None
    duration: Duration | None = None
    until: WaitUntil | None = None
    condition: str | None = None
    timeout: Duration | None = None
    on_event: str | None = None
    on_timeout: str | None = None
    then: str | None = None
    otherwise: str | None = Field(default=None, alias="else")
    variants: list[Variant] | None = None
    field: str | None = None
    value: str | int | float | bool | None = None
    stage: str | None = None
    points: float | None = None
    next: str | None = None

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
    _d = field_validator("duration", "timeout")(_check_duration)

    @model_validator(mode="after")
    def _fields_for_type(self) -> Step:
        needs = {
            "send_email": ("template",),
            "notify_rep": ("template",),
            "wait_for_event": ("condition", "timeout"),
            "branch": ("condition",),
            "ab_split": ("variants",),
            "set_field": ("field",),
            "set_stage": ("stage",),
            "add_points": ("points",),
            "goto": ("next",),
        }.get(self.type, ())
        missing = [f for f in needs if getattr(self, f) is None]
        if missing:
            raise ValueError(f'step "{self.id}" ({self.type}) needs {" and ".join(missing)}')
        if self.next and self.type in ("exit", "branch", "ab_split"):
            raise ValueError(f'step "{self.id}" ({self.type}) decides where to go itself: remove next')
        if self.type == "wait" and (self.duration is None) == (self.until is None):
            raise ValueError(f'step "{self.id}" waits: give it a duration (2d) or until (a weekday and time)')
        return self

    def targets(self) -> list[str]:
        """Step ids this step may jump to (the next step in the list is implicit)."""
        jumps = [self.on_event, self.on_timeout, self.then, self.otherwise, self.next]
        jumps += [v.goto for v in self.variants or []]
        return [j for j in jumps if j]


MAX_REENROLL_DAYS = 3650
REENROLL_FORMS = "once (the default), every_time, or {once_per: {days: N}}"


class ReenrollPeriod(_Strict):
    days: int = Field(ge=1, le=MAX_REENROLL_DAYS)


class OncePer(_Strict):
    """Enrol again when the condition becomes true again, at most once per period (rules/reenrolment.py)."""

    once_per: ReenrollPeriod


Reenroll = Literal["once", "every_time"] | OncePer


def _reenroll_problem(value: Any) -> str | None:
    """What is wrong with a journey's ``reenroll`` as written, in the marketer's words; None when it is fine."""
    if isinstance(value, str):
        if value in ("once", "every_time"):
            return None
        hint = ""
        if value.replace(" ", "_").replace("-", "_").lower() in ("every_time", "everytime", "always"):
            hint = ' Did you mean "every_time"?'
        elif value.replace(" ", "_").lower().startswith("once_per"):
            hint = " Write it as a mapping: {once_per: {days: 30}}."
        return f'reenroll "{value}" is not known: write {REENROLL_FORMS}.{hint}'
    if not isinstance(value, dict) or set(value) != {"once_per"}:
        return f"reenroll is {REENROLL_FORMS}"
    period = value["once_per"]
    if not isinstance(period, dict) or set(period) != {"days"}:
        return "once_per needs the number of days and nothing else: {once_per: {days: 30}}"
    days = period["days"]
    if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= MAX_REENROLL_DAYS:
        return f"once_per days is a whole number of days from 1 to {MAX_REENROLL_DAYS} (not {days!r})"
    return None


class Journey(_Strict):
    id: str
    enroll_when: str
    exit_when: str | None = None
    # Whether a lead whose run ended is enrolled again when enroll_when becomes true again (rules/reenrolment.py).
    reenroll: Reenroll = "once"
    # Time zone for `wait.until` when the lead has no `timezone` field (IANA name, e.g. Asia/Tokyo).
    timezone: str = "UTC"
    steps: list[Step]

    @field_validator("timezone")
    @classmethod
    def _tz(cls, value: str) -> str:
        from rules.clock import zone

        zone(value)
        return value

    @field_validator("reenroll", mode="before")
    @classmethod
    def _reenroll(cls, value: Any) -> Any:
        problem = _reenroll_problem(value)
        if problem is not None:
            raise ValueError(problem)
        return value


class Notifications(_Strict):
    rep_new_lead: str = "rep_new_lead"
    sla_reminder: str = "sla_reminder"
    sla_escalation: str = "sla_escalation"


# ------------------------------------------------------------------ email policy (consent, windows, caps)

HHMM = r"^([01]\d|2[0-3]):[0-5]\d$"
MAX_NURTURE_CAP = 100  # the caps count the send times a lead keeps; a larger cap could never bind


class QuietHours(_Strict):
    """No nurture from ``start`` to ``end`` local time (may span midnight: 21:00 to 08:00)."""

    start: str = Field(pattern=HHMM)
    end: str = Field(pattern=HHMM)

    @model_validator(mode="after")
    def _not_empty(self) -> QuietHours:
        if self.start == self.end:
            raise ValueError("quiet hours need different start and end times (remove them to send at any hour)")
        return self


class TemplateTracking(_Strict):
    """One template's tracking switches; unset ones follow the playbook's."""

    opens: bool | None = None
    clicks: bool | None = None


class Tracking(_Strict):
    """Engagement tracking in nurture mail: an open pixel and tracked links (README, "Engagement tracking").
    LEADFLOW_TRACK_OPENS / LEADFLOW_TRACK_CLICKS turn either off for the whole installation."""

    opens: bool = True
    clicks: bool = True
    # Per template, e.g. {welcome: {opens: false}}.
    templates: dict[str, TemplateTracking] = {}


class EmailPolicy(_Strict):
    """When nurture email may go to a lead. Rep and manager notifications are operational: never held."""

    # true (Japan, EU): nurture only to opted-in leads; false (US-style): send until the lead opts out.
    require_opt_in: bool = False
    # The lead's zone when it has no `timezone` field and its country is not in rules/send_window.py.
    timezone: str = "UTC"
    quiet_hours: QuietHours | None = None
    weekdays: list[Weekday] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
    # At most this many nurture emails per lead in any 24 hours / any 7 days.
    max_per_day: int | None = Field(default=None, ge=1, le=MAX_NURTURE_CAP)
    max_per_week: int | None = Field(default=None, ge=1, le=MAX_NURTURE_CAP)
    # Language of nurture mail to leads with no `locale` field and no country in rules/locale.py, and of
    # rep and manager notifications (ja, en). Unset: the sender's LEADFLOW_DEFAULT_LOCALE.
    locale: str | None = Field(default=None, pattern=LOCALE_PATTERN)
    tracking: Tracking = Tracking()

    @field_validator("timezone")
    @classmethod
    def _tz(cls, value: str) -> str:
        from rules.clock import zone

        zone(value)
        return value

    @field_validator("weekdays")
    @classmethod
    def _some_day(cls, value: list[Weekday]) -> list[Weekday]:
        if not value:
            raise ValueError("nurture needs at least one weekday to be sent on")
        return value


class Playbook(_Strict):
    name: str
    description: str | None = None
    # Custom lead fields expressions may use, besides the built-in ones.
    fields: list[str] = []
    scoring: Scoring = Scoring()
    grading: Grading = Grading()
    stages: Stages = Stages()
    routing: Routing
    sla: Sla = Sla()
    journeys: list[Journey] = []
    notifications: Notifications = Notifications()
    email: EmailPolicy = EmailPolicy()
    # The source map: variants folded into canonical sources, each with its category (rules/sources.py).
    sources: SourceMap = SourceMap()
    # The sales hand-off: acceptance, its SLA, reject and outcome reasons, what follows each outcome.
    sales: Sales = Sales()


# ------------------------------------------------------------------ errors located in the YAML


@dataclass(frozen=True)
class PlaybookIssue:
    path: str
    line: int | None
    message: str

    def __str__(self) -> str:
        where = f"line {self.line}" if self.line else "playbook"
        return f"{where} ({self.path}): {self.message}" if self.path else f"{where}: {self.message}"


class PlaybookError(ValueError):
    def __init__(self, issues: list[PlaybookIssue]) -> None:
        super().__init__("; ".join(str(i) for i in issues))
        self.issues = issues


Path = tuple[str | int, ...]


def _line_map(node: yaml.Node, path: Path, out: dict[Path, int]) -> None:
    out.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            child = (*path, key.value)
            out[child] = key.start_mark.line + 1
            _line_map(value, child, out)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _line_map(item, (*path, index), out)


def _path_text(path: Iterable[str | int]) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


@dataclass(frozen=True)
class Source:
    """A playbook document with the line of every key, so errors can point at the YAML."""

    document: dict[str, Any]
    lines: dict[Path, int]

    def line(self, path: Path) -> int | None:
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return self.lines.get(())

    def issue(self, path: Path, message: str) -> PlaybookIssue:
        return PlaybookIssue(_path_text(path), self.line(path), message)


MAX_YAML_NODES = 50_000
MAX_YAML_DEPTH = 50  # a real playbook nests about 8 deep; the composer and validators recurse per level
MAX_JOURNEY_STEPS = 500
# libyaml's parser when PyYAML has it: about ten times faster than the pure-Python one on a large draft.
_Loader: Any = getattr(yaml, "CSafeLoader", None) or yaml.SafeLoader


def _nesting_problem(text: str) -> PlaybookIssue | None:
    """Refuse a document nested deeper than ``MAX_YAML_DEPTH`` from its event stream (which PyYAML parses
    iteratively) before the recursive composer sees it."""
    depth = 0
    loader = _Loader(text)
    try:
        while loader.check_event():
            event = loader.get_event()
            if isinstance(event, yaml.MappingStartEvent | yaml.SequenceStartEvent):
                depth += 1
                if depth > MAX_YAML_DEPTH:
                    return PlaybookIssue(
                        "", event.start_mark.line + 1, f"the YAML is nested more than {MAX_YAML_DEPTH} levels deep"
                    )
            elif isinstance(event, yaml.MappingEndEvent | yaml.SequenceEndEvent):
                depth -= 1
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        if "nesting" in str(getattr(exc, "problem", "")):  # libyaml's own limit, met before our count
            line = mark.line + 1 if mark else 1
            return PlaybookIssue("", line, f"the YAML is nested more than {MAX_YAML_DEPTH} levels deep")
        return None  # the full parse below reports it with its line
    finally:
        loader.dispose()
    return None


def _expanded_size(node: yaml.Node, budget: int) -> int:
    """How many values the document holds with every alias expanded, counting no further than ``budget``
    (anchors let a few lines stand for billions of values)."""
    count, stack = 0, [node]
    while stack and count <= budget:
        current = stack.pop()
        count += 1
        if isinstance(current, yaml.MappingNode):
            for key, value in current.value:
                stack += (key, value)
        elif isinstance(current, yaml.SequenceNode):
            stack += current.value
    return count


def parse_yaml(text: str) -> Source:
    deep = _nesting_problem(text)
    if deep is not None:
        raise PlaybookError([deep])
    loader: Any = None
    try:
        loader = _Loader(text)  # rejects control characters itself (ReaderError)
        node = loader.get_single_node()  # parsed once: the node tree gives the lines, then the values
        if node is not None and _expanded_size(node, MAX_YAML_NODES) > MAX_YAML_NODES:
            raise PlaybookError(
                [
                    PlaybookIssue(
                        "",
                        1,
                        "the playbook is too large once its YAML aliases are "
                        f"expanded (more than {MAX_YAML_NODES} values)",
                    )
                ]
            )
        document = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        raise PlaybookError(
            [PlaybookIssue("", mark.line + 1 if mark else None, f"not valid YAML: {problem}")]
        ) from None
    finally:
        if loader is not None:
            loader.dispose()
    if not isinstance(document, dict) or node is None:
        raise PlaybookError([PlaybookIssue("", 1, "a playbook is a YAML mapping with name, scoring, routing, ...")])
    lines: dict[Path, int] = {}
    _line_map(node, (), lines)
    return Source(document, lines)


def _pydantic_issues(source: Source, error: ValidationError) -> list[PlaybookIssue]:
    issues = []
    for err in error.errors():
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        message = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            message = f'"{loc[-1]}" is not a playbook setting here (check the spelling and indentation)'
        elif err["type"] == "missing":
            message = f'"{loc[-1]}" is required here'
        issues.append(source.issue(loc, message))
    return issues


# ------------------------------------------------------------------ compilation and validation


@dataclass(frozen=True)
class Rule:
    """A playbook entry with its condition compiled."""

    spec: Any
    test: Callable[..., Any]


@dataclass(frozen=True)
class CompiledJourney:
    spec: Journey
    enroll: Callable[..., Any]
    exit: Callable[..., Any] | None
    # step id -> position, and compiled step conditions (branch, wait_for_event)
    index: dict[str, int]
    conditions: dict[str, Callable[..., Any]]


@dataclass(frozen=True)
class CompiledPlaybook:
    model: Playbook
    version: str
    hash: str
    scoring: tuple[Rule, ...]
    grading: tuple[Rule, ...]
    stages: tuple[Rule, ...]
    routing: tuple[Rule, ...]
    sla: tuple[tuple[SlaPolicy, Callable[..., Any] | None], ...]
    journeys: tuple[CompiledJourney, ...]
    sources: CompiledSources
    # The scoring rules in one function (rules/sections.py): what every event is scored with.
    scoring_section: CompiledSection | None = None

    @property
    def stage_order(self) -> list[str]:
        return list(self.model.stages.order)

    def duration(self, text: str) -> timedelta:
        return parse_duration(text)


def document_hash(document: dict[str, Any]) -> str:
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _compile_all(
    source: Source, pb: Playbook, issues: list[PlaybookIssue], strict: bool, regex_engine: str
) -> dict[str, Any]:
    lead_only = Vocabulary(allow_event=False, check_arguments=strict, regex_engine=regex_engine)
    lead_only = lead_only.with_fields(pb.fields)
    with_event = Vocabulary(check_arguments=strict, regex_engine=regex_engine).with_fields(pb.fields)

    def comp(text: str, path: Path, vocabulary: Vocabulary) -> Callable[..., Any]:
        try:
            return compile_expression(text, vocabulary)
        except ExpressionError as exc:
            issues.append(source.issue(path, f"{exc.message} In: {text}"))
            return lambda *args: False

    out: dict[str, Any] = {}
    out["scoring"] = tuple(
        Rule(r, comp(r.when, ("scoring", "rules", i, "when"), with_event)) for i, r in enumerate(pb.scoring.rules)
    )
    out["scoring_section"] = compile_section([r.when for r in pb.scoring.rules], with_event)
    out["grading"] = tuple(
        Rule(r, comp(r.when, ("grading", "rules", i, "when"), lead_only)) for i, r in enumerate(pb.grading.rules)
    )
    out["stages"] = tuple(
        Rule(r, comp(r.when, ("stages", "rules", i, "when"), lead_only)) for i, r in enumerate(pb.stages.rules)
    )
    out["routing"] = tuple(
        Rule(r, comp(r.when, ("routing", "rules", i, "when"), lead_only)) for i, r in enumerate(pb.routing.rules)
    )
    out["sla"] = tuple(
        (p, comp(p.when, ("sla", "policies", i, "when"), lead_only) if p.when else None)
        for i, p in enumerate(pb.sla.policies)
    )
    journeys = []
    for i, j in enumerate(pb.journeys):
        conditions = {
            step.id: comp(
                step.condition,
                ("journeys", i, "steps", s, "condition"),
                with_event if step.type == "wait_for_event" else lead_only,
            )
            for s, step in enumerate(j.steps)
            if step.condition
        }
        journeys.append(
            CompiledJourney(
                spec=j,
                enroll=comp(j.enroll_when, ("journeys", i, "enroll_when"), lead_only),
                exit=comp(j.exit_when, ("journeys", i, "exit_when"), lead_only) if j.exit_when else None,
                index={step.id: s for s, step in enumerate(j.steps)},
                conditions=conditions,
            )
        )
    out["journeys"] = tuple(journeys)
    out["sources"] = compile_sources(pb.sources)
    return out


def _check_references(
    source: Source,
    pb: Playbook,
    templates: set[str] | None,
    teams: set[str] | None,
    issues: list[PlaybookIssue],
    strict: bool = True,
) -> None:
    stages = set(pb.stages.order) | set(pb.stages.side)
    if not pb.stages.order or pb.stages.order[0] != "new":
        issues.append(source.issue(("stages", "order"), 'the stage list must start with "new"'))
    for i, rule in enumerate(pb.stages.rules):
        if rule.to not in stages:
            issues.append(source.issue(("stages", "rules", i, "to"), f'"{rule.to}" is not a stage in stages.order'))
    if pb.routing.at_stage not in stages:
        issues.append(source.issue(("routing", "at_stage"), f'"{pb.routing.at_stage}" is not a stage'))
    for section, key in (("scoring", "rules"), ("grading", "rules"), ("routing", "rules"), ("sla", "policies")):
        seen: set[str] = set()
        for i, item in enumerate(getattr(getattr(pb, section), key)):
            if item.id in seen:
                issues.append(source.issue((section, key, i, "id"), f'the id "{item.id}" is used twice'))
            seen.add(item.id)
    if teams is not None:
        wanted: list[tuple[tuple[str | int, ...], str]] = [(("routing", "default_team"), pb.routing.default_team)]
        if pb.routing.fallback_team:
            wanted.append((("routing", "fallback_team"), pb.routing.fallback_team))
        wanted += [(("routing", "rules", i, "team"), r.team) for i, r in enumerate(pb.routing.rules)]
        for path, team in wanted:
            if team not in teams:
                issues.append(
                    source.issue(path, f'no team "{team}" exists (teams: {", ".join(sorted(teams)) or "none"})')
                )
    used_templates: list[tuple[Path, str]] = [
        (("notifications", name), value) for name, value in pb.notifications.model_dump().items()
    ]
    # A misspelt template under email.tracking would silently leave the real one tracked.
    used_templates += [(("email", "tracking", "templates", name), name) for name in pb.email.tracking.templates]
    journey_ids: set[str] = set()
    for i, journey in enumerate(pb.journeys):
        if journey.id in journey_ids:
            issues.append(source.issue(("journeys", i, "id"), f'the journey id "{journey.id}" is used twice'))
        journey_ids.add(journey.id)
        if not journey.steps:
            issues.append(source.issue(("journeys", i, "steps"), "a journey needs at least one step"))
        if strict and len(journey.steps) > MAX_JOURNEY_STEPS:
            issues.append(
                source.issue(
                    ("journeys", i, "steps"),
                    f"a journey has at most {MAX_JOURNEY_STEPS} steps ({len(journey.steps)} here); split it",
                )
            )
        step_ids: set[str] = set()
        for s, step in enumerate(journey.steps):
            if step.id in step_ids:
                issues.append(source.issue(("journeys", i, "steps", s, "id"), f'the step id "{step.id}" is used twice'))
            step_ids.add(step.id)
            if step.template:
                used_templates.append((("journeys", i, "steps", s, "template"), step.template))
            if step.stage and step.stage not in stages:
                issues.append(source.issue(("journeys", i, "steps", s, "stage"), f'"{step.stage}" is not a stage'))
        for s, step in enumerate(journey.steps):
            for target in step.targets():
                if target not in step_ids:
                    issues.append(
                        source.issue(
                            ("journeys", i, "steps", s),
                            f'step "{step.id}" goes to "{target}", which is not a step of journey {journey.id}',
                        )
                    )
        issues.extend(_journey_graph_issues(source, i, journey))
    for r, recycle in enumerate(pb.stages.recycle):
        for key, stage in (("from", recycle.from_stage), ("to", recycle.to)):
            if stage not in stages:
                issues.append(source.issue(("stages", "recycle", r, key), f'"{stage}" is not a stage'))
    if not pb.sla.business_hours:
        for i, policy in enumerate(pb.sla.policies):
            if policy.business_hours:
                issues.append(
                    source.issue(
                        ("sla", "policies", i, "business_hours"),
                        "this policy counts business hours: define sla.business_hours",
                    )
                )
    if teams is not None:
        for team in pb.sla.team_hours:
            if team not in teams:
                issues.append(source.issue(("sla", "team_hours", team), f'no team "{team}" exists'))
    issues.extend(sales_issues(source, pb, stages, used_templates))
    if templates is not None:
        for path, name in used_templates:
            if name not in templates:
                issues.append(
                    source.issue(path, f'no email template "{name}" (templates: {", ".join(sorted(templates))})')
                )


def _all_successors(journey: Journey) -> list[list[int]]:
    index = {st.id: n for n, st in enumerate(journey.steps)}
    return [_successors(journey, position, index) for position in range(len(journey.steps))]


def _successors(journey: Journey, position: int, index: dict[str, int]) -> list[int]:
    step = journey.steps[position]
    jumps = [index[t] for t in step.targets() if t in index]
    falls_through = (
        step.type not in ("exit", "goto", "ab_split")
        and not (step.type == "branch" and step.then and step.otherwise)
        and not (step.type == "wait_for_event" and step.on_event and step.on_timeout)
    )
    if falls_through and position + 1 < len(journey.steps):
        jumps.append(position + 1)
    return jumps


def _loop_without_wait(journey: Journey, waits: set[int]) -> list[int] | None:
    """A cycle through non-waiting steps (as step positions, first step repeated at the end), found by an
    iterative depth-first search: a journey of thousands of chained steps cannot exhaust the stack."""
    successors = _all_successors(journey)
    state: dict[int, int] = {}  # 1: on the current path, 2: done
    for root in range(len(journey.steps)):
        if root in waits or root in state:
            continue
        path, stack = [root], [iter(successors[root])]
        state[root] = 1
        while stack:
            nxt = next((n for n in stack[-1] if n not in waits and state.get(n) != 2), None)
            if nxt is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            else:
                state[nxt] = 1
                path.append(nxt)
                stack.append(iter(successors[nxt]))
    return None


def _journey_graph_issues(source: Source, i: int, journey: Journey) -> list[PlaybookIssue]:
    """Unreachable steps, and loops a lead could spin in without ever waiting."""
    if not journey.steps:
        return []
    issues = []
    successors = _all_successors(journey)
    seen, todo = {0}, [0]
    while todo:
        for nxt in successors[todo.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    for position, step in enumerate(journey.steps):
        if position not in seen:
            issues.append(source.issue(("journeys", i, "steps", position), f'step "{step.id}" can never be reached'))
    waits = {n for n, st in enumerate(journey.steps) if st.type in ("wait", "wait_for_event")}
    loop = _loop_without_wait(journey, waits)
    if loop:
        names = " -> ".join(journey.steps[n].id for n in loop)
        message = f"these steps loop without a wait: {names}; add a wait step"
        issues.append(source.issue(("journeys", i, "steps", loop[-1]), message))
    return issues


CONDITION_KEYS = {"when", "enroll_when", "exit_when", "condition"}


def _raw_expression_issues(source: Source) -> list[PlaybookIssue]:
    """Check every condition string in a document that failed the schema, so one typo in a setting
    does not hide a broken rule elsewhere."""
    fields = source.document.get("fields")
    vocabulary = (
        Vocabulary().with_fields(f for f in fields if isinstance(f, str)) if isinstance(fields, list) else Vocabulary()
    )
    issues: list[PlaybookIssue] = []

    def walk(node: Any, path: Path) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key in CONDITION_KEYS and isinstance(value, str):
                    try:
                        compile_expression(value, vocabulary)
                    except ExpressionError as exc:
                        issues.append(source.issue((*path, key), f"{exc.message} In: {value}"))
                else:
                    walk(value, (*path, key))
        elif isinstance(node, list):
            for i, item in enumerate(node):
                walk(item, (*path, i))

    walk(source.document, ())
    return issues


def compile_source(
    source: Source,
    *,
    version: str = "draft",
    templates: set[str] | None = None,
    teams: set[str] | None = None,
    strict: bool = True,
    regex_engine: str = "re2",
) -> CompiledPlaybook:
    """Validate the whole playbook (raising every problem at once) and compile its rules.

    ``strict=False`` compiles a version published before today's limits (argument ranges, journey size):
    it must keep running, and its out-of-range rules are false or recorded as rule errors at run time."""
    try:
        model = Playbook.model_validate(source.document)
    except ValidationError as exc:
        raise PlaybookError(_pydantic_issues(source, exc) + _raw_expression_issues(source)) from None
    issues: list[PlaybookIssue] = []
    compiled = _compile_all(source, model, issues, strict, regex_engine)
    _check_references(source, model, templates, teams, issues, strict)
    if issues:
        raise PlaybookError(issues)
    return CompiledPlaybook(model=model, version=version, hash=document_hash(source.document), **compiled)


def load_playbook_text(text: str, **kwargs: Any) -> CompiledPlaybook:
    return compile_source(parse_yaml(text), **kwargs)


_CACHE: dict[str, CompiledPlaybook] = {}


def compiled_from_document(document: dict[str, Any], version: str, regex_engine: str = "re2") -> CompiledPlaybook:
    """Compile a published playbook once per worker process (keyed by content hash and regex engine:
    versions are immutable, so this cache is deterministic for workflow code)."""
    key = f"{version}:{document_hash(document)}:{regex_engine}"
    cached = _CACHE.get(key)
    if cached is None:
        cached = compile_source(Source(document, {}), version=version, strict=False, regex_engine=regex_engine)
        _CACHE[key] = cached
    return cached
