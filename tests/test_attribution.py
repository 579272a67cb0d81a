"""rules/attribution.py: each model's shares, and the property that credits for one conversion sum to
exactly 1 (and revenue shares to the revenue, to the cent) whatever the touches."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rules.attribution import MODELS, TIME_DECAY_HALF_LIFE, credits, round_reconciled

T0 = datetime(2026, 1, 1, tzinfo=UTC)
DAY = timedelta(days=1)


def test_each_model_on_four_touches() -> None:
    times = [T0, T0 + 3 * DAY, T0 + 10 * DAY, T0 + 14 * DAY]
    at = T0 + 14 * DAY
    assert credits("first_touch", times, at) == [1, 0, 0, 0]
    assert credits("last_touch", times, at) == [0, 0, 0, 1]
    assert credits("linear", times, at) == [Fraction(1, 4)] * 4
    assert credits("u_shaped", times, at) == [Fraction(2, 5), Fraction(1, 10), Fraction(1, 10), Fraction(2, 5)]
    # Half-life 7 days: ages 14, 11, 4, 0 days weigh 1/4, 2^-11/7, 2^-4/7, 1.
    weights = [0.25, 2 ** (-11 / 7), 2 ** (-4 / 7), 1.0]
    decay = credits("time_decay", times, at)
    assert [round(float(c), 9) for c in decay] == [round(w / sum(weights), 9) for w in weights]
    assert TIME_DECAY_HALF_LIFE == timedelta(days=7)


def test_u_shaped_with_one_and_two_touches() -> None:
    assert credits("u_shaped", [T0], T0) == [1]
    assert credits("u_shaped", [T0, T0 + DAY], T0 + DAY) == [Fraction(1, 2), Fraction(1, 2)]


def test_time_decay_of_touches_centuries_apart_still_sums_to_one() -> None:
    shares = credits("time_decay", [T0 - timedelta(days=365 * 300), T0], T0)
    assert sum(shares) == 1 and shares[1] > shares[0]


def test_bad_model_and_no_touch_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown attribution model 'w_shaped'"):
        credits("w_shaped", [T0], T0)
    with pytest.raises(ValueError, match="at least one touch"):
        credits("linear", [], T0)


def test_round_reconciled_hands_the_odd_cent_to_the_largest_remainder() -> None:
    thirds = {key: Fraction(100, 3) for key in "abc"}
    assert round_reconciled(thirds) == {"a": Decimal("33.34"), "b": Decimal("33.33"), "c": Decimal("33.33")}
    assert round_reconciled({"x": Fraction(2, 3), "y": Fraction(1, 3)}, 0) == {"x": Decimal(1), "y": Decimal(0)}


touch_lists = st.lists(st.integers(min_value=0, max_value=400 * 86400), min_size=1, max_size=40)


@settings(max_examples=300, deadline=None)
@given(offsets=touch_lists, model=st.sampled_from(MODELS), after=st.integers(min_value=0, max_value=90 * 86400))
def test_every_model_credits_exactly_one_per_conversion(offsets: list[int], model: str, after: int) -> None:
    times = sorted(T0 + timedelta(seconds=s) for s in offsets)
    shares = credits(model, times, times[-1] + timedelta(seconds=after))
    assert len(shares) == len(times)
    assert sum(shares) == 1  # exactly: Fractions, not floats
    assert all(share >= 0 for share in shares)


@settings(max_examples=100, deadline=None)
@given(
    paths=st.lists(st.tuples(touch_lists, st.integers(min_value=0, max_value=10**9)), min_size=1, max_size=12),
    model=st.sampled_from(MODELS),
    sources=st.lists(st.sampled_from(["google", "linkedin", "webinar", "referral"]), min_size=40, max_size=40),
)
def test_revenue_shares_reconcile_to_the_cent(
    paths: list[tuple[list[int], int]], model: str, sources: list[str]
) -> None:
    revenue: dict[str, Fraction] = {}
    conversions: dict[str, Fraction] = {}
    total = Fraction(0)
    for offsets, cents in paths:
        times = sorted(T0 + timedelta(seconds=s) for s in offsets)
        amount = Fraction(cents, 100)
        total += amount
        for i, share in enumerate(credits(model, times, times[-1])):
            revenue[sources[i]] = revenue.get(sources[i], Fraction(0)) + share * amount
            conversions[sources[i]] = conversions.get(sources[i], Fraction(0)) + share
    assert sum(round_reconciled(revenue).values()) == Decimal(int(total * 100)) / 100
    assert sum(round_reconciled(conversions, 4).values()) == len(paths)
