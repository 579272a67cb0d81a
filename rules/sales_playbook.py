"""The playbook's ``sales:`` section: what a rep may answer to an assignment (accept, or reject with a reason),
how long they have (the acceptance SLA), where a rejected lead goes, and what follows each outcome.

    sales:
      acceptance:
        within: 4h              # optional SLA: remind, escalate to the manager, then reroute
        remind_before: 1h
        escalate_to_manager: true
        reroute_after: 2h       # after the escalation, to another rep of the team
        max_reroutes: 2
      on_reject: reroute        # recycle | disqualify | reroute (excluding the rep who rejected)
      reject_reasons: [not_a_fit, duplicate, bad_data, no_budget, other]
      lost_reasons: [no_budget, competitor, no_decision, timing, other]
      disqualify_reasons: [not_a_fit, duplicate, bad_data, spam, other]
      outcomes:
        won: {stage: customer}
        lost: {stage: lost}     # stages.recycle [{from: lost, after: 90d}] sends it back to nurture
        disqualified: {stage: disqualified}

A reason ``other`` needs a note. Defaults apply when the section is absent (every assignment can be
accepted or rejected; no acceptance SLA).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from rules.expressions import parse_duration

if TYPE_CHECKING:
    from rules.playbook import Playbook, PlaybookIssue, Source

OTHER = "other"
REASON_PATTERN = r"^[a-z][a-z0-9_]{0,39}$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _positive(value: str | None) -> str | None:
    if value is not None and parse_duration(value).total_seconds() <= 0:
        raise ValueError(f'"{value}" must be longer than zero, like 30m, 4h or 2d')
    return value


class AcceptanceSla(_Strict):
    """How long a rep has to accept an assignment; unset ``within``: no deadline."""

    within: str | None = None
    remind_before: str | None = None
    escalate_to_manager: bool = True
    # After the deadline (and the escalation), reroute to another rep of the team, excluding this one.
    reroute_after: str | None = None
    max_reroutes: int = Field(default=2, ge=0, le=10)
    reminder_template: str = "sal_reminder"
    escalation_template: str = "sal_escalation"

    _d = field_validator("within", "remind_before", "reroute_after")(_positive)

    @model_validator(mode="after")
    def _needs_within(self) -> AcceptanceSla:
        if self.within is None and (self.remind_before or self.reroute_after):
            raise ValueError("remind_before and reroute_after count from the deadline: set within (e.g. 4h)")
        if self.within and self.remind_before and parse_duration(self.remind_before) >= parse_duration(self.within):
            raise ValueError("remind_before must be shorter than within")
        return self


class OutcomeRule(_Strict):
    """The stage an outcome moves the lead to (journeys enrol on it, stages.recycle recycles from it)."""

    stage: str


class Outcomes(_Strict):
    won: OutcomeRule = OutcomeRule(stage="customer")
    lost: OutcomeRule = OutcomeRule(stage="lost")
    disqualified: OutcomeRule = OutcomeRule(stage="disqualified")


Reason = str
OnReject = Literal["recycle", "disqualify", "reroute"]


class Sales(_Strict):
    acceptance: AcceptanceSla = AcceptanceSla()
    on_reject: OnReject = "reroute"
    # The stage a rejected lead goes to with on_reject: recycle (back to marketing).
    recycle_stage: str = "recycled"
    reject_reasons: list[Reason] = ["not_a_fit", "duplicate", "bad_data", "no_budget", OTHER]
    lost_reasons: list[Reason] = ["no_budget", "competitor", "no_decision", "timing", OTHER]
    disqualify_reasons: list[Reason] = ["not_a_fit", "duplicate", "bad_data", "spam", OTHER]
    outcomes: Outcomes = Outcomes()

    @field_validator("reject_reasons", "lost_reasons", "disqualify_reasons")
    @classmethod
    def _reasons(cls, value: list[str]) -> list[str]:
        import re

        if not value:
            raise ValueError("give at least one reason")
        bad = [r for r in value if not re.fullmatch(REASON_PATTERN, r)]
        if bad:
            raise ValueError(f"reasons are short snake_case words (like no_budget); not {', '.join(bad)}")
        if len(set(value)) != len(value):
            raise ValueError("a reason is listed twice")
        return value


def sales_issues(
    source: Source, pb: Playbook, stages: set[str], used_templates: list[tuple[tuple[str | int, ...], str]]
) -> list[PlaybookIssue]:
    """References the sales section makes: outcome stages, and the acceptance SLA's templates (only when an
    SLA is set, so playbooks without one need no such templates)."""
    issues: list[PlaybookIssue] = []
    sales = pb.sales
    # Playbooks that do not write the outcomes keep their stage lists: the defaults' stages are not checked.
    explicit = "sales" in pb.model_fields_set and "outcomes" in sales.model_fields_set
    for name in ("won", "lost", "disqualified") if explicit else ():
        stage = getattr(sales.outcomes, name).stage
        if stage not in stages:
            issues.append(
                source.issue(("sales", "outcomes", name, "stage"), f'"{stage}" is not a stage: add it to stages.side')
            )
    if sales.on_reject == "recycle" and sales.recycle_stage not in stages:
        issues.append(source.issue(("sales", "recycle_stage"), f'"{sales.recycle_stage}" is not a stage'))
    if sales.acceptance.within:
        sla = sales.acceptance
        used_templates.append((("sales", "acceptance", "reminder_template"), sla.reminder_template))
        if sla.escalate_to_manager:
            used_templates.append((("sales", "acceptance", "escalation_template"), sla.escalation_template))
    return issues
