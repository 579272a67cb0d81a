"""When a follow-up SLA is still owed, and when it ends unmet as ``cancelled``. Pure.

A follow-up belongs to the owner and the stage that started it. Once the lead leaves that stage for one
sales does not work (recycled, disqualified, won, lost) or goes back before it, or leaves that owner
(reassigned, or no owner at all), nobody owes it any more: it ends as ``cancelled``, its reminder, deadline
and reassignment timers go, and it leaves the overdue list, the digest, the queue and the SLA figures. A lead
moving forward while sales works it (sql to opportunity) still owes its rep the first touch. A follow-up met
late stays as it was (``overdue`` with ``met_at``): that breach happened and was answered.

The one definition of an open follow-up for every layer: the engine, the store's projection and queries, the
merge's release and the KPIs all read :data:`OPEN_SLA_STATUSES` and :func:`is_open`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Final, Literal

from rules.model import FollowUp, LeadState, SlaStatus

# Statuses of a follow-up somebody still owes (with ``met_at`` unset: an overdue one touched late is done).
OPEN_SLA_STATUSES: tuple[SlaStatus, ...] = ("pending", "overdue")
CANCELLED: Final[Literal["cancelled"]] = "cancelled"

TIMER_SLA_REMIND = "sla_remind"
TIMER_SLA_DUE = "sla_due"
TIMER_SLA_REASSIGN = "sla_reassign"
SLA_TIMERS = (TIMER_SLA_REMIND, TIMER_SLA_DUE, TIMER_SLA_REASSIGN)


def is_open(followup: FollowUp | None) -> bool:
    """Whether somebody still owes this follow-up: pending or overdue, and not touched."""
    return followup is not None and followup.status in OPEN_SLA_STATUSES and followup.met_at is None


def worked_by_sales(stage: str, stage_order: Sequence[str]) -> bool:
    """Whether sales works a lead in ``stage``: a funnel stage short of the last (won is the last; recycled,
    disqualified and lost are side stages). Capacity (rules/assignment.py) and follow-ups both ask this."""
    return stage in stage_order[:-1]


def why_not_owed(state: LeadState, stage_order: Sequence[str]) -> str | None:
    """Why the lead's open follow-up is owed no more, or None while it is (or when none is open)."""
    followup = state.followup
    if followup is None or not is_open(followup):
        return None
    owner = state.owner
    if owner is None:
        return "the lead has no owner any more"
    if owner.rep.id != followup.rep_id:
        return f"the lead went to {owner.rep.id}"
    if not worked_by_sales(state.stage, stage_order):
        return f"the lead left sales (stage {state.stage})"
    started = followup.stage
    if started in stage_order and stage_order.index(state.stage) < stage_order.index(started):
        return f"the lead went back from {started} to {state.stage}"
    return None


def cancel(state: LeadState, now: datetime, reason: str) -> None:
    """End the lead's open follow-up unmet: nobody owes it, and none of its timers may fire."""
    followup = state.followup
    if followup is None or not is_open(followup):
        return
    followup.status = CANCELLED
    followup.cancelled_at, followup.cancel_reason = now, reason
    for name in SLA_TIMERS:
        state.timers.pop(name, None)


def cancel_if_not_owed(state: LeadState, now: datetime, stage_order: Sequence[str]) -> None:
    """After every decision: the open follow-up ends when its stage or its owner did (not for runs recorded
    before this rule, ``state.legacy_followups``: their histories replay as they were made)."""
    if state.legacy_followups:
        return
    reason = why_not_owed(state, stage_order)
    if reason is not None:
        cancel(state, now, reason)


def superseded(open_keys: Iterable[str], current: FollowUp | None) -> list[str]:
    """Keys of a lead's open follow-ups in the read model that end as cancelled when a projection of the lead
    arrives: every one but its current follow-up, which the projection writes as it is (a lead owes one
    follow-up at a time; one replaced by a reassignment, or dropped by a worker before this rule, is owed no
    more)."""
    keep = current.key if current is not None else None
    return sorted(key for key in open_keys if key != keep)
