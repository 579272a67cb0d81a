"""Calendar arithmetic for journeys: the next weekday/time in a time zone. Pure: ``now`` is given.

The IANA time-zone rules come from the tz database (static data, loaded once and cached). A tz-database
update that changes a zone's rules can change a recomputed wait time on replay; pin tzdata with the worker
image like any other code dependency.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

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
