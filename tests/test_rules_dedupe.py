"""A repeated event id is counted once for WINDOW_DAYS days, in bounded space (rules/dedupe.py)."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from payload_converter import data_converter
from rules import decide, load_playbook_text
from rules.dedupe import (
    DAY_CAPACITY,
    EXACT_PER_DAY,
    MAX_BYTES,
    WINDOW_DAYS,
    SeenEvents,
    bloom_false_positive_rate,
)
from rules.model import EventsReceived, LeadState, LeadUpserted, TrackedEvent

T0 = datetime(2026, 4, 1, 9, 0, tzinfo=UTC)
# One uncapped rule and nothing else: every counted download adds exactly one point.
COUNTING = """\
name: dedupe-test
scoring:
  rules:
    - id: download
      when: event.type == "download"
      points: 1
routing:
  default_team: inside-sales
"""


def download(event_id: str, at: datetime = T0) -> TrackedEvent:
    return TrackedEvent(event_id, "download", at)


def new_lead() -> LeadState:
    state = LeadState("lead-1")
    decide(state, LeadUpserted({"email": "ana@example.com"}), T0, load_playbook_text(COUNTING))
    return state


def test_a_repeated_id_is_counted_once_after_501_other_ids() -> None:
    pb = load_playbook_text(COUNTING)
    state = new_lead()
    decide(state, EventsReceived([download(f"ev-{i}") for i in range(501)]), T0, pb)
    assert state.score == 501
    decision = decide(state, EventsReceived([download("ev-0")]), T0 + timedelta(hours=1), pb)
    assert state.score == 501
    assert decision.duplicate_event_ids == ["ev-0"]


def test_an_id_counts_again_only_after_the_window() -> None:
    pb = load_playbook_text(COUNTING)
    state = new_lead()
    decide(state, EventsReceived([download("ev-old")]), T0, pb)
    late = T0 + timedelta(days=WINDOW_DAYS, hours=14)  # still inside: the window is whole days after receipt
    decide(state, EventsReceived([download("ev-old", late)]), late, pb)
    assert state.score == 1
    after = T0 + timedelta(days=WINDOW_DAYS + 1)
    decide(state, EventsReceived([download("ev-old", after)]), after, pb)
    assert state.score == 2


def test_ids_of_an_old_state_are_still_seen() -> None:
    """A LeadState recorded before the window (``seen_event_ids: list[str]``) still deserialises and counts."""
    pb = load_playbook_text(COUNTING)
    old = new_lead()
    payload = json.loads(data_converter.payload_converter.to_payloads([old])[0].data)
    del payload["seen_events"]
    payload["seen_event_ids"] = ["ev-a", "ev-b"]
    raw = data_converter.payload_converter.to_payloads([payload])
    state = data_converter.payload_converter.from_payloads(raw, [LeadState])[0]
    assert state.seen_event_ids == ["ev-a", "ev-b"]
    decide(state, EventsReceived([download("ev-a"), download("ev-c")]), T0, pb)
    assert state.score == 1 and state.seen_event_ids == []
    decide(state, EventsReceived([download("ev-b")]), T0 + timedelta(days=2), pb)
    assert state.score == 1


def test_100000_events_in_one_day_stay_bounded_and_do_not_deafen_the_lead() -> None:
    seen = SeenEvents()
    ids = [f"burst-{i}" for i in range(100_000)]
    counted = sum(seen.first_time(event_id, T0) for event_id in ids)
    assert seen.size_bytes() <= EXACT_PER_DAY * 8
    # Up to the day's capacity every id is remembered; past it ids are counted, bar the filter's errors.
    assert not any(seen.first_time(event_id, T0 + timedelta(hours=1)) for event_id in ids[:DAY_CAPACITY])
    assert counted >= 100_000 * (1 - bloom_false_positive_rate(DAY_CAPACITY))
    # Next day the lead still counts new ids (a full filter would make every id look like a repeat).
    fresh = sum(seen.first_time(f"next-{i}", T0 + timedelta(days=1)) for i in range(1_000))
    assert fresh >= 1_000 * (1 - 2 * bloom_false_positive_rate(DAY_CAPACITY))


def test_a_lead_with_100000_events_over_months_stays_under_the_bound() -> None:
    seen = SeenEvents()
    for i in range(100_000):
        seen.first_time(f"steady-{i}", T0 + timedelta(minutes=3 * i))  # ~480 a day for ~208 days
    assert len(seen.days) == WINDOW_DAYS + 1
    assert seen.size_bytes() <= MAX_BYTES
    payload = data_converter.payload_converter.to_payloads([seen])[0]
    assert len(payload.data) < 200_000
    # The last WINDOW_DAYS days are remembered exactly; the first day is forgotten.
    end = T0 + timedelta(minutes=3 * 99_999)
    assert not seen.first_time("steady-99000", end)
    assert seen.first_time("steady-0", end)


def test_false_positive_rate_of_a_busy_day_matches_the_documented_figure() -> None:
    seen = SeenEvents()
    for i in range(2_000):
        seen.first_time(f"busy-{i}", T0)
    probes = 20_000
    assert seen.seen("busy-0", T0) and seen.seen("busy-1999", T0)
    mistaken = sum(seen.seen(f"fresh-{i}", T0) for i in range(probes))
    rate = bloom_false_positive_rate(2_000)
    assert mistaken / probes < 3 * rate + 5 / probes, (mistaken, rate)
    assert bloom_false_positive_rate(1_000) < 1e-5 and bloom_false_positive_rate(2_000) < 1e-3


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 300), st.integers(0, 3 * WINDOW_DAYS * 24)), min_size=1, max_size=400))
def test_no_id_is_forgotten_inside_the_window(arrivals: list[tuple[int, int]]) -> None:
    seen = SeenEvents()
    first_seen: dict[int, datetime] = {}
    for number, hours in sorted(arrivals, key=lambda a: a[1]):
        now = T0 + timedelta(hours=hours)
        new = seen.first_time(f"id-{number}", now)
        previous = first_seen.get(number)
        if previous is not None and (now.date() - previous.date()).days <= WINDOW_DAYS:
            assert not new, f"id-{number} first seen {previous}, forgotten at {now}"
        if new:
            first_seen[number] = now


def test_a_round_trip_through_a_payload_keeps_every_answer() -> None:
    """What travels is the base64 text only (the decoded cache never), and it answers the same."""
    seen = SeenEvents()
    for i in range(EXACT_PER_DAY + 10):  # day one outgrows the exact form
        seen.first_time(f"a-{i}", T0)
    for i in range(20):
        seen.first_time(f"b-{i}", T0 + timedelta(days=1))
    raw = data_converter.payload_converter.to_payloads([seen])
    assert b"_decoded" not in raw[0].data
    back = data_converter.payload_converter.from_payloads(raw, [SeenEvents])[0]
    assert back == seen and [bool(d.bloom) for d in back.days] == [True, False]
    later = T0 + timedelta(days=2)
    for event_id in ["a-0", f"a-{EXACT_PER_DAY + 9}", "b-19", "c-0", "c-1"]:
        assert back.seen(event_id, later) == seen.seen(event_id, later)
    assert back.seen("a-3", later) and not back.seen("c-0", later)


def test_a_copy_of_a_day_does_not_see_ids_added_to_the_original() -> None:
    seen = SeenEvents()
    seen.first_time("a", T0)
    snapshot = SeenEvents([copy.copy(day) for day in seen.days])
    seen.first_time("b", T0)
    assert seen.seen("b", T0) and not snapshot.seen("b", T0) and snapshot.seen("a", T0)
