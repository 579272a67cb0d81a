"""The sales hand-off, pure: a rep accepts or rejects an assignment (SAL), the acceptance SLA reminds,
escalates and reroutes, and people record outcomes and manual changes (stage, won, lost, disqualify,
reassign, pause and resume nurture).

:func:`refusal` says why a change cannot apply to the lead as it is (the workflow update's validator asks it,
and :func:`apply_change` asks it again when the change's turn comes, since two updates may pass validation
together). Every applied change becomes a touchpoint ``sales.<action>`` naming who made it and why, so it
shows on the lead's timeline. The playbook's ``sales:`` section (rules/sales_playbook.py) decides reasons,
the SLA and what follows each outcome.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from rules.expressions import parse_duration
from rules.followups import cancel as cancel_followup
from rules.model import (
    Acceptance,
    AssignRep,
    Command,
    LeadState,
    NurturePaused,
    Outcome,
    Rep,
    SalesChange,
    SendEmail,
    Touchpoint,
    TrackedEvent,
)
from rules.playbook import CompiledPlaybook
from rules.sales_playbook import OTHER

TIMER_SAL_REMIND = "sal_remind"
TIMER_SAL_DUE = "sal_due"
TIMER_SAL_REROUTE = "sal_reroute"
SAL_TIMERS = (TIMER_SAL_REMIND, TIMER_SAL_DUE, TIMER_SAL_REROUTE)
CLOSING = {"won": "won", "lost": "lost", "disqualify": "disqualified"}


@dataclass(frozen=True)
class Refusal:
    """Why a change does not apply: ``conflict`` (the lead's state forbids it now: HTTP 409) or ``invalid``
    (the change itself is wrong for this playbook: HTTP 422)."""

    kind: Literal["conflict", "invalid"]
    message: str


def _conflict(message: str) -> Refusal:
    return Refusal("conflict", message)


def _invalid(message: str) -> Refusal:
    return Refusal("invalid", message)


def _reason_refusal(reason: str | None, note: str | None, allowed: list[str], what: str) -> Refusal | None:
    if not reason:
        return _invalid(f"reason: give the reason {what} (one of {', '.join(allowed)})")
    if reason not in allowed:
        return _invalid(f"reason: {reason!r} is not one of {', '.join(allowed)} (the playbook's sales section)")
    if reason == OTHER and not (note and note.strip()):
        return _invalid("note: the reason 'other' needs a note saying what it is")
    return None


def refusal(state: LeadState, change: SalesChange, pb: CompiledPlaybook) -> Refusal | None:
    """Why ``change`` cannot apply to the lead now, or None. Never changes the state."""
    sales, action = pb.model.sales, change.action
    if state.created_at is None:
        return _conflict("there is no lead yet: only events were posted")
    if action in ("accept", "reject"):
        offered = state.acceptance
        if change.assignment_key is not None and (offered is None or offered.assignment_key != change.assignment_key):
            return _conflict("this link is for an assignment that is no longer current: the lead has moved on")
        if offered is None or offered.status != "pending" or state.owner is None:
            return _conflict("no assignment of this lead waits for acceptance")
        if change.by.rep_id is not None and change.by.role == "rep" and change.by.rep_id != offered.rep_id:
            return _conflict(f"the lead was offered to {offered.rep_id}, not to you")
        if action == "reject":
            return _reason_refusal(change.reason, change.note, sales.reject_reasons, "for rejecting")
        return None
    if action in CLOSING:
        if state.outcome is not None:
            closed = state.outcome
            return _conflict(
                f"the lead is already {closed.kind} ({closed.at:%Y-%m-%d} by {closed.by}): "
                "set its stage to reopen it first"
            )
        if action == "won":
            if change.amount is None or change.amount <= 0 or not change.currency:
                return _invalid("amount and currency: a won deal needs its amount (above 0) and currency")
            return None
        allowed = sales.lost_reasons if action == "lost" else sales.disqualify_reasons
        return _reason_refusal(change.reason, change.note, allowed, "the lead was " + CLOSING[action])
    if action == "stage":
        order = pb.stage_order
        if change.stage not in order:
            return _invalid(f"stage: {change.stage!r} is not a funnel stage ({', '.join(order)}); use won, lost or "
                            "disqualify to close the lead")  # fmt: skip
        if change.stage == state.stage:
            return _conflict(f"the lead is already in stage {state.stage}")
        return None
    if action == "reassign":
        if not change.team:
            return _invalid("team or rep_id: say who takes the lead")
        if change.rep_id is not None and state.owner is not None and state.owner.rep.id == change.rep_id:
            return _conflict(f"the lead is already {change.rep_id}'s")
        return None
    if action == "pause_nurture":
        if state.nurture_paused is not None:
            paused = state.nurture_paused
            return _conflict(f"nurture is already paused ({paused.at:%Y-%m-%d %H:%M} by {paused.by})")
        return None
    if action == "resume_nurture":
        return _conflict("nurture is not paused") if state.nurture_paused is None else None
    return _invalid(f"unknown action {action!r}")


def apply_change(
    state: LeadState, change: SalesChange, now: datetime, pb: CompiledPlaybook, out: list[Command]
) -> tuple[Refusal | None, Touchpoint | None]:
    """Apply ``change`` (or refuse it, changing nothing). Returns the refusal, or the timeline entry."""
    refused = refusal(state, change, pb)
    if refused is not None:
        return refused, None
    # rules.engine builds on this module's inputs; its helpers are imported when first used.
    from rules.engine import _set_stage

    sales, action, who = pb.model.sales, change.action, change.by.label()
    why = f"{action} by {who}" + (f": {change.reason}" if change.reason else "")
    if action == "accept":
        _decide_acceptance(state, "accepted", now, who, None)
        state.acceptance_declined = []
    elif action == "reject":
        owner = state.owner
        assert owner is not None  # refusal() checked it
        _decide_acceptance(state, "rejected", now, who, change.reason)
        state.acceptance_declined.append(owner.rep.id)
        if sales.on_reject == "reroute":
            leave_owner(state, now, why)
            reason = f"rejected by {owner.rep.id} ({change.reason})"
            _ask_assignment(state, owner.rep.team, pb, reason, list(state.acceptance_declined), out)
        elif sales.on_reject == "recycle":
            _recycle(state, now, sales.recycle_stage, why, pb)
        else:
            leave_owner(state, now, why)  # the rep turned it down: nobody owns a disqualified rejection
            _close(state, change, "disqualified", now, pb)
    elif action in CLOSING:
        _close(state, change, CLOSING[action], now, pb)  # type: ignore[arg-type]
    elif action == "stage":
        assert change.stage is not None
        state.outcome = None  # a closed lead set back into the funnel is open again
        _set_stage(state, change.stage, now, why, pb)
    elif action == "reassign":
        assert change.team is not None
        leave_owner(state, now, why)
        state.acceptance_declined = []
        reason = f"reassigned by {who}" + (f": {change.note}" if change.note else "")
        _ask_assignment(state, change.team, pb, reason, [], out, change.rep_id)
    elif action == "pause_nurture":
        state.nurture_paused = NurturePaused(now, who, change.reason or change.note)
    elif action == "resume_nurture":
        state.nurture_paused = None
    return None, _timeline_entry(change, now)


def _timeline_entry(change: SalesChange, now: datetime) -> Touchpoint:
    fields: dict[str, Any] = {
        "reason": change.reason, "note": change.note, "stage": change.stage,
        "amount": str(change.amount) if change.amount is not None else None, "currency": change.currency,
        "close_date": change.close_date.isoformat() if change.close_date else None, "product": change.product,
        "rep_id": change.rep_id, "team": change.team, "by_kind": change.by.kind, "by_id": change.by.id,
        "by_role": change.by.role,
    }  # fmt: skip
    properties = {k: v for k, v in fields.items() if v is not None}
    event = TrackedEvent(change.change_id, f"sales.{change.action}", now, None, change.by.label(), properties)
    return Touchpoint(event, now)


def _decide_acceptance(state: LeadState, status: str, now: datetime, who: str, reason: str | None) -> None:
    offered = state.acceptance
    assert offered is not None
    offered.status, offered.decided_at, offered.decided_by, offered.reason = status, now, who, reason  # type: ignore[assignment]
    for name in SAL_TIMERS:
        state.timers.pop(name, None)


def _close(state: LeadState, change: SalesChange, kind: str, now: datetime, pb: CompiledPlaybook) -> None:
    """Won, lost or disqualified: the outcome, the playbook's stage for it, and no follow-up or acceptance
    left pending (the owner stays on record; capacity is released as the stage leaves the working funnel)."""
    from rules.engine import _set_stage

    rule = getattr(pb.model.sales.outcomes, kind)
    who = change.by.label()
    fields = (change.reason, change.note, change.amount, change.currency, change.close_date, change.product)
    state.outcome = Outcome(kind, now, who, *fields)  # type: ignore[arg-type]  # kind: an OutcomeKind
    _end_hand_off(state, now, f"the lead was {kind}")
    state.acceptance_declined = []
    _set_stage(state, rule.stage, now, f"{kind} by {who}" + (f": {change.reason}" if change.reason else ""), pb)


def _recycle(state: LeadState, now: datetime, stage: str, why: str, pb: CompiledPlaybook) -> None:
    """Back to marketing with a clean behaviour score, so old points do not lift it straight back to sales."""
    from rules.engine import _set_stage, explain_points

    leave_owner(state, now, why)
    state.acceptance_declined = []
    if state.score > 0:
        explain_points(state, -state.score, now, "recycle", f"score reset: {why}")
    _set_stage(state, stage, now, why, pb)


def _end_hand_off(state: LeadState, now: datetime, why: str) -> None:
    """No follow-up or acceptance stays owed once sales is done with the lead (or the lead leaves its rep): the
    follow-up ends cancelled (rules/followups.py), the acceptance offer goes."""
    cancel_followup(state, now, why)
    if state.acceptance is not None and state.acceptance.status == "pending":
        state.acceptance = None
    for name in SAL_TIMERS:
        state.timers.pop(name, None)


def leave_owner(state: LeadState, now: datetime, why: str) -> None:
    """The lead leaves its rep (rejected, rerouted, reassigned): owner, open follow-up and acceptance go."""
    state.owner, state.pending_assignment, state.queued_team = None, None, None
    _end_hand_off(state, now, why)


def _ask_assignment(
    state: LeadState,
    team: str,
    pb: CompiledPlaybook,
    reason: str,
    exclude: list[str],
    out: list[Command],
    rep_id: str | None = None,
) -> None:
    from rules.engine import _request_assignment

    _request_assignment(state, team, pb.model.routing.strategy, reason, exclude, out, rep_id)
    command = out[-1]
    assert isinstance(command, AssignRep)
    command.local = False  # beside concurrent updates: a normal activity (see AssignRep.local)


# ------------------------------------------------------------------ acceptance on assignment and its SLA


def offer(state: LeadState, key: str, rep: Rep, now: datetime, pb: CompiledPlaybook, mail: SendEmail) -> None:
    """A new assignment waits for the rep's acceptance; with an acceptance SLA, its timers start. The rep's
    notification carries what its accept/reject links are signed for (the mailer signs them)."""
    sla = pb.model.sales.acceptance
    due = now + parse_duration(sla.within) if sla.within else None
    state.acceptance = Acceptance(key, rep.id, now, due_at=due)
    for name in SAL_TIMERS:
        state.timers.pop(name, None)
    if due is not None:
        state.timers[TIMER_SAL_DUE] = due
        if sla.remind_before:
            state.timers[TIMER_SAL_REMIND] = due - parse_duration(sla.remind_before)
    mail.context["acceptance"] = _link_context(state.acceptance, pb)


def _link_context(offered: Acceptance, pb: CompiledPlaybook) -> dict[str, Any]:
    """What a rep's mail needs for its accept/reject links (activities/sal_tokens.py signs them)."""
    due = offered.due_at
    return {
        "assignment": offered.assignment_key, "rep_id": offered.rep_id, "due_at": due.isoformat() if due else None,
        "reasons": list(pb.model.sales.reject_reasons),
    }  # fmt: skip


def on_timer(state: LeadState, name: str, now: datetime, pb: CompiledPlaybook, out: list[Command]) -> None:
    """An acceptance SLA timer fired: remind the rep, escalate to the manager, then reroute."""
    from rules.engine import _staff_email

    state.timers.pop(name, None)
    offered, owner, sla = state.acceptance, state.owner, pb.model.sales.acceptance
    if offered is None or owner is None or offered.status != "pending" or owner.rep.id != offered.rep_id:
        return
    rep = owner.rep
    if name == TIMER_SAL_REMIND:
        offered.reminded_at = now
        mail = _staff_email(state, "sal_reminder", sla.reminder_template, rep.email, rep.name, pb)
        mail.context["acceptance"] = _link_context(offered, pb)
        out.append(mail)
    elif name == TIMER_SAL_DUE:
        offered.escalated_at = now
        if sla.escalate_to_manager and rep.manager_email:
            template = sla.escalation_template
            mail = _staff_email(state, "sal_escalation", template, rep.manager_email, rep.manager_name, pb)
            # Not under "acceptance": the manager's mail carries no links signed for the rep.
            mail.context["acceptance_due"] = offered.due_at.isoformat() if offered.due_at else None
            out.append(mail)
        if sla.reroute_after:
            state.timers[TIMER_SAL_REROUTE] = now + parse_duration(sla.reroute_after)
    elif name == TIMER_SAL_REROUTE and len(state.acceptance_declined) < sla.max_reroutes:
        offered.status, offered.decided_at, offered.decided_by = "rerouted", now, "acceptance SLA"
        state.acceptance_declined.append(rep.id)
        state.acceptance = offered  # kept on record until the next offer replaces it
        state.owner, state.pending_assignment = None, None
        reason = f"not accepted by {rep.id} within {sla.within}"
        cancel_followup(state, now, reason)
        _ask_assignment(state, rep.team, pb, reason, list(state.acceptance_declined), out)


def awaiting_acceptance(state: LeadState) -> bool:
    return state.acceptance is not None and state.acceptance.status == "pending" and state.owner is not None
