"""What each source is worth: the funnel, cost and revenue KPIs per source or category, and attribution.

Definitions (README "Reports" says the same):
- ``basis="cohort"`` (default): the leads created in the period, and how far each of them has got since;
  ``basis="activity"``: each count is the leads that reached that stage within the period.
- a lead belongs to its original source (first touch) and that source's category;
- cost is what ``source_costs`` says for the period, prorated by day where a cost row straddles it;
  CPL = cost / leads, cost per SQL = cost / SQLs, CAC = cost / customers, each null for a row no cost
  row covers (unknown is not free: seed 004 asks to estimate even organic channels);
- revenue is the won amount in the report's currency (other currencies are counted, never converted);
- LTV is the configured lifetime value, else the average won amount of the row's customers;
  payback months = CAC / (average won amount / contract months).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from fractions import Fraction
from typing import Any, Literal

from rules.attribution import credits, round_reconciled
from rules.report_facts import UNKNOWN, CostFacts, FunnelStages, LeadFacts, Period, TouchFacts, money, ratio

Basis = Literal["cohort", "activity"]
GroupBy = Literal["source", "category"]
TouchGroupBy = Literal["source", "category", "channel", "campaign"]
TOTAL = "(total)"


@dataclass(frozen=True)
class MoneyOptions:
    currency: str = "USD"
    # Lifetime value per customer when known (a setting or the report's ?ltv=); else the average deal.
    ltv: Decimal | None = None
    # Months a won amount pays for (payback uses amount / contract_months per month).
    contract_months: int = 12
    basis: Basis = "cohort"


def _counted(lead: LeadFacts, stage: str, reached: Mapping[str, datetime], period: Period, basis: Basis) -> bool:
    if stage not in reached:
        return False
    return lead.created_at in period if basis == "cohort" else reached[stage] in period


def _group_key(lead: LeadFacts, group_by: str) -> str:
    return (lead.category if group_by == "category" else lead.source) or UNKNOWN


def _cost_key(cost: CostFacts, group_by: str, category_of: Mapping[str, str]) -> str:
    if group_by == "source":
        return cost.source
    return cost.category or category_of.get(cost.source) or UNKNOWN


@dataclass
class _Tally:
    leads: int = 0
    mql: int = 0
    sql: int = 0
    opportunities: int = 0
    customers: int = 0
    paid_customers: int = 0
    revenue: Fraction = Fraction(0)
    other_currency: int = 0
    cost: Fraction = Fraction(0)
    # A cost row covers this group in the period: without one, cost-based figures are unknown, not zero.
    costed: bool = False


def _row(group: str, tally: _Tally, options: MoneyOptions) -> dict[str, Any]:
    average_deal = tally.revenue / tally.paid_customers if tally.paid_customers else None
    cost = tally.cost if tally.costed else None
    cac = cost / tally.customers if cost is not None and tally.customers else None
    ltv = Fraction(options.ltv) if options.ltv is not None else average_deal
    monthly = average_deal / options.contract_months if average_deal else None
    return {
        "group": group,
        "leads": tally.leads,
        "mql": tally.mql,
        "sql": tally.sql,
        "opportunities": tally.opportunities,
        "customers": tally.customers,
        "lead_to_mql": ratio(tally.mql, tally.leads),
        "mql_to_sql": ratio(tally.sql, tally.mql),
        "sql_to_opportunity": ratio(tally.opportunities, tally.sql),
        "win_rate": ratio(tally.customers, tally.opportunities),
        "lead_to_customer": ratio(tally.customers, tally.leads),
        "cost": money(tally.cost),
        "cpl": money(cost / tally.leads) if cost is not None and tally.leads else None,
        "cost_per_sql": money(cost / tally.sql) if cost is not None and tally.sql else None,
        "cac": money(cac),
        "revenue": money(tally.revenue),
        "average_deal": money(average_deal),
        "ltv": money(ltv),
        "ltv_cac": ratio(ltv, cac),
        "payback_months": ratio(cac, monthly),
        "roi": ratio(tally.revenue - cost, cost) if cost is not None else None,
        "won_in_other_currency": tally.other_currency,
    }


def source_report(
    leads: Iterable[LeadFacts],
    costs: Iterable[CostFacts],
    funnel: FunnelStages,
    period: Period,
    group_by: GroupBy = "source",
    options: MoneyOptions | None = None,
) -> list[dict[str, Any]]:
    """One row per source (or category) with leads or cost in the period, biggest first, then the total."""
    options = options or MoneyOptions()
    tallies: dict[str, _Tally] = defaultdict(_Tally)
    category_of: dict[str, str] = {}
    total = _Tally()
    for lead in leads:
        category_of.setdefault(lead.source, lead.category)
        reached = lead.reached(funnel)
        counted = {stage: _counted(lead, stage, reached, period, options.basis) for stage in funnel.order}
        if not (lead.created_at in period or any(counted.values())):
            continue
        for tally in (tallies[_group_key(lead, group_by)], total):
            tally.leads += lead.created_at in period
            tally.mql += counted[funnel.mql]
            tally.sql += counted[funnel.sql]
            tally.opportunities += counted[funnel.opportunity]
            if counted[funnel.customer]:
                tally.customers += 1
                if lead.won_amount is not None and lead.won_currency == options.currency:
                    tally.paid_customers += 1
                    tally.revenue += Fraction(lead.won_amount)
                elif lead.won_amount is not None:
                    tally.other_currency += 1
    for cost in costs:
        if cost.currency != options.currency:
            continue
        if cost.overlaps(period):
            share = cost.within(period)
            for tally in (tallies[_cost_key(cost, group_by, category_of)], total):
                tally.cost += share
                tally.costed = True
    ordered = sorted(tallies.items(), key=lambda item: (-item[1].leads, -item[1].cost, item[0]))
    return [_row(group, tally, options) for group, tally in ordered] + [_row(TOTAL, total, options)]


# ---------------------------------------------------------------- attribution


def _touch_key(touch: TouchFacts, group_by: str) -> str:
    value = {"source": touch.source, "category": touch.category, "channel": touch.channel, "campaign": touch.campaign}
    return value[group_by] or UNKNOWN


def attribution_report(
    leads: Iterable[LeadFacts],
    touches: Mapping[str, Sequence[TouchFacts]],
    funnel: FunnelStages,
    period: Period,
    model: str,
    conversion: str | None = None,
    group_by: TouchGroupBy = "source",
    currency: str = "USD",
) -> dict[str, Any]:
    """Conversions reached in the period (``conversion``: a funnel stage, the customer stage by default),
    each credited across the lead's touches up to that moment by ``model``. Revenue follows the credit.
    Rows reconcile: their conversions add up to the total count and their revenue to the total revenue."""
    stage = conversion or funnel.customer
    if stage not in funnel.order:
        raise ValueError(f"conversion {stage!r} is not a funnel stage: use one of {', '.join(funnel.order)}")
    conversions: dict[str, Fraction] = defaultdict(Fraction)
    revenue: dict[str, Fraction] = defaultdict(Fraction)
    touched: dict[str, int] = defaultdict(int)
    count, total_revenue = 0, Fraction(0)
    for lead in leads:
        converted_at = lead.reached(funnel).get(stage)
        if converted_at is None or converted_at not in period:
            continue
        path = sorted((t for t in touches.get(lead.lead_id, ()) if t.at <= converted_at), key=lambda t: t.at)
        if not path:  # no recorded touch: the lead's own original source gets the credit
            path = [TouchFacts(lead.lead_id, lead.created_at, lead.source, lead.category, None, lead.campaign)]
        amount = Fraction(0)
        if stage == funnel.customer and lead.won_amount is not None and lead.won_currency == currency:
            amount = Fraction(lead.won_amount)
        count += 1
        total_revenue += amount
        for touch, credit in zip(path, credits(model, [t.at for t in path], converted_at), strict=True):
            key = _touch_key(touch, group_by)
            touched[key] += 1
            conversions[key] += credit
            revenue[key] += credit * amount
    conversion_parts = round_reconciled(conversions, 4)
    revenue_parts = round_reconciled(revenue, 2)
    rows = [
        {
            "group": key,
            "conversions": conversion_parts[key],
            "revenue": revenue_parts[key],
            "touches": touched[key],
        }
        for key in sorted(conversions, key=lambda key: (-conversions[key], key))
    ]
    return {
        "model": model,
        "conversion": stage,
        "conversions": count,
        "revenue": money(total_revenue),
        "rows": rows,
    }


def touches_by_lead(touches: Iterable[TouchFacts]) -> dict[str, list[TouchFacts]]:
    grouped: dict[str, list[TouchFacts]] = defaultdict(list)
    for touch in touches:
        grouped[touch.lead_id].append(touch)
    return grouped


# ---------------------------------------------------------------- 70-20-10 (seed 004)

# Seed 004: about 70 % of lead volume from proven core sources, 20 % of effort on growth channels,
# 10 % on experiments.
MIX_TARGETS = {"core": Fraction(7, 10), "growth": Fraction(2, 10), "experiment": Fraction(1, 10)}
UNCLASSIFIED = "unclassified"


def budget_mix(
    leads: Iterable[LeadFacts],
    costs: Iterable[CostFacts],
    period: Period,
    tiers: Mapping[str, str],
    currency: str = "USD",
) -> list[dict[str, Any]]:
    """Leads created and money spent in the period per tier (``tiers``: source -> core, growth or
    experiment; other sources are unclassified), each as a share of the whole beside the 70-20-10
    target, so a manager sees where the mix drifts."""
    lead_counts: dict[str, int] = defaultdict(int)
    spend: dict[str, Fraction] = defaultdict(Fraction)
    members: dict[str, set[str]] = defaultdict(set)
    for lead in leads:
        if lead.created_at in period:
            tier = tiers.get(lead.source, UNCLASSIFIED)
            lead_counts[tier] += 1
            members[tier].add(lead.source)
    for cost in costs:
        share = cost.within(period) if cost.currency == currency else Fraction(0)
        if share:
            tier = tiers.get(cost.source, UNCLASSIFIED)
            spend[tier] += share
            members[tier].add(cost.source)
    total_leads, total_spend = sum(lead_counts.values()), sum(spend.values(), Fraction(0))
    rows = []
    for tier in [*MIX_TARGETS, UNCLASSIFIED]:
        target = MIX_TARGETS.get(tier)
        lead_share = Fraction(lead_counts[tier], total_leads) if total_leads else None
        spend_share = spend[tier] / total_spend if total_spend else None
        rows.append(
            {
                "tier": tier,
                "sources": ", ".join(sorted(members[tier])),
                "leads": lead_counts[tier],
                "lead_share": ratio(lead_share, 1),
                "cost": money(spend[tier]),
                "cost_share": ratio(spend_share, 1),
                "target_share": ratio(target, 1),
                "lead_gap": ratio(lead_share - target, 1) if target is not None and lead_share is not None else None,
                "cost_gap": ratio(spend_share - target, 1) if target is not None and spend_share is not None else None,
            }
        )
    return rows
