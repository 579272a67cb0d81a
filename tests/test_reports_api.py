"""The cost input and the report endpoints over HTTP (JSON and CSV), on SQLite and PostgreSQL: a real
app with a real store holding the generated population; Temporal is not needed and not running."""

from __future__ import annotations

import asyncio
import csv
import io
import os
from collections.abc import Iterator
from contextlib import ExitStack
from decimal import Decimal
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from settings import ROOT, Settings
from store.db import make_engine, make_sessionmaker, run_migrations
from tests.conftest import PG_ENV, TEST_API_KEY, postgres_database
from tests.reports_dataset import MONTHS, Plan, generate, write
from tests.test_reports_money import cents, expected_sources

AUTH = {"X-API-Key": TEST_API_KEY}
BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


async def _fill(url: str, plan: Plan | None) -> None:
    await asyncio.to_thread(run_migrations, url)
    if plan is not None:
        engine = make_engine(url)
        await write(make_sessionmaker(engine), plan)
        await engine.dispose()


def _client(database_url: str, tmp_path: Path, plan: Plan | None) -> Iterator[TestClient]:
    asyncio.run(_fill(database_url, plan))
    settings = Settings(
        data_dir=tmp_path,
        database_url=database_url,
        api_key=TEST_API_KEY,
        id_key="k",
        unsubscribe_key="u",
        temporal_address="127.0.0.1:9",
        scheduler_enabled=False,
        templates_dir=ROOT / "templates",
        playbook_path=ROOT / "playbooks" / "default.yaml",
    )
    with TestClient(create_app(settings)) as client:
        yield client


@pytest.fixture
def empty(database_url: str, tmp_path: Path) -> Iterator[TestClient]:
    yield from _client(database_url, tmp_path, None)


@pytest.fixture(scope="module", params=BACKENDS)
def planned(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Plan, TestClient]]:
    """One app over the generated population per backend, shared by the read-only report tests."""
    data = tmp_path_factory.mktemp("reports-api")
    with ExitStack() as stack:
        if request.param == "sqlite":
            url = f"sqlite:///{data / 'leadflow.db'}"
        else:
            base = os.environ.get(PG_ENV)
            if not base:
                pytest.skip(f"{PG_ENV} is not set (e.g. postgresql://postgres@127.0.0.1:5432/test)")
            url = stack.enter_context(postgres_database(base))
        plan = generate()
        for client in _client(url, data, plan):
            yield plan, client


def rows_of(answer_text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(answer_text)))


# ---------------------------------------------------------------- costs


def test_costs_put_get_replace_and_csv(empty: TestClient) -> None:
    body = {
        "costs": [
            {"source": "google_ads", "period": "2026-01", "amount": "5000", "currency": "USD"},
            {
                "source": "webinar",
                "start": "2026-01-01",
                "end": "2026-03-31",
                "amount": 9000,
                "currency": "USD",
                "category": "event",
                "note": "Q1 webinar series",
            },
        ]
    }
    assert empty.put("/v1/costs", json=body, headers=AUTH).json() == {"stored": 2}
    again = {"costs": [{"source": "google_ads", "period": "2026-01", "amount": "5200.50", "currency": "USD"}]}
    assert empty.put("/v1/costs", json=again, headers=AUTH).json() == {"stored": 1}
    items = empty.get("/v1/costs", params={"from": "2026-01-01", "to": "2026-01-31"}, headers=AUTH).json()["items"]
    assert [(i["source"], i["start"], i["end"], Decimal(str(i["amount"]))) for i in items] == [
        ("google_ads", "2026-01-01", "2026-01-31", Decimal("5200.50")),
        ("webinar", "2026-01-01", "2026-03-31", Decimal("9000")),
    ]
    assert empty.get("/v1/costs", params={"from": "2026-04-01"}, headers=AUTH).json()["items"] == []
    exported = empty.get("/v1/costs.csv", headers=AUTH)
    assert exported.headers["content-type"].startswith("text/csv")
    assert [(r["source"], r["amount"]) for r in rows_of(exported.text)] == [
        ("google_ads", "5200.5000"),
        ("webinar", "9000.0000"),
    ]
    first = items[0]["id"]
    assert empty.delete(f"/v1/costs/{first}", headers=AUTH).status_code == 204
    assert empty.delete(f"/v1/costs/{first}", headers=AUTH).status_code == 404


def test_cost_sources_fold_through_the_source_map(empty: TestClient) -> None:
    """A cost sheet says "LinkedIn Ads" where leads' original source says linkedin: the cost must land on the
    leads' row, not on a source of its own with no leads (issue 8: "LinkedIn", "linkedin" and "LinkedIn Ads"
    were three sources)."""
    body = {"costs": [{"source": "LinkedIn Ads", "period": "2026-01", "amount": "100", "currency": "USD"},
                      {"source": " Expo-2026 ", "period": "2026-01", "amount": "50", "currency": "USD"}]}  # fmt: skip
    answer = empty.put("/v1/costs", json=body, headers=AUTH).json()
    assert answer == {"stored": 2, "folded": {"LinkedIn Ads": "linkedin", "Expo-2026": "expo-2026"}}
    uploaded = empty.put(
        "/v1/costs.csv",
        content=b"source,period,amount,currency\nlnkd.in,2026-02,70,USD\n",
        headers=AUTH | {"content-type": "text/csv"},
    )
    assert uploaded.json() == {"stored": 1, "folded": {"lnkd.in": "linkedin"}}, uploaded.text
    found = empty.get("/v1/costs", params={"source": "LinkedIn"}, headers=AUTH).json()["items"]
    assert [(i["source"], i["start"]) for i in found] == [("linkedin", "2026-01-01"), ("linkedin", "2026-02-01")]


def test_costs_csv_upload_lists_every_bad_line_and_stores_nothing(empty: TestClient) -> None:
    bad = (
        "source,campaign,period,start,end,amount,currency\n"
        "google_ads,,2026-01,,,5000,USD\n"
        "linkedin_ads,,2026-13,,,3000,USD\n"
        "newsletter,,,2026-02-01,2026-01-01,400,USD\n"
        "twitter,,2026-01,,,-5,usd\n"
    )
    answer = empty.put("/v1/costs.csv", content=bad.encode(), headers={**AUTH, "content-type": "text/csv"})
    assert answer.status_code == 422
    errors = answer.json()["errors"]
    assert [e["line"] for e in errors] == [3, 4, 5]
    assert "2026-13" in errors[0]["message"] and "before start" in errors[1]["message"]
    assert "amount" in errors[2]["message"] and "currency" in errors[2]["message"]
    assert empty.get("/v1/costs", headers=AUTH).json()["items"] == []
    good = (
        "\ufeffsource,campaign,period,amount,currency\n"  # a spreadsheet's byte-order mark is fine
        "google_ads,,2026-01,5000,USD\nlinkedin_ads,spring,2026-02,1500,USD\n"
    )
    stored = empty.put("/v1/costs.csv", content=good.encode(), headers=AUTH).json()
    assert stored == {"stored": 2, "folded": {"linkedin_ads": "linkedin"}}  # the source map's LinkedIn Ads
    assert [i["campaign"] for i in empty.get("/v1/costs", headers=AUTH).json()["items"]] == ["", "spring"]
    unknown = empty.put("/v1/costs.csv", content=b"source,price\nx,1\n", headers=AUTH)
    assert unknown.status_code == 422 and "amount" in unknown.json()["detail"]
    huge = empty.put("/v1/costs.csv", content=b"source,amount,currency\n" + b"x" * 200_000 + b",1,USD\n", headers=AUTH)
    # Over the csv module's field limit (or, where a caller raised it, over the 200-character source): a 422.
    assert huge.status_code == 422 and huge.json()["detail"]


@pytest.mark.parametrize(
    "cost, message",
    [
        (
            {
                "source": "g",
                "period": "2026-01",
                "start": "2026-01-01",
                "end": "2026-01-31",
                "amount": 1,
                "currency": "USD",
            },
            "not both",
        ),
        ({"source": "g", "amount": 1, "currency": "USD"}, "period"),
        ({"source": "g", "period": "2026-01", "amount": "1e20", "currency": "USD"}, "amount"),
        ({"source": " ", "period": "2026-01", "amount": 1, "currency": "USD"}, "source"),
        ({"source": "g", "period": "2026-01", "amount": 1, "currency": "dollars"}, "currency"),
    ],
)
def test_bad_costs_get_a_422_that_says_what_to_fix(empty: TestClient, cost: dict, message: str) -> None:
    answer = empty.put("/v1/costs", json={"costs": [cost]}, headers=AUTH)
    assert answer.status_code == 422 and message in answer.json()["detail"]


# ---------------------------------------------------------------- reports


def test_sources_report_json_and_csv(planned: tuple[Plan, TestClient]) -> None:
    plan, client = planned
    answer = client.get("/v1/reports/sources", params={"month": "2026-01"}, headers=AUTH)
    assert answer.status_code == 200, answer.text
    (period,) = answer.json()["periods"]
    assert (period["period"], period["from"], period["to"]) == ("2026-01", "2026-01-01", "2026-01-31")
    rows = {row["group"]: row for row in period["rows"]}
    for group, want in expected_sources(plan, "2026-01", "source").items():
        assert rows[group]["leads"] == want["leads"] and rows[group]["customers"] == want["customers"]
        # Money is a decimal string in JSON: exact, so rows add up to totals to the cent.
        assert isinstance(rows[group]["cost"], str) and Decimal(rows[group]["cost"]) == cents(want["cost"])
        cpl = rows[group]["cpl"]
        assert (Decimal(cpl) if cpl is not None else None) == want["cpl"]
    quarter = client.get(
        "/v1/reports/sources.csv",
        params={"from": "2026-01-01", "to": "2026-03-31", "interval": "month", "by": "category"},
        headers=AUTH,
    )
    assert quarter.status_code == 200 and quarter.headers["content-type"].startswith("text/csv")
    csv_rows = rows_of(quarter.text)
    assert {r["period"] for r in csv_rows} == set(MONTHS)
    for label in MONTHS:
        expected = expected_sources(plan, label, "category")
        got = {r["group"]: r for r in csv_rows if r["period"] == label}
        assert set(got) - {"(total)"} == set(expected)
        assert all(Decimal(got[g]["cost"]) == cents(w["cost"]) for g, w in expected.items())
    assert client.get("/v1/reports/sources?month=2026-01&format=csv", headers=AUTH).text.startswith("period,group,")


def test_attribution_report_per_model(planned: tuple[Plan, TestClient]) -> None:
    _, client = planned
    for model in ("first_touch", "last_touch", "linear", "time_decay", "u_shaped"):
        answer = client.get("/v1/reports/attribution", params={"month": "2026-02", "model": model}, headers=AUTH)
        assert answer.status_code == 200, answer.text
        (period,) = answer.json()["periods"]
        assert period["model"] == model and period["conversion"] == "customer"
        assert sum(Decimal(str(r["conversions"])) for r in period["rows"]) == period["conversions"]
        assert sum(Decimal(str(r["revenue"])) for r in period["rows"]) == Decimal(str(period["revenue"]))
    flat = rows_of(
        client.get("/v1/reports/attribution.csv?month=2026-02&model=u_shaped&by=campaign", headers=AUTH).text
    )
    assert (
        flat
        and {r["model"] for r in flat} == {"u_shaped"}
        and all("-" in r["group"] or r["group"] == "unknown" for r in flat)
    )


def test_kpi_endpoints_answer_json_and_csv(planned: tuple[Plan, TestClient]) -> None:
    _, client = planned
    q1 = {"from": "2026-01-01", "to": "2026-03-31", "interval": "month"}
    for name in ("funnel", "time-in-stage", "sla", "source-health"):
        answer = client.get(f"/v1/reports/{name}", params=q1, headers=AUTH)
        assert answer.status_code == 200, (name, answer.text)
        assert [p["period"] for p in answer.json()["periods"]] == list(MONTHS)
        assert client.get(f"/v1/reports/{name}.csv", params=q1, headers=AUTH).text.startswith("period,")
    health = rows_of(client.get("/v1/reports/source-health.csv", params=q1, headers=AUTH).text)
    assert ["tracking is broken" in r["warnings"] for r in health] == [False, True, False]
    assert ["concentration risk" in r["warnings"] for r in health] == [False, False, True]
    mix = client.get("/v1/reports/mix.csv", params={**q1, "core": "google_ads,organic_search"}, headers=AUTH)
    march = [r for r in rows_of(mix.text) if r["period"] == "2026-03"]
    assert [r["tier"] for r in march] == ["core", "growth", "experiment", "unclassified"]
    assert march[0]["sources"] == "google_ads, organic_search" and float(march[0]["lead_share"]) > 0.5
    only_end = client.get("/v1/reports/funnel", params={"to": "2026-02-10"}, headers=AUTH).json()["periods"]
    assert [(p["from"], p["to"]) for p in only_end] == [("2026-02-01", "2026-02-10")]
    velocity = client.get("/v1/reports/velocity", params=q1, headers=AUTH).json()
    assert [r["period"] for r in velocity["rows"]] == list(MONTHS) and velocity["params"]["stage"] == "mql"


@pytest.mark.parametrize(
    "url, message",
    [
        ("/v1/reports/sources?month=2026-13", "YYYY-MM"),
        ("/v1/reports/sources?from=2026-03-01&to=2026-01-01", "before it starts"),
        ("/v1/reports/sources?month=2026-01&from=2026-01-01", "not both"),
        ("/v1/reports/sources?from=2000-01-01&to=2026-01-01", "at most"),
        ("/v1/reports/attribution?model=w_shaped", "model must be one of"),
        ("/v1/reports/attribution?conversion=nirvana", "funnel stage"),
        ("/v1/reports/velocity?stage=nirvana", "stage must be a funnel stage"),
        ("/v1/reports/sources?currency=usd", "currency"),
        ("/v1/reports/funnel?format=xlsx", "format"),
        ("/v1/reports/velocity?from=0557-11-01&to=0557-11-30", "years 1900 to 9998"),
        ("/v1/reports/velocity?from=0001-01-01&to=0001-01-31", "years 1900 to 9998"),
        ("/v1/reports/sources?from=9999-12-01&to=9999-12-31", "years 1900 to 9998"),
    ],
)
def test_bad_report_queries_get_a_422(empty: TestClient, url: str, message: str) -> None:
    answer = empty.get(url, headers=AUTH)
    assert answer.status_code == 422 and message in answer.json()["detail"], answer.text
