"""Which rep gets a lead: the assignment strategies, pure. The store serialises per team, loads the
candidates and their loads, calls :func:`choose` and records the answer."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

STRATEGIES: tuple[str, ...] = ("round_robin", "least_loaded", "weighted")


@dataclass(frozen=True)
class Candidate:
    id: str
    name: str
    email: str
    capacity: int | None
    weight: int = 1


def choose(
    reps: Sequence[Candidate],
    *,
    strategy: str,
    open_loads: dict[str, int],
    cursor: str | None,
    totals: dict[str, int] | None = None,
    named: str | None = None,
) -> tuple[Candidate, str] | None:
    """Pick among available reps (sorted by id) under capacity; returns the rep and how it was chosen.

    ``open_loads``: open assignments per rep (capacity); ``cursor``: the last rep round-robin chose;
    ``totals``: every assignment per rep (the weighted strategy's share so far); ``named``: a rep to try first.
    """
    eligible = [r for r in reps if r.capacity is None or open_loads.get(r.id, 0) < r.capacity]
    if named is not None:
        rep = next((r for r in eligible if r.id == named), None)
        if rep is not None:
            return rep, "named rep"
    if not eligible:
        return None
    if strategy == "least_loaded":
        rep = min(eligible, key=lambda r: (open_loads.get(r.id, 0), r.id))
        how = f"least-loaded ({open_loads.get(rep.id, 0)} open)"
    elif strategy == "weighted":
        # The rep furthest below its weighted share gets the next lead (smooth weighted round-robin).
        counts = totals or {}
        rep = min(eligible, key=lambda r: ((counts.get(r.id, 0) + 1) / r.weight, r.id))
        how = f"weighted (weight {rep.weight})"
    else:
        after = [r for r in eligible if cursor is None or r.id > cursor]
        rep, how = (after or eligible)[0], "round-robin"
    return rep, f"{named} unavailable; {how}" if named else how
