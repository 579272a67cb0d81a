"""Bounces and complaints in the pure core: what ends nurture to an address, and how the lead shows it."""

from __future__ import annotations

from datetime import timedelta

import pytest

from rules import decide
from rules.consent import effective_status
from rules.deliverability import soft_bounces_in_a_row, verdict, verdict_reason
from rules.engagement import variant_label
from rules.model import EmailFeedback, LeadState, LeadUpserted, TimerFired
from tests.test_rules_email_policy import TIMER, TOKYO_NIGHT, US_STYLE, nurture, playbook


@pytest.mark.parametrize(
    ("history", "expected"),
    [
        (["soft_bounce"], None),
        (["soft_bounce", "soft_bounce"], None),
        (["soft_bounce", "soft_bounce", "soft_bounce"], "hard_bounce"),
        (["soft_bounce", "soft_bounce", "delivered", "soft_bounce"], None),  # not in a row
        (["soft_bounce", "email_open", "soft_bounce", "soft_bounce"], None),  # an open shows delivery
        (["delivered", "soft_bounce", "soft_bounce", "soft_bounce"], "hard_bounce"),
    ],
)
def test_three_soft_bounces_in_a_row_count_as_a_hard_one(history: list[str], expected: str | None) -> None:
    assert verdict("soft_bounce", history) == expected
    assert soft_bounces_in_a_row(history) == len(history) - max(
        (i + 1 for i, kind in enumerate(history) if kind != "soft_bounce"), default=0
    )


def test_hard_bounces_and_complaints_end_mail_at_once_deliveries_never() -> None:
    assert verdict("hard_bounce", []) == "hard_bounce" and verdict("complaint", []) == "complaint"
    assert verdict("delivered", ["soft_bounce"] * 5 + ["delivered"]) is None
    assert verdict_reason("soft_bounce", "452 mailbox full").startswith("3 soft bounces in a row")


def test_a_hard_bounce_stops_the_waiting_journeys_next_send_and_shows_why() -> None:
    state = LeadState("lead-1")
    assert nurture(decide(state, LeadUpserted({"email": "a@example.com"}), TOKYO_NIGHT, US_STYLE).commands) == [
        "welcome"
    ]
    bounce = EmailFeedback("hard_bounce", TOKYO_NIGHT + timedelta(hours=1), "550 5.1.1 user unknown", "k1", "welcome")
    decide(state, bounce, TOKYO_NIGHT + timedelta(hours=1), US_STYLE)
    decide(state, bounce, TOKYO_NIGHT + timedelta(hours=2), US_STYLE)  # the relay resent its webhook
    assert state.email_feedback == [bounce]
    assert effective_status(state.consents)[0] == "unknown"  # a bounce is no opt-out
    due = state.timers[TIMER]
    assert nurture(decide(state, TimerFired(TIMER), due, US_STYLE).commands) == []
    hold = state.nurture_holds[-1]
    assert hold.action == "skipped" and "hard-bounced" in hold.reason and "550 5.1.1" in hold.reason


def test_a_complaint_is_an_opt_out_with_source_complaint() -> None:
    state = LeadState("lead-1")
    decide(state, LeadUpserted({"email": "a@example.com"}), TOKYO_NIGHT, US_STYLE)
    later = TOKYO_NIGHT + timedelta(days=1)
    decide(state, EmailFeedback("complaint", later + timedelta(days=9), "abuse report"), later, US_STYLE)
    status, record = effective_status(state.consents)
    assert status == "opted_out" and record is not None
    assert (record.source, record.at, record.wording) == ("complaint", later, "abuse report")  # never in the future
    assert nurture(decide(state, TimerFired(TIMER), state.timers[TIMER], US_STYLE).commands) == []


def test_an_ab_split_labels_the_sends_after_it() -> None:
    split = playbook(
        {"require_opt_in": False},
        [
            {
                "id": "ab",
                "enroll_when": 'stage == "new"',
                "steps": [
                    {
                        "id": "split",
                        "type": "ab_split",
                        "variants": [{"goto": "a", "weight": 1}, {"goto": "b", "weight": 1}],
                    },
                    {"id": "a", "type": "send_email", "template": "welcome", "next": "done"},
                    {"id": "b", "type": "send_email", "template": "case_study"},
                    {"id": "done", "type": "exit"},
                ],
            }
        ],
    )
    state = LeadState("lead-7")
    (mail,) = decide(state, LeadUpserted({"email": "v@example.com"}), TOKYO_NIGHT, split).commands
    assert mail.variant == f"split={state.journeys['ab'].variants['split']}"
    assert variant_label({}) is None and variant_label({"s2": "x", "s1": "y"}) == "s1=y,s2=x"
