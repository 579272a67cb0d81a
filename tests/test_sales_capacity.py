"""Sales outcomes feed the capacity release (issue 9 items 2 and 3): a lead lost, won, disqualified, rejected or
reassigned by hand frees its rep, and the outcome reaches the store's columns that reports count (won amount
and currency, lost and disqualify reasons, the acceptance). SQLite, and PostgreSQL when
LEADFLOW_TEST_POSTGRES_URL is set; the real engine and store, as tests/test_capacity_release.py drives them."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import pytest

from rules.model import Actor, LeadUpserted, SalesChange, TimerFired
from store import repo
from tests.test_capacity_release import T0, Lead, Sessions, db_url, open_load, sm  # noqa: F401  (fixtures)

MANAGER = Actor("user", "mina", "manager", "mina")


def sales(action: str, **fields: Any) -> SalesChange:
    return SalesChange(f"change-{action}", action, MANAGER, T0, **fields)  # type: ignore[arg-type]


async def stored(sm: Sessions, lead: Lead) -> dict[str, Any]:  # noqa: F811
    async with sm() as session:
        row = await repo.get_lead(session, lead.state.lead_id)
    assert row is not None
    return row


@pytest.mark.parametrize(
    ("change", "stage"),
    [
        (sales("lost", reason="competitor"), "lost"),
        (
            sales("won", amount=Decimal("9500.50"), currency="EUR", close_date=date(2026, 1, 9), product="Pro"),
            "customer",
        ),
        (sales("disqualify", reason="spam"), "disqualified"),
    ],
    ids=["lost", "won", "disqualified"],
)
async def test_an_outcome_frees_the_reps_capacity_and_is_projected(
    sm: Sessions,  # noqa: F811
    change: SalesChange,
    stage: str,
) -> None:
    first, second = Lead(sm, "first"), Lead(sm, "second")
    await first.to_sql(T0)
    await second.to_sql(T0 + timedelta(minutes=1))
    assert second.owner is None and await open_load(sm) == 1  # rep-a (capacity 1) is full

    await first.send(change, T0 + timedelta(days=3))
    assert first.state.stage == stage and await open_load(sm) == 0
    row = await stored(sm, first)
    assert (row["stage"], row["outcome"], row["outcome_by"]) == (stage, first.state.outcome.kind, "manager mina")  # type: ignore[union-attr]
    if change.action == "won":
        assert (row["won_amount"], row["won_currency"], row["won_product"], row["close_date"]) == (
            Decimal("9500.50"), "EUR", "Pro", date(2026, 1, 9)
        )  # fmt: skip
        assert row["won_at"] is not None and row["lost_reason"] is None
    elif change.action == "lost":
        assert (row["lost_reason"], row["won_amount"]) == ("competitor", None)
    else:
        assert row["disqualify_reason"] == "spam"

    await second.send(TimerFired("assign_retry"), T0 + timedelta(days=3, hours=1))
    assert second.owner == "rep-a" and await open_load(sm) == 1


async def test_a_rejection_rerouted_frees_the_rejecting_rep_and_the_store_shows_the_acceptance(
    sm: Sessions,  # noqa: F811
) -> None:
    lead = Lead(sm, "rejected")
    await lead.to_sql(T0)
    row = await stored(sm, lead)
    assert (row["acceptance_status"], row["owner_rep_id"]) == ("pending", "rep-a")
    # rep-a is the team's only rep: the reroute that excludes them finds nobody, the lead waits in the queue.
    rep = Actor("key", "ak_a", "rep", "a's key", "rep-a")
    await lead.send(SalesChange("reject-1", "reject", rep, T0, reason="not_a_fit"), T0 + timedelta(hours=1))
    assert lead.owner is None and lead.state.queued_team == "inside-sales"
    assert await open_load(sm) == 0
    row = await stored(sm, lead)
    assert (row["acceptance_status"], row["owner_rep_id"], row["sla_status"]) == (None, None, "cancelled")
    async with sm() as session:  # out of the overdue list and the digest (rules/followups.py)
        assert await repo.list_followups(session, status="pending", limit=10, offset=0) == []


async def test_an_accepted_lead_keeps_its_rep_and_leaves_the_awaiting_list(sm: Sessions) -> None:  # noqa: F811
    lead = Lead(sm, "accepted")
    await lead.to_sql(T0)
    rep = Actor("key", "ak_a", "rep", "a's key", "rep-a")
    await lead.send(SalesChange("accept-1", "accept", rep, T0), T0 + timedelta(minutes=10))
    row = await stored(sm, lead)
    assert (row["acceptance_status"], row["owner_rep_id"], await open_load(sm)) == ("accepted", "rep-a", 1)


async def test_the_outcomes_report_counts_won_amounts_and_lost_reasons(sm: Sessions) -> None:  # noqa: F811
    from rules.report_facts import span
    from store import reports_run

    won, lost, disqualified = Lead(sm, "won"), Lead(sm, "lost"), Lead(sm, "dq")
    for lead in (won, lost, disqualified):
        await lead.send(LeadUpserted({"email": f"{lead.state.lead_id}@x.test"}), T0)
    await won.send(sales("won", amount=Decimal("1200.00"), currency="USD"), T0 + timedelta(days=1))
    await lost.send(sales("lost", reason="competitor"), T0 + timedelta(days=2))
    await disqualified.send(sales("disqualify", reason="spam"), T0 + timedelta(days=40))  # outside the period
    async with sm() as session:
        (period,) = await reports_run.outcomes(session, [span(T0.date(), T0.date() + timedelta(days=30))])
    rows = [(r["outcome"], r["reason"], r["currency"], r["leads"]) for r in period["rows"]]
    assert rows == [("lost", "competitor", None, 1), ("won", None, "USD", 1)]
    assert Decimal(period["rows"][1]["amount"]) == Decimal("1200")
