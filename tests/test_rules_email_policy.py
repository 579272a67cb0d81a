"""The playbook's email policy in the pure core: consent (both policies), send windows and caps, deferral."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from temporalio.contrib.pydantic import pydantic_data_converter

from rules import PlaybookError, decide, load_playbook_text
from rules.consent import effective_status, nurture_blocked, record_consent
from rules.model import (
    ConsentRecord,
    ConsentRecorded,
    EventsReceived,
    LeadState,
    LeadUpserted,
    Rep,
    RepAssigned,
    SendEmail,
    TimerFired,
    TrackedEvent,
)
from rules.playbook import CompiledPlaybook, EmailPolicy, QuietHours
from rules.send_window import lead_zone, next_send_moment, next_window_moment
from rules.simulate import Scenario, simulate

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = {"welcome", "case_study", "rep_new_lead", "sla_reminder", "sla_escalation"}
TEAMS = {"inside-sales", "japan"}
TIMER = "journey:welcome_nurture"
# Wednesday 2026-04-01 13:00 UTC = 22:00 in Tokyo.
TOKYO_NIGHT = datetime(2026, 4, 1, 13, 0, tzinfo=UTC)
SQL_EVENTS = [
    TrackedEvent("e1", "download", TOKYO_NIGHT),
    TrackedEvent("e2", "page_view", TOKYO_NIGHT, url="https://example.com/pricing"),
    TrackedEvent("e3", "email_click", TOKYO_NIGHT),
]
JP_LEAD = {"email": "sato@example.jp", "first_name": "Taro", "title": "部長", "company_size": 800, "country": "JP"}


def playbook(email: dict[str, Any] | None, journeys: list[dict[str, Any]] | None = None) -> CompiledPlaybook:
    doc = yaml.safe_load((ROOT / "playbooks" / "default.yaml").read_text(encoding="utf-8"))
    if email is not None:
        doc["email"] = email
    if journeys is not None:
        doc["journeys"] = journeys
    return load_playbook_text(yaml.safe_dump(doc, allow_unicode=True), templates=TEMPLATES, teams=TEAMS)


def consent(status: str, source: str, at: datetime) -> ConsentRecord:
    return ConsentRecord(status, source, at)  # type: ignore[arg-type]


def nurture(commands: list[Any]) -> list[str]:
    return [c.template for c in commands if isinstance(c, SendEmail) and c.kind == "nurture"]


OPT_IN = playbook({"require_opt_in": True})
US_STYLE = playbook({"require_opt_in": False})


# ------------------------------------------------------------------ consent


def test_opt_in_policy_skips_nurture_but_still_scores_routes_and_notifies_the_rep() -> None:
    state = LeadState("lead-1")
    sent = nurture(decide(state, LeadUpserted(dict(JP_LEAD)), TOKYO_NIGHT, OPT_IN).commands)
    assert sent == []
    hold = state.nurture_holds[-1]
    assert (hold.action, hold.template, hold.step_id) == ("skipped", "welcome", "welcome")
    assert "no email opt-in" in hold.reason
    assign = decide(state, EventsReceived(SQL_EVENTS), TOKYO_NIGHT, OPT_IN).commands
    assert state.stage == "sql" and assign[0].team == "japan"
    rep = RepAssigned(assign[0].key, Rep("rep-yui", "Yui", "yui@example.com", "japan", None, None), "rr")
    notified = decide(state, rep, TOKYO_NIGHT, OPT_IN).commands
    # Operational mail: neither consent nor the send window holds the rep's notice.
    assert [(c.kind, c.to) for c in notified] == [("rep_new_lead", "yui@example.com")]


def test_opt_in_policy_sends_to_a_lead_that_opted_in_on_the_form() -> None:
    state = LeadState("lead-1")
    form = ConsentRecord("opted_in", "form", TOKYO_NIGHT, wording="Send me product news", form_id="wp-2026")
    commands = decide(state, LeadUpserted(dict(JP_LEAD), form), TOKYO_NIGHT, OPT_IN).commands
    assert nurture(commands) == ["welcome"] and state.nurture_holds == []
    assert state.consents == [form]


def test_us_style_sends_until_opt_out_and_an_opt_out_stops_a_waiting_journey() -> None:
    state = LeadState("lead-1")
    assert nurture(decide(state, LeadUpserted({"email": "a@example.com"}), TOKYO_NIGHT, US_STYLE).commands) == [
        "welcome"
    ]
    assert TIMER in state.timers  # waiting three days for the case study
    unsubscribed = consent("opted_out", "unsubscribe_link", TOKYO_NIGHT + timedelta(days=1))
    decide(state, ConsentRecorded(unsubscribed), TOKYO_NIGHT + timedelta(days=1), US_STYLE)
    due = state.timers[TIMER]
    assert nurture(decide(state, TimerFired(TIMER), due, US_STYLE).commands) == []
    assert state.nurture_holds[-1].action == "skipped" and "opted out" in state.nurture_holds[-1].reason
    assert "unsubscribe_link" in state.nurture_holds[-1].reason


def test_the_stricter_record_wins_and_a_later_explicit_opt_in_counts() -> None:
    t = TOKYO_NIGHT
    assert effective_status([])[0] == "unknown"
    assert effective_status([consent("opted_in", "form", t), consent("opted_out", "complaint", t + timedelta(1))])[
        0
    ] == ("opted_out")
    # Same moment: the opt-out wins whatever the order.
    assert effective_status([consent("opted_out", "api", t), consent("opted_in", "form", t)])[0] == "opted_out"
    assert effective_status([consent("opted_in", "form", t), consent("opted_out", "api", t)])[0] == "opted_out"
    # A later explicit opt-in (form, api) reopens; a bulk import does not undo an unsubscribe.
    out = consent("opted_out", "unsubscribe_link", t)
    assert effective_status([out, consent("opted_in", "form", t + timedelta(hours=1))])[0] == "opted_in"
    assert effective_status([out, consent("opted_in", "import", t + timedelta(hours=1))])[0] == "opted_out"
    # "unknown" (an unticked box) decides nothing.
    assert effective_status([consent("opted_in", "form", t), consent("unknown", "form", t + timedelta(1))])[0] == (
        "opted_in"
    )
    assert nurture_blocked([consent("unknown", "import", t)], require_opt_in=False) is None


def test_records_are_kept_in_time_order_and_never_date_from_the_future() -> None:
    state, t = LeadState("lead-1"), TOKYO_NIGHT
    record_consent(state, consent("opted_out", "api", t), t)
    record_consent(state, consent("opted_in", "form", t - timedelta(days=3)), t)  # a late-arriving old form
    record_consent(state, consent("opted_in", "api", t + timedelta(days=30)), t)  # clock skew: clamped to now
    assert [(c.status, c.at) for c in state.consents] == [
        ("opted_in", t - timedelta(days=3)),
        ("opted_out", t),
        ("opted_in", t),
    ]
    assert effective_status(state.consents)[0] == "opted_out"  # the clamped opt-in ties, so it does not win


def test_the_same_record_delivered_again_is_kept_once() -> None:
    """An import chunk delivered again after a crash (capture/importer.py) repeats its consent records."""
    state, t = LeadState("lead-1"), TOKYO_NIGHT
    imported = ConsentRecord("opted_in", "import", t - timedelta(days=1), wording="booth form", form_id="import:imp-1")
    for _ in range(2):
        record_consent(state, imported, t)
    record_consent(state, consent("opted_in", "form", t - timedelta(days=1)), t)  # other evidence is kept
    assert [c.source for c in state.consents] == ["import", "form"]


# ------------------------------------------------------------------ send windows


NIGHTS_OFF = {"quiet_hours": {"start": "21:00", "end": "08:00"}}


def test_quiet_hours_defer_the_welcome_to_8am_in_the_leads_zone_then_send_it() -> None:
    pb = playbook(NIGHTS_OFF)
    state = LeadState("lead-1")
    assert nurture(decide(state, LeadUpserted(dict(JP_LEAD)), TOKYO_NIGHT, pb).commands) == []
    next_morning = datetime(2026, 4, 1, 23, 0, tzinfo=UTC)  # Thursday 08:00 in Tokyo
    assert state.timers[TIMER] == next_morning
    hold = state.nurture_holds[-1]
    assert (hold.action, hold.until) == ("deferred", next_morning)
    assert "outside the send window" in hold.reason and "Asia/Tokyo" in hold.reason
    assert nurture(decide(state, TimerFired(TIMER), next_morning, pb).commands) == ["welcome"]
    assert state.timers[TIMER] == next_morning + timedelta(days=3)  # the journey's own wait starts after the send


def test_a_lead_without_zone_or_known_country_uses_the_playbook_default() -> None:
    policy = EmailPolicy(timezone="Europe/Berlin")
    assert lead_zone({"country": "JP"}, policy) == "Asia/Tokyo"
    assert lead_zone({"country": "us"}, policy) == "America/New_York"
    assert lead_zone({"country": "JP", "timezone": "America/Chicago"}, policy) == "America/Chicago"
    assert lead_zone({"country": "JP", "timezone": "Mars/Olympus"}, policy) == "Asia/Tokyo"
    assert lead_zone({"country": "ZZ"}, policy) == "Europe/Berlin"
    assert lead_zone({}, policy) == "Europe/Berlin"


def test_weekends_wait_for_monday_morning() -> None:
    policy = EmailPolicy(
        quiet_hours=QuietHours(start="21:00", end="08:00"), weekdays=["mon", "tue", "wed", "thu", "fri"]
    )
    saturday_noon_ny = datetime(2026, 4, 4, 16, 0, tzinfo=UTC)
    monday_8_ny = datetime(2026, 4, 6, 12, 0, tzinfo=UTC)  # EDT, UTC-4
    assert next_window_moment(saturday_noon_ny, policy, "America/New_York") == monday_8_ny
    friday_late = datetime(2026, 4, 4, 1, 30, tzinfo=UTC)  # Friday 21:30 EDT
    assert next_window_moment(friday_late, policy, "America/New_York") == monday_8_ny
    inside = datetime(2026, 4, 6, 14, 0, tzinfo=UTC)
    assert next_window_moment(inside, policy, "America/New_York") == inside


@pytest.mark.parametrize(
    ("late_evening", "next_8am"),
    [
        # Sat 2026-03-07 23:00 EST; clocks spring forward that night: Sunday 08:00 is EDT (UTC-4).
        (datetime(2026, 3, 8, 4, 0, tzinfo=UTC), datetime(2026, 3, 8, 12, 0, tzinfo=UTC)),
        # Sat 2026-10-31 23:00 EDT; clocks fall back that night: Sunday 08:00 is EST (UTC-5).
        (datetime(2026, 11, 1, 3, 0, tzinfo=UTC), datetime(2026, 11, 1, 13, 0, tzinfo=UTC)),
    ],
)
def test_quiet_hours_follow_daylight_saving_time(late_evening: datetime, next_8am: datetime) -> None:
    policy = EmailPolicy(quiet_hours=QuietHours(start="21:00", end="08:00"))
    assert next_window_moment(late_evening, policy, "America/New_York") == next_8am


def test_quiet_hours_within_one_day_and_the_minute_they_end() -> None:
    policy = EmailPolicy(quiet_hours=QuietHours(start="12:00", end="13:30"))
    noon = datetime(2026, 4, 1, 12, 0, tzinfo=UTC)
    assert next_window_moment(noon, policy, "UTC") == datetime(2026, 4, 1, 13, 30, tzinfo=UTC)
    assert next_window_moment(noon + timedelta(minutes=90), policy, "UTC") == noon + timedelta(minutes=90)
    assert next_window_moment(noon - timedelta(seconds=1), policy, "UTC") == noon - timedelta(seconds=1)


# ------------------------------------------------------------------ caps


SIX_SENDS = [
    {
        "id": "burst",
        "enroll_when": 'stage == "new"',
        "steps": [{"id": f"s{i}", "type": "send_email", "template": "welcome"} for i in range(1, 7)],
    }
]


def test_caps_per_day_and_week_defer_sends_and_never_drop_them() -> None:
    pb = playbook({"max_per_day": 2, "max_per_week": 4}, SIX_SENDS)
    start = datetime(2026, 4, 1, 9, 0, tzinfo=UTC)
    result = simulate(pb, Scenario(start=start, lead={"email": "a@example.com"}, run_for="14d"))
    sent = [(e["at"] - start) for e in result.emails if e["kind"] == "nurture"]
    day, week = timedelta(days=1), timedelta(days=7)
    assert sent == [timedelta(0), timedelta(0), day, day, week, week]
    held = [
        (e.detail["step"], e.detail["until"] - start, e.detail["reason"])
        for e in result.trace
        if e.kind == "email_held"
    ]
    assert [(step, until) for step, until, _ in held] == [("s3", day), ("s5", week)]
    assert "daily cap of 2" in held[0][2] and "weekly cap of 4" in held[1][2]
    assert result.final["journeys"] == {"burst": "completed"}


def test_an_exit_while_deferred_sends_nothing() -> None:
    pb = playbook(NIGHTS_OFF)
    state = LeadState("lead-1")
    decide(state, LeadUpserted(dict(JP_LEAD)), TOKYO_NIGHT, pb)
    decide(state, EventsReceived(SQL_EVENTS), TOKYO_NIGHT + timedelta(minutes=5), pb)
    assert state.stage == "sql" and state.journeys["welcome_nurture"].status == "exited"
    assert TIMER not in state.timers


QUIET = st.one_of(st.none(), st.tuples(st.integers(0, 23 * 60 + 59), st.integers(0, 23 * 60 + 59)))


@settings(max_examples=300, deadline=None)
@given(
    quiet=QUIET,
    days=st.sets(st.sampled_from(["mon", "tue", "wed", "thu", "fri", "sat", "sun"]), min_size=1),
    per_day=st.one_of(st.none(), st.integers(1, 3)),
    per_week=st.one_of(st.none(), st.integers(1, 6)),
    tz=st.sampled_from(["UTC", "Asia/Tokyo", "America/New_York", "Europe/Berlin", "Australia/Sydney"]),
    start=st.datetimes(datetime(2026, 1, 1), datetime(2027, 12, 31)),
    gaps=st.lists(st.integers(0, 3 * 24 * 60), min_size=1, max_size=8),
)
def test_every_send_is_eventually_placed_inside_window_and_caps(
    quiet: tuple[int, int] | None,
    days: set[str],
    per_day: int | None,
    per_week: int | None,
    tz: str,
    start: datetime,
    gaps: list[int],
) -> None:
    hhmm = [f"{m // 60:02d}:{m % 60:02d}" for m in quiet] if quiet else None
    if hhmm and hhmm[0] == hhmm[1]:
        return
    policy = EmailPolicy(
        quiet_hours=QuietHours(start=hhmm[0], end=hhmm[1]) if hhmm else None,
        weekdays=sorted(days),  # type: ignore[arg-type]
        max_per_day=per_day,
        max_per_week=per_week,
    )
    sent: list[datetime] = []
    due = start.replace(tzinfo=UTC)
    for gap in gaps:
        due += timedelta(minutes=gap)
        at, why = next_send_moment(max(due, sent[-1] if sent else due), sent, policy, tz)
        assert at >= due and (why is None) == (at == max(due, sent[-1] if sent else due))
        assert next_window_moment(at, policy, tz) == at  # inside the window
        assert per_day is None or sum(1 for s in sent if at - timedelta(days=1) < s <= at) < per_day
        assert per_week is None or sum(1 for s in sent if at - timedelta(days=7) < s <= at) < per_week
        sent.append(at)
    assert len(sent) == len(gaps)  # deferred, never dropped


# ------------------------------------------------------------------ playbook and simulator


@pytest.mark.parametrize(
    ("email", "message"),
    [
        ({"quiet_hours": {"start": "21:00", "end": "21:00"}}, "different start and end"),
        ({"quiet_hours": {"start": "25:00", "end": "08:00"}}, "start"),
        ({"weekdays": []}, "at least one weekday"),
        ({"timezone": "Mars/Olympus"}, "not a time zone"),
        ({"max_per_day": 0}, "max_per_day"),
        ({"requires_opt_in": True}, "not a playbook setting"),
    ],
)
def test_bad_email_policies_are_refused_with_the_line(email: dict[str, Any], message: str) -> None:
    with pytest.raises(PlaybookError) as caught:
        playbook(email)
    assert any(message in str(issue) and "email" in issue.path for issue in caught.value.issues), caught.value


def test_simulator_trace_shows_consent_skips_and_deferrals() -> None:
    pb = playbook({"require_opt_in": True, **NIGHTS_OFF})
    scenario = Scenario(
        start=TOKYO_NIGHT,
        lead=dict(JP_LEAD),
        consent={"status": "opted_in", "source": "form", "form_id": "wp-2026"},
        consents=[{"after": "2d", "status": "opted_out", "source": "unsubscribe_link"}],
        run_for="7d",
    )
    result = simulate(pb, scenario)
    held = [e.detail for e in result.trace if e.kind == "email_held"]
    assert [(h["action"], h["template"]) for h in held] == [("deferred", "welcome"), ("skipped", "case_study")]
    assert [e["template"] for e in result.emails] == ["welcome"]
    assert result.emails[0]["at"] == datetime(2026, 4, 1, 23, 0, tzinfo=UTC)
    assert [e.detail for e in result.trace if e.kind == "consent"] == [
        {"from": "unknown", "to": "opted_in"},
        {"from": "opted_in", "to": "opted_out"},
    ]
    assert result.final["consent"] == "opted_out"


def test_payloads_from_before_the_email_policy_still_deserialise() -> None:
    """Running leads carry LeadState and LeadUpserted payloads without the new fields."""
    converter = pydantic_data_converter.payload_converter
    old_upsert, old_state = {"attributes": {"email": "a@example.com"}}, {"lead_id": "lead-1", "email_seq": 2}
    payloads = [converter.to_payload(old_upsert), converter.to_payload(old_state)]
    upsert, state = converter.from_payloads(payloads, [LeadUpserted, LeadState])
    assert upsert == LeadUpserted({"email": "a@example.com"}) and upsert.consent is None
    assert (state.email_seq, state.consents, state.nurture_sent, state.nurture_holds) == (2, [], [], [])
