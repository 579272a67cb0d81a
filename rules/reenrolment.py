"""Whether a lead whose run of a journey ended is enrolled in it again (``journeys[].reenroll``). Pure.

``once`` (the default): one run per lead, ever. ``every_time``: a new run each time the enrolment condition
becomes true *again* after the previous run ended: it must have been seen false since (a run that ends while
the condition still holds does not start over at once, which would loop). ``{once_per: {days: N}}``: as
``every_time``, but a condition that becomes true again within N days of the previous enrolment is let go (as
Marketo's "once every N days"): the lead waits for the next time it becomes true after that.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from rules.model import JourneyRun
from rules.playbook import OncePer, Reenroll


def may_enrol_again(policy: Reenroll) -> bool:
    """Whether the policy ever enrols a lead twice (``once`` does not: its ended runs are not looked at)."""
    return policy != "once"


def enrol_again(run: JourneyRun, holds: bool, policy: Reenroll, now: datetime) -> bool:
    """Whether the ended ``run`` starts over now, given whether the enrolment condition ``holds`` now.

    Notes on ``run`` that the condition was seen false (``rearmed``); a true condition after that is used up
    by this call, whether it enrols or falls within ``once_per``'s window."""
    if run.status == "active" or not may_enrol_again(policy):
        return False
    if not holds:
        run.rearmed = True
        return False
    if not run.rearmed:
        return False
    run.rearmed = False
    if isinstance(policy, OncePer) and run.enrolled_at is not None:
        return now >= run.enrolled_at + timedelta(days=policy.once_per.days)
    return True


def next_run(run: JourneyRun, now: datetime) -> JourneyRun:
    """The lead's new run of the journey, counting its enrolments."""
    return JourneyRun(run.journey_id, enrolled_at=now, enrolments=run.enrolments + 1)
