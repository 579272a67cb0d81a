"""What the reports know about leads, touches, follow-ups and costs, and the periods they group by.

The store loads these plain facts; ``rules.report_money`` and ``rules.report_kpis`` turn them into report
rows. Keeping the arithmetic here (pure, no I/O) lets the same definitions serve the API, the CLI and
tests at memory speed.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from fractions import Fraction

UNKNOWN = "unknown"
# Seed 004: leads whose source is "unknown" or "other" count as untracked.
UNTRACKED = frozenset({UNKNOWN, "other", ""})


@dataclass(frozen=True)
class Period:
    """[start, end): whole UTC days; ``label`` names it in rows (``2026-01`` or ``2026-01-01..2026-02-15``)."""

    start: datetime
    end: datetime
    label: str

    def __contains__(self, moment: object) -> bool:
        return isinstance(moment, datetime) and self.start <= moment < self.end

    @property
    def days(self) -> int:
        return (self.end - self.start).days


def _midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def _next_month(day: date) -> date:
    return date(day.year + day.month // 12, day.month % 12 + 1, 1)


def month(label: str) -> Period:
    """``YYYY-MM`` as a period; ValueError says what is wrong."""
    try:
        first = datetime.strptime(label, "%Y-%m").date()
    except ValueError:
        raise ValueError(f"month {label!r} is not YYYY-MM") from None
    return Period(_midnight(first), _midnight(_next_month(first)), f"{first.year:04d}-{first.month:02d}")


def month_before(period: Period) -> Period:
    """The calendar month before the one ``period`` starts in."""
    last_day = period.start.date().replace(day=1) - timedelta(days=1)
    return month(f"{last_day.year:04d}-{last_day.month:02d}")


def span(start: date, end: date) -> Period:
    """From ``start`` to ``end``, both inclusive."""
    if end < start:
        raise ValueError(f"the period ends ({end}) before it starts ({start})")
    return Period(_midnight(start), _midnight(end + timedelta(days=1)), f"{start.isoformat()}..{end.isoformat()}")


def months_between(start: date, end: date) -> list[Period]:
    """Every calendar month touching [start, end], as whole months."""
    periods, first = [], start.replace(day=1)
    while first <= end:
        periods.append(month(f"{first.year:04d}-{first.month:02d}"))
        first = _next_month(first)
    return periods


@dataclass(frozen=True)
class FunnelStages:
    """The playbook's funnel (``order``) and which of its stages the money KPIs mean by MQL, SQL,
    opportunity and customer."""

    order: tuple[str, ...]
    mql: str
    sql: str
    opportunity: str
    customer: str

    @classmethod
    def from_order(cls, order: Sequence[str], sql: str | None = None) -> FunnelStages:
        """Stages named mql/sql/opportunity/customer when the playbook has them; otherwise by position
        (second stage, the routing stage, the one before the last, the last)."""
        stages = tuple(order)
        if len(stages) < 2:
            raise ValueError("a funnel needs at least two stages")

        def pick(name: str, fallback: str) -> str:
            return name if name in stages else fallback

        sql_stage = sql if sql in stages else pick("sql", stages[min(2, len(stages) - 1)])
        return cls(
            stages,
            pick("mql", stages[1]),
            sql_stage,
            pick("opportunity", stages[-2]),
            pick("customer", stages[-1]),
        )

    def index(self, stage: str) -> int:
        """Position in the funnel; -1 for side stages (disqualified, recycled)."""
        return self.order.index(stage) if stage in self.order else -1


@dataclass
class LeadFacts:
    lead_id: str
    created_at: datetime
    source: str = UNKNOWN
    category: str = UNKNOWN
    campaign: str | None = None
    stage: str = "new"
    # Every stage entered, in order: (when, stage); the store adds (created_at, first stage) in front.
    path: list[tuple[datetime, str]] = field(default_factory=list)
    won_at: datetime | None = None
    won_amount: Decimal | None = None
    won_currency: str | None = None
    first_touch_at: datetime | None = None
    # reached() per funnel: every report asks it once per period and stage.
    _reached: dict[FunnelStages, dict[str, datetime]] = field(default_factory=dict, repr=False, compare=False)

    def reached(self, funnel: FunnelStages) -> dict[str, datetime]:
        """When the lead first reached each funnel stage. A skipped stage counts as reached when a
        later one was (new -> sql passes mql); a won deal means the customer stage."""
        if funnel not in self._reached:
            self._reached[funnel] = self._first_reached(funnel)
        return self._reached[funnel]

    def _first_reached(self, funnel: FunnelStages) -> dict[str, datetime]:
        entries = list(self.path)
        if self.won_at is not None:
            entries.append((self.won_at, funnel.customer))
        reached: dict[str, datetime] = {}
        for at, stage in sorted(entries, key=lambda entry: entry[0]):
            for passed in funnel.order[: funnel.index(stage) + 1]:
                reached.setdefault(passed, at)
        return reached

    @property
    def first_touch(self) -> datetime:
        if self.first_touch_at is None:
            return self.created_at
        return min(self.first_touch_at, self.created_at)


@dataclass(frozen=True)
class TouchFacts:
    lead_id: str
    at: datetime
    source: str
    category: str
    channel: str | None = None
    campaign: str | None = None


@dataclass(frozen=True)
class FollowUpFacts:
    team: str
    rep_id: str
    rep_name: str | None
    kind: str
    status: str
    started_at: datetime
    due_at: datetime
    met_at: datetime | None
    # Set when it went overdue: a breach that stays one if the follow-up is cancelled later.
    escalated_at: datetime | None = None


@dataclass(frozen=True)
class CostFacts:
    source: str
    category: str | None
    campaign: str
    start: date
    end: date  # inclusive
    amount: Decimal
    currency: str
    note: str | None = None

    def overlaps(self, period: Period) -> bool:
        start, end = _midnight(self.start), _midnight(self.end + timedelta(days=1))
        return start < period.end and period.start < end

    def within(self, period: Period) -> Fraction:
        """The share of this cost that falls inside ``period``, prorated by day."""
        start, end = _midnight(self.start), _midnight(self.end + timedelta(days=1))
        overlap = (min(end, period.end) - max(start, period.start)).days
        if overlap <= 0:
            return Fraction(0)
        return Fraction(self.amount) * overlap / (end - start).days


# ---------------------------------------------------------------- small arithmetic shared by reports


def ratio(part: float | Fraction | Decimal | None, whole: float | Fraction | Decimal | None) -> float | None:
    """part / whole to 4 decimals; None where it is undefined (nothing to divide by)."""
    if part is None or whole is None or whole == 0:
        return None
    return round(float(Fraction(part) / Fraction(whole)), 4)


def money(value: Fraction | Decimal | None) -> Decimal | None:
    """Exact to the cent, for JSON and CSV."""
    if value is None:
        return None
    exact = Fraction(value)
    cents = round(exact * 100)
    return Decimal(cents).scaleb(-2)


def hours(durations: Iterable[timedelta]) -> dict[str, float | int | None]:
    """Count, mean and median of durations, in hours (2 decimals)."""
    values = [d.total_seconds() / 3600 for d in durations]
    if not values:
        return {"count": 0, "avg_hours": None, "median_hours": None}
    return {
        "count": len(values),
        "avg_hours": round(statistics.fmean(values), 2),
        "median_hours": round(statistics.median(values), 2),
    }
