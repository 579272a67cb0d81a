"""Calendar arithmetic for journeys: the next weekday/time in a time zone. Pure: ``now`` is given.

The IANA time-zone rules come from the tz database (static data, loaded once and cached). A tz-database
update that changes a zone's rules can change a recomputed wait time on replay; pin tzdata with the worker
image like any other code dependency.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

MAX_CALENDAR_DAYS = 740
WEEKDAY_INDEX = {"mon": 0, "tue": 1, "wed": 2, "thu": 3, "fri": 4, "sat": 5, "sun": 6}


@lru_cache(maxsize=256)
def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f'"{name}" is not a time zone: use an IANA name such as Asia/Tokyo or Europe/Berlin') from None


def next_weekday_time(now: datetime, weekdays: list[str], hhmm: str, tz_name: str) -> datetime:
    """The first moment strictly after ``now`` that falls on one of ``weekdays`` at ``hhmm`` local time."""
    tz = zone(tz_name)
    local = now.astimezone(tz)
    hour, minute = (int(x) for x in hhmm.split(":"))
    wanted = {WEEKDAY_INDEX[d] for d in weekdays}
    for days in range(8):
        day = (local + timedelta(days=days)).date()
        candidate = datetime(day.year, day.month, day.day, hour, minute, tzinfo=tz)
        if candidate.weekday() in wanted and candidate > local:
            return candidate.astimezone(now.tzinfo)
    raise ValueError("no weekday given")


def _at(day: date, hhmm: str, tz: ZoneInfo) -> datetime:
    hour, minute = (int(x) for x in hhmm.split(":"))
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=tz)


def add_business_time(
    start: datetime,
    duration: timedelta,
    *,
    tz_name: str,
    weekdays: list[str],
    opens: str,
    closes: str,
    holidays: frozenset[date] = frozenset(),
) -> datetime:
    """``start`` plus ``duration`` counted only inside business hours (weekdays, opens-closes, not holidays)."""
    tz = zone(tz_name)
    open_days = {WEEKDAY_INDEX[d] for d in weekdays}
    cursor = start.astimezone(tz)
    remaining = duration
    for _ in range(MAX_CALENDAR_DAYS):
        day = cursor.date()
        if day.weekday() in open_days and day not in holidays:
            window_open, window_close = _at(day, opens, tz), _at(day, closes, tz)
            cursor = max(cursor, window_open)
            if cursor < window_close:
                available = window_close - cursor
                if remaining <= available:
                    return (cursor + remaining).astimezone(start.tzinfo)
                remaining -= available
        next_day = day + timedelta(days=1)
        cursor = datetime(next_day.year, next_day.month, next_day.day, tzinfo=tz)
    raise ValueError("business hours leave no open time within two years")
