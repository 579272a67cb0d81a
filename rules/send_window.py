"""Send windows and frequency caps: the next moment a nurture email may go to a lead. Pure: ``now`` is given.

Quiet hours and allowed weekdays are read in the lead's own time zone (its ``timezone`` field, else its
country's main zone from the table below, else the playbook's ``email.timezone``), so a Tokyo lead is not
mailed at 3 a.m. because the server runs in UTC. Caps count the nurture emails already sent in any 24 hours
and any 7 days. A send that would break a rule is deferred, never dropped: the caller sleeps until the moment
returned here and asks again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from rules.clock import WEEKDAY_INDEX, zone
from rules.playbook import MAX_NURTURE_CAP, EmailPolicy

# The main time zone of countries leads commonly come from (ISO 3166 alpha-2). Countries spanning several
# zones get their most populous business zone; a lead's own `timezone` field is more precise and wins.
COUNTRY_ZONES: dict[str, str] = {
    "JP": "Asia/Tokyo", "US": "America/New_York", "CA": "America/Toronto", "MX": "America/Mexico_City",
    "BR": "America/Sao_Paulo", "AR": "America/Argentina/Buenos_Aires", "GB": "Europe/London",
    "IE": "Europe/Dublin", "DE": "Europe/Berlin", "FR": "Europe/Paris", "NL": "Europe/Amsterdam",
    "BE": "Europe/Brussels", "ES": "Europe/Madrid", "IT": "Europe/Rome", "CH": "Europe/Zurich",
    "AT": "Europe/Vienna", "SE": "Europe/Stockholm", "NO": "Europe/Oslo", "DK": "Europe/Copenhagen",
    "FI": "Europe/Helsinki", "PL": "Europe/Warsaw", "PT": "Europe/Lisbon", "IN": "Asia/Kolkata",
    "CN": "Asia/Shanghai", "HK": "Asia/Hong_Kong", "TW": "Asia/Taipei", "KR": "Asia/Seoul",
    "SG": "Asia/Singapore", "MY": "Asia/Kuala_Lumpur", "TH": "Asia/Bangkok", "VN": "Asia/Ho_Chi_Minh",
    "ID": "Asia/Jakarta", "PH": "Asia/Manila", "AE": "Asia/Dubai", "IL": "Asia/Jerusalem",
    "AU": "Australia/Sydney", "NZ": "Pacific/Auckland", "ZA": "Africa/Johannesburg",
}  # fmt: skip

DAY, WEEK = timedelta(days=1), timedelta(days=7)
MAX_ADJUSTMENTS = 20  # window and caps push the moment forward in turn; they settle in a few rounds
MAX_SENT_KEPT = MAX_NURTURE_CAP  # send times kept per lead: enough for the largest cap


def lead_zone(attributes: dict[str, Any], policy: EmailPolicy) -> str:
    """The IANA zone the lead's quiet hours and weekdays are read in."""
    own = attributes.get("timezone")
    if isinstance(own, str) and own:
        try:
            zone(own)
            return own
        except ValueError:
            pass  # a mistyped zone falls back to the country, as if it were not given
    country = attributes.get("country")
    if isinstance(country, str) and country.upper() in COUNTRY_ZONES:
        return COUNTRY_ZONES[country.upper()]
    return policy.timezone


def _minutes(hhmm: str) -> int:
    hour, minute = hhmm.split(":")
    return int(hour) * 60 + int(minute)


@dataclass(frozen=True)
class _Window:
    """The policy's quiet hours and weekdays in one zone, parsed once per placement."""

    tz: ZoneInfo
    days: frozenset[int]
    quiet: tuple[int, int] | None  # minutes of the day: start, end

    @classmethod
    def of(cls, policy: EmailPolicy, tz_name: str) -> _Window:
        quiet = policy.quiet_hours
        return cls(
            zone(tz_name),
            frozenset(WEEKDAY_INDEX[d] for d in policy.weekdays),
            (_minutes(quiet.start), _minutes(quiet.end)) if quiet else None,
        )

    def allows(self, local: datetime) -> bool:
        if local.weekday() not in self.days:
            return False
        if self.quiet is None:
            return True
        start, end, minute = self.quiet[0], self.quiet[1], local.hour * 60 + local.minute
        if start < end:
            return not start <= minute < end
        return not (minute >= start or minute < end)  # quiet hours span midnight

    def next_moment(self, moment: datetime) -> datetime:
        local = moment.astimezone(self.tz)
        if self.allows(local):
            return moment
        # An allowed stretch starts at a midnight or where quiet hours end; try those, day by day.
        opens = (0, self.quiet[1]) if self.quiet else (0,)
        for days in range(9):
            day = (local + timedelta(days=days)).date()
            for minute in opens:
                candidate = datetime(day.year, day.month, day.day, minute // 60, minute % 60, tzinfo=self.tz)
                # Compared in UTC: wall clocks repeat an hour when daylight saving time ends.
                if candidate.astimezone(UTC) > moment and self.allows(candidate):
                    return candidate.astimezone(moment.tzinfo)
        raise ValueError("the email policy leaves no moment to send in a week")  # validation prevents this


def next_window_moment(moment: datetime, policy: EmailPolicy, tz_name: str) -> datetime:
    """``moment`` itself when nurture may go out then, else the first allowed moment after it."""
    return _Window.of(policy, tz_name).next_moment(moment)


def _cap_clear(moment: datetime, sent: list[datetime], cap: int | None, span: timedelta) -> datetime:
    """The first moment from ``moment`` on when fewer than ``cap`` sends fall in the span before it."""
    if cap is None:
        return moment
    recent = sorted(s for s in sent if moment - span < s <= moment)
    if len(recent) < cap:
        return moment
    return recent[len(recent) - cap] + span


def next_send_moment(
    now: datetime, sent: list[datetime], policy: EmailPolicy, tz_name: str
) -> tuple[datetime, str | None]:
    """When a nurture email due ``now`` may go out, and why it waits (``None``: it may go now)."""
    window, moment, reasons = _Window.of(policy, tz_name), now, []
    for _ in range(MAX_ADJUSTMENTS):
        windowed = window.next_moment(moment)
        if windowed != moment:
            reasons.append("outside the send window")
        daily = _cap_clear(windowed, sent, policy.max_per_day, DAY)
        if daily != windowed:
            reasons.append(f"daily cap of {policy.max_per_day} reached")
        weekly = _cap_clear(daily, sent, policy.max_per_week, WEEK)
        if weekly != daily:
            reasons.append(f"weekly cap of {policy.max_per_week} reached")
        if weekly == moment:
            break
        moment = weekly
    if moment == now:
        return now, None
    local = moment.astimezone(window.tz)
    why = "; ".join(dict.fromkeys(reasons))
    return moment, f"{why} (sends {local:%a %Y-%m-%d %H:%M} {tz_name})"
