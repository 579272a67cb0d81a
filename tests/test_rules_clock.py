"""Calendar arithmetic: journey waits until a weekday/time, SLA clocks in business hours."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rules import decide, load_playbook_text
from rules.clock import add_business_time, next_weekday_time
from rules.model import EventsReceived, LeadState, LeadUpserted, Rep, RepAssigned, TrackedEvent

TOKYO = ZoneInfo("Asia/Tokyo")
WEEK = ["mon", "tue", "wed", "thu", "fri"]
HOURS = {"tz_name": "Asia/Tokyo", "weekdays": WEEK, "opens": "09:00", "closes": "18:00"}


def tokyo(*args: int) -> datetime:
    return datetime(*args, tzinfo=TOKYO)


def test_business_time_skips_the_night_and_the_weekend() -> None:
    friday_5pm = tokyo(2026, 11, 27, 17)
    assert add_business_time(friday_5pm, timedelta(hours=4), **HOURS) == tokyo(2026, 11, 30, 12)
    early = tokyo(2026, 11, 30, 6)  # before opening: the clock starts at 09:00
    assert add_business_time(early, timedelta(hours=2), **HOURS) == tokyo(2026, 11, 30, 11)
    exact = tokyo(2026, 11, 30, 9)
    assert add_business_time(exact, timedelta(hours=9), **HOURS) == tokyo(2026, 11, 30, 18)


def test_holidays_are_not_business_days() -> None:
    new_year = frozenset({date(2026, 12, 31), date(2027, 1, 1)})
    wednesday_5pm = tokyo(2026, 12, 30, 17)
    due = add_business_time(wednesday_5pm, timedelta(hours=2), holidays=new_year, **HOURS)
    assert due == tokyo(2027, 1, 4, 10)  # Thu and Fri are holidays, then the weekend


def test_results_keep_the_callers_time_zone() -> None:
    start = datetime(2026, 11, 27, 8, tzinfo=UTC)  # 17:00 in Tokyo on a Friday
    due = add_business_time(start, timedelta(hours=4), **HOURS)
    assert due.tzinfo is UTC and due == datetime(2026, 11, 30, 3, tzinfo=UTC)


def test_next_weekday_time_is_strictly_after_now() -> None:
    monday_930 = tokyo(2026, 11, 30, 9, 30)
    assert next_weekday_time(monday_930, ["mon"], "09:30", "Asia/Tokyo") == tokyo(2026, 12, 7, 9, 30)
    assert next_weekday_time(monday_930, ["mon", "tue"], "09:30", "Asia/Tokyo") == tokyo(2026, 12, 1, 9, 30)


@settings(max_examples=200, deadline=None)
@given(
    start=st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2027, 12, 31), timezones=st.just(UTC)),
    minutes=st.integers(min_value=1, max_value=60 * 100),
)
def test_business_time_always_lands_inside_business_hours(start: datetime, minutes: int) -> None:
    due = add_business_time(start, timedelta(minutes=minutes), **HOURS).astimezone(TOKYO)
    assert due > start
    assert due.weekday() < 5 and (9, 0) <= (due.hour, due.minute) and (due.hour, due.minute) <= (18, 0)
    # Never less than the requested time has passed on the wall clock.
    assert due - start >= timedelta(minutes=minutes)


PLAYBOOK = """
name: hours
scoring:
  rules:
    - {id: pricing, when: 'event.type == "page_view"', points: 100}
stages:
  rules:
    - {id: sql, to: sql, when: score >= 100}
routing: {default_team: japan}
sla:
  business_hours: {timezone: Europe/Berlin, opens: "08:00", closes: "17:00"}
  team_hours:
    japan: {timezone: Asia/Tokyo, opens: "09:00", closes: "18:00", holidays: ["2026-11-30"]}
  policies:
    - {id: office, first_touch: 4h, remind_before: 1h, business_hours: true}
"""


def test_sla_due_time_counts_the_teams_business_hours() -> None:
    pb = load_playbook_text(PLAYBOOK)
    state, now = LeadState("L"), tokyo(2026, 11, 27, 17).astimezone(UTC)  # Friday 17:00 in Tokyo
    decide(state, LeadUpserted({"email": "a@example.jp"}), now, pb)
    (assign,) = decide(state, EventsReceived([TrackedEvent("e", "page_view", now)]), now, pb).commands
    decide(state, RepAssigned(assign.key, Rep("rep-yui", "Yui", "yui@x", "japan", "K", "k@x"), "rr"), now, pb)
    # 1 h on Friday, Monday the 30th is a holiday, 3 h on Tuesday: due Tuesday 12:00, reminder at 11:00.
    assert state.followup.due_at.astimezone(TOKYO) == tokyo(2026, 12, 1, 12)
    assert state.followup.remind_at.astimezone(TOKYO) == tokyo(2026, 12, 1, 11)


def test_a_policy_counting_business_hours_needs_hours_defined() -> None:
    text = PLAYBOOK.replace('  business_hours: {timezone: Europe/Berlin, opens: "08:00", closes: "17:00"}\n', "")
    with pytest.raises(ValueError, match=r"define sla\.business_hours"):
        load_playbook_text(text)
