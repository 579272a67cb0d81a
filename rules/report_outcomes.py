"""How sales closed leads in a period (README "Reports", outcomes): won deals and their amount per currency,
lost and disqualified leads per reason, by team. Pure: the store loads one fact per closed lead."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from rules.report_facts import Period


@dataclass(frozen=True)
class OutcomeFacts:
    """A lead's outcome as the store holds it (rules/sales.py projects it)."""

    kind: str
    at: datetime
    team: str | None
    reason: str | None = None
    amount: Decimal | None = None
    currency: str | None = None


def outcomes_report(facts: list[OutcomeFacts], period: Period) -> list[dict[str, Any]]:
    """One row per team, outcome and reason (lost, disqualified) or currency (won): leads and amount."""
    groups: dict[tuple[str, str, str], list[OutcomeFacts]] = defaultdict(list)
    for fact in facts:
        if period.start <= fact.at < period.end:
            detail = (fact.currency if fact.kind == "won" else fact.reason) or ""
            groups[(fact.team or "", fact.kind, detail)].append(fact)
    rows = []
    for (team, kind, detail), items in sorted(groups.items()):
        amount = sum((f.amount or Decimal(0) for f in items), Decimal(0)) if kind == "won" else None
        rows.append({
            "team": team or None, "outcome": kind, "reason": detail if kind != "won" else None,
            "currency": detail if kind == "won" else None, "leads": len(items),
            "amount": str(amount) if amount is not None else None,
        })  # fmt: skip
    return rows
