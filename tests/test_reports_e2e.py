"""Issue 8 items 6 and 7 end to end: the reports read what the lead workflows project, not only rows a test
wrote into the store. Leads arrive through the API (a form post with UTM, tracking alone, a webinar form),
one reaches SQL, is routed and touched by its rep in time; a cost is entered for its source. Every report
then answers from the store over HTTP: funnel, sources with cost per lead and per SQL, attribution,
time in stage, SLA with response time, source health.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from store import repo
from tests.conftest import TEST_API_KEY
from tests.test_integration import SEED_EVENTS, dev_server, eventually, stack  # noqa: F401  (fixtures, shared)

pytestmark = pytest.mark.integration
AUTH = {"X-API-Key": TEST_API_KEY}


def rows_by(answer: httpx.Response, key: str) -> dict[str, dict[str, Any]]:
    assert answer.status_code == 200, answer.text
    (period,) = answer.json()["periods"]
    return {row[key]: row for row in period["rows"]}


async def settled(sessions: async_sessionmaker[AsyncSession], lead_ids: list[str], sql_lead: str) -> None:
    """Until the workflows' projections are in the store: every lead, the SQL lead's stage and its met
    follow-up."""
    for _ in range(300):
        async with sessions() as session:
            rows = [await repo.get_lead(session, lead_id) for lead_id in lead_ids]
            followups = await repo.list_followups(session, status="met", limit=10, offset=0)
        sql = next((r for r in rows if r and r["id"] == sql_lead), None)
        if all(rows) and sql and sql["stage"] == "sql" and [f["lead_id"] for f in followups] == [sql_lead]:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"the projections never settled: {rows}")


@pytest.mark.parametrize("database_url", ["sqlite", "postgres"], indirect=True)
async def test_reports_count_what_the_workflows_projected(
    stack: httpx.AsyncClient,  # noqa: F811
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    http = stack
    today = datetime.now(UTC).date()
    # Today's spend, as a cost sheet spells the source (folded to the leads' `linkedin`).
    spend = {"source": "LinkedIn", "start": today.isoformat(), "end": today.isoformat(), "amount": "300"}
    cost = await http.put("/v1/costs", json={"costs": [spend | {"currency": "USD"}]}, headers=AUTH)
    assert cost.status_code == 200 and cost.json()["folded"] == {"LinkedIn": "linkedin"}, cost.text

    # A form post from a LinkedIn ad (grade A); its behaviour takes it to SQL; the rep calls in time.
    ann = {"email": "ann@example.com", "title": "VP Marketing", "company_size": 500, "country": "us",
           "utm": {"source": "LinkedIn", "medium": "paid_social", "campaign": "launch"}}  # fmt: skip
    ann_id = (await http.post("/v1/leads", json=ann, headers=AUTH)).json()["lead_id"]
    await eventually(http, f"/v1/leads/{ann_id}", lambda v: v["exists"])
    assert (await http.post(f"/v1/leads/{ann_id}/events", json=SEED_EVENTS, headers=AUTH)).status_code == 202
    await eventually(http, f"/v1/leads/{ann_id}", lambda v: v["owner"] is not None)
    touched = await http.post(f"/v1/leads/{ann_id}/touches", json={"kind": "call", "rep_id": "rep-aiko"}, headers=AUTH)
    assert touched.status_code == 200 and touched.json()["followup"]["status"] == "met", touched.text
    # Tracking alone, and a webinar form: new leads of other sources.
    tracked = await http.post("/v1/events", json={"events": [{"email": "bo@example.org", "type": "x"}]}, headers=AUTH)
    bo_id = tracked.json()["leads"][0]
    cy_id = (await http.post("/v1/leads", json={"email": "cy@example.com", "source": "Webinar"}, headers=AUTH)).json()[
        "lead_id"
    ]
    await settled(sessions, [ann_id, bo_id, cy_id], ann_id)

    day = {"from": today.isoformat(), "to": today.isoformat()}
    funnel = rows_by(await http.get("/v1/reports/funnel", params=day, headers=AUTH), "stage")
    assert {stage: row["leads"] for stage, row in funnel.items()} == {
        "new": 3, "mql": 1, "sql": 1, "opportunity": 0, "customer": 0}  # fmt: skip
    assert funnel["sql"]["conversion_from_previous"] == 1.0

    sources = rows_by(await http.get("/v1/reports/sources", params=day, headers=AUTH), "group")
    assert {group: row["leads"] for group, row in sources.items()} == {
        "linkedin": 1, "tracking": 1, "webinar": 1, "(total)": 3}  # fmt: skip
    linkedin = sources["linkedin"]
    assert (linkedin["sql"], linkedin["cpl"], linkedin["cost_per_sql"]) == (1, "300.00", "300.00")
    assert sources["webinar"]["cpl"] is None  # no cost row for it: unknown, not free
    categories = rows_by(await http.get("/v1/reports/sources", params=day | {"by": "category"}, headers=AUTH), "group")
    assert {group: row["leads"] for group, row in categories.items()} == {
        "paid": 1, "direct": 1, "event": 1, "(total)": 3}  # fmt: skip

    for model in ("first_touch", "last_touch", "linear", "time_decay", "u_shaped"):
        params = day | {"model": model, "conversion": "sql"}
        credited = rows_by(await http.get("/v1/reports/attribution", params=params, headers=AUTH), "group")
        assert credited["linkedin"]["conversions"] == "1.0000", (model, credited)

    timing = (await http.get("/v1/reports/time-in-stage", params=day, headers=AUTH)).json()["periods"][0]["rows"]
    to_sql = next(row for row in timing if row["measure"] == "first_touch_to_sql")
    assert to_sql["count"] == 1 and to_sql["avg_hours"] is not None

    sla = (await http.get("/v1/reports/sla", params=day, headers=AUTH)).json()["periods"][0]["rows"]
    aiko = next(row for row in sla if row.get("rep_id") == "rep-aiko")
    assert (aiko["team"], aiko["met_on_time"], aiko["breached"], aiko["met_rate"]) == ("inside-sales", 1, 0, 1.0)
    assert aiko["first_touches"] == 1 and 0 <= aiko["response_median_hours"] < 0.1  # called within seconds

    # Every lead has a known source; the one SQL of the day is all LinkedIn's: concentration risk.
    (health,) = (await http.get("/v1/reports/source-health", params=day, headers=AUTH)).json()["periods"]
    assert (health["new_leads"], health["unknown_source"], health["pipeline"]) == (3, 0, 1), health
    assert [(w["code"], w.get("source")) for w in health["warnings"]] == [("concentration_risk", "linkedin")]

    # The rep wins the deal (POST /v1/leads/{id}/won): the workflow projects the amount, and the money reports
    # read it: one customer from LinkedIn, its revenue, and the day's spend as the cost of acquiring it.
    won = {"amount": "12000", "currency": "USD", "close_date": today.isoformat(), "product": "Suite"}
    answer = await http.post(f"/v1/leads/{ann_id}/won", json=won, headers=AUTH)
    assert answer.status_code == 200 and answer.json()["stage"] == "customer", answer.text
    for _ in range(300):
        async with sessions() as session:
            stored = await repo.get_lead(session, ann_id)
        if stored and stored["won_amount"] is not None:
            break
        await asyncio.sleep(0.1)
    assert stored is not None and (stored["stage"], stored["won_currency"]) == ("customer", "USD"), stored
    sources = rows_by(await http.get("/v1/reports/sources", params=day, headers=AUTH), "group")
    linkedin = sources["linkedin"]
    assert (linkedin["customers"], linkedin["revenue"], linkedin["cac"]) == (1, "12000.00", "300.00"), linkedin
