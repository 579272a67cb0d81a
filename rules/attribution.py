"""Attribution models: how one conversion's credit is shared among the touches that led to it.

Pure and exact: credits are ``Fraction``s, so every model's credits for one conversion sum to exactly 1
and revenue shares reconcile to the cent once rounded with ``round_reconciled`` (largest remainder). The models
are the ones HubSpot and Google Analytics offer:

- ``first_touch``: all credit to the first touch (what brings people in);
- ``last_touch``: all credit to the last touch before the conversion (what closes);
- ``linear``: equal shares;
- ``time_decay``: a touch's weight halves for every ``TIME_DECAY_HALF_LIFE`` (7 days, as in Google
  Analytics) between it and the conversion;
- ``u_shaped`` (position-based): 40 % first, 40 % last, the remaining 20 % split among the touches
  between (one touch: 100 %; two: 50/50).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from typing import Literal, get_args

Model = Literal["first_touch", "last_touch", "linear", "time_decay", "u_shaped"]
MODELS: tuple[str, ...] = get_args(Model)
TIME_DECAY_HALF_LIFE = timedelta(days=7)
DECAY_UNITS = 10**12

ONE = Fraction(1)


def _first(times: Sequence[datetime], _at: datetime) -> list[Fraction]:
    return [ONE] + [Fraction(0)] * (len(times) - 1)


def _last(times: Sequence[datetime], _at: datetime) -> list[Fraction]:
    return [Fraction(0)] * (len(times) - 1) + [ONE]


def _linear(times: Sequence[datetime], _at: datetime) -> list[Fraction]:
    return [Fraction(1, len(times))] * len(times)


def _time_decay(times: Sequence[datetime], at: datetime) -> list[Fraction]:
    half_life = TIME_DECAY_HALF_LIFE.total_seconds()
    weights = [2.0 ** (-max((at - t).total_seconds(), 0.0) / half_life) for t in times]
    total = math.fsum(weights)
    if total == 0:  # every touch underflowed (centuries apart): fall back to equal shares
        return _linear(times, at)
    # Shares in units of 10^-12, the largest absorbing the rounding so they sum to exactly 1. Bounded
    # denominators keep sums over thousands of conversions fast (raw float Fractions grow without bound).
    units = [round(w / total * DECAY_UNITS) for w in weights]
    units[units.index(max(units))] += DECAY_UNITS - sum(units)
    return [Fraction(u, DECAY_UNITS) for u in units]


def _u_shaped(times: Sequence[datetime], _at: datetime) -> list[Fraction]:
    n = len(times)
    if n == 1:
        return [ONE]
    if n == 2:
        return [Fraction(1, 2), Fraction(1, 2)]
    middle = Fraction(1, 5) / (n - 2)
    return [Fraction(2, 5)] + [middle] * (n - 2) + [Fraction(2, 5)]


_MODELS: dict[str, Callable[[Sequence[datetime], datetime], list[Fraction]]] = {
    "first_touch": _first,
    "last_touch": _last,
    "linear": _linear,
    "time_decay": _time_decay,
    "u_shaped": _u_shaped,
}


def credits(model: str, touch_times: Sequence[datetime], converted_at: datetime) -> list[Fraction]:
    """The share of one conversion each touch earns, in the order given (oldest first).

    ``touch_times`` are the touches at or before the conversion; the caller supplies at least one (a lead
    with no recorded touch gets one for its original source at creation, so no conversion is lost).
    """
    if model not in _MODELS:
        raise ValueError(f"unknown attribution model {model!r}: use one of {', '.join(MODELS)}")
    if not touch_times:
        raise ValueError("a conversion needs at least one touch to credit")
    return _MODELS[model](touch_times, converted_at)


def round_reconciled(amounts: Mapping[str, Fraction], places: int = 2) -> dict[str, Decimal]:
    """Round exact per-key amounts to ``places`` decimals so the parts add up to the rounded total
    (largest remainder: floor every part, hand the leftover units to the largest remainders, ties by
    key so the answer is deterministic). Revenue shares then reconcile to the cent with the revenue."""
    unit = Fraction(1, 10**places)
    floors = {key: (amount / unit).__floor__() for key, amount in amounts.items()}
    total_units = round(sum(amounts.values(), Fraction(0)) / unit)
    leftover = total_units - sum(floors.values())
    by_remainder = sorted(amounts, key=lambda key: (-(amounts[key] / unit - floors[key]), key))
    for key in by_remainder[: max(leftover, 0)]:
        floors[key] += 1
    return {key: Decimal(units).scaleb(-places) for key, units in floors.items()}


def sum_shares(rows: Iterable[tuple[str, Fraction]]) -> dict[str, Fraction]:
    """Add up credits per key (source, campaign, ...)."""
    totals: dict[str, Fraction] = {}
    for key, share in rows:
        totals[key] = totals.get(key, Fraction(0)) + share
    return totals
