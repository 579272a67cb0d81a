"""The simulator: shipped examples double as tests; the API and the CLI give the same answers."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from fastapi.testclient import TestClient
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.main import create_app
from cli.__main__ import main as cli_main
from rules import load_playbook_text
from rules.simulate import Scenario, result_as_dict, simulate
from settings import ROOT, Settings
from tests.conftest import TEST_API_KEY
from tests.lifecycle_fixtures import lifecycle_playbook

EXAMPLES = sorted((ROOT / "playbooks" / "examples").glob("*.yaml"))
DEFAULT = load_playbook_text((ROOT / "playbooks" / "default.yaml").read_text())
AUTH = {"X-API-Key": TEST_API_KEY}


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_shipped_example_meets_its_expectations(path: Path) -> None:
    scenario = Scenario.model_validate(yaml.safe_load(path.read_text()))
    assert scenario.expect is not None, "every shipped example states what it expects"
    result = simulate(DEFAULT, scenario)
    assert result.failures == []
    assert result.final["score_explained"] == pytest.approx(result.final["score"])


def test_the_trace_shows_a_recycled_lead_nurtured_again_and_its_follow_up_cancelled() -> None:
    """journeys[].reenroll: every_time (tests/lifecycle_fixtures.py): recycled twice, enrolled twice; each
    recycling ends the open follow-up as cancelled."""
    scenario = Scenario.model_validate(
        {
            "lead": {"email": "rin@example.com"},
            "events": [
                {"after": "0m", "type": "page_view", "url": "https://x.test/pricing"},
                {"after": "31d", "type": "page_view", "url": "https://x.test/pricing"},
            ],
            "run_for": "62d",
        }
    )
    result = simulate(load_playbook_text(lifecycle_playbook("every_time")), scenario)
    journey = [(e.detail["status"], e.detail.get("enrolment")) for e in result.trace if e.kind == "journey"]
    assert journey == [("enrolled", 1), ("exited", None), ("enrolled", 2)]
    cancelled = [e.detail for e in result.trace if e.kind == "sla" and e.detail["status"] == "cancelled"]
    # Reassigned after each breach (the rep who missed it owes it no more), recycled after 30 days in SQL.
    reasons = [c["reason"] for c in cancelled]
    assert reasons.count("the lead has no owner any more") == 2
    assert all(r.startswith("the lead went to inside-sales-rep-") for r in reasons if "no owner" not in r)
    assert result.final["enrolments"] == {"recycled_nurture": 2} and result.final["sla"] == "cancelled"
    assert [e["template"] for e in result.emails if e["kind"] == "nurture"] == ["welcome", "welcome"]


def test_seed_story_trace_tells_the_whole_story() -> None:
    scenario = Scenario.model_validate(yaml.safe_load((ROOT / "playbooks/examples/seed_story.yaml").read_text()))
    result = simulate(DEFAULT, scenario)
    kinds = [(e.kind, e.detail.get("to") or e.detail.get("rule") or e.detail.get("status")) for e in result.trace]
    # whitepaper points, pricing page points, SQL, routed, SLA started, then met by the call
    order = [
        ("score", "whitepaper_download"),
        ("score", "pricing_page"),
        ("stage", "sql"),
        ("sla", "started"),
        ("sla", "met"),
    ]
    positions = [kinds.index(step) for step in order]
    assert positions == sorted(positions)
    sla = next(e for e in result.trace if e.kind == "sla" and e.detail["status"] == "started")
    assert sla.detail["due_at"] - sla.at == __import__("datetime").timedelta(hours=24)
    assert simulate(DEFAULT, scenario).trace == result.trace  # deterministic


def test_scenario_errors_are_plain() -> None:
    with pytest.raises(ValueError, match="not a time offset"):
        Scenario.model_validate({"lead": {"email": "a@example.com"}, "events": [{"after": "soon", "type": "x"}]})
    with pytest.raises(ValueError, match="needs an email"):
        Scenario.model_validate({"lead": {"company": "Acme"}})


def test_cli_simulates_examples_and_reports_broken_playbooks(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli_main(["simulate", *map(str, EXAMPLES)]) == 0
    assert "stage    from=new, to=sql" in capsys.readouterr().out
    broken = tmp_path / "broken.yaml"
    broken.write_text(
        (ROOT / "playbooks/default.yaml")
        .read_text()
        .replace('when: event.type == "download"', 'when: event.typ == "download"')
    )
    assert cli_main(["validate", str(broken)]) == 1
    err = capsys.readouterr().err
    line = next(i for i, text in enumerate(broken.read_text().splitlines(), 1) if "event.typ ==" in text)
    assert f"line {line}" in err and 'Did you mean "type"' in err


async def test_api_validates_and_simulates(settings: Settings, sessions: async_sessionmaker[AsyncSession]) -> None:
    draft = (ROOT / "playbooks/default.yaml").read_text()
    with TestClient(create_app(settings)) as client:
        ok = client.post("/v1/playbooks:validate", json={"playbook": draft}, headers=AUTH)
        assert ok.status_code == 200 and ok.json()["summary"]["journeys"] == ["welcome_nurture"]

        bad = client.post(
            "/v1/playbooks:validate", headers=AUTH, json={"playbook": draft.replace("team: japan", "team: mars")}
        )
        assert bad.status_code == 422
        issue = bad.json()["issues"][0]
        assert (
            'no team "mars"' in issue["message"] and issue["line"] == draft.splitlines().index("      team: japan") + 1
        )

        scenario = yaml.safe_load((ROOT / "playbooks/examples/sla_breach.yaml").read_text())
        sim = client.post("/v1/playbooks:simulate", json={"scenario": scenario}, headers=AUTH)
        assert sim.status_code == 200, sim.text
        body = sim.json()
        assert body["failures"] == [] and body["final"]["owner"] == "rep-ben"
        expected = result_as_dict(simulate(DEFAULT, Scenario.model_validate(scenario)))
        assert [e["template"] for e in body["emails"]] == [e["template"] for e in expected["emails"]]

        # A draft with a 1-hour SLA changes the outcome before anything is published.
        draft_fast = draft.replace("first_touch: 4h", "first_touch: 1h").replace(
            "remind_before: 1h", "remind_before: 30m"
        )
        sim = client.post("/v1/playbooks:simulate", json={"playbook": draft_fast, "scenario": scenario}, headers=AUTH)
        escalated = [
            e for e in sim.json()["trace"] if e["kind"] == "email" and e["detail"]["template"] == "sla_escalation"
        ]
        assert escalated and escalated[0]["at"].startswith("2026-01-05T10:10")

        assert client.post("/v1/playbooks:simulate", json={"scenario": {"lead": {}}}, headers=AUTH).status_code == 422
        assert client.post("/v1/playbooks:simulate", json={"scenario": scenario}).status_code == 401


async def test_publish_versions_list_get_and_diff(
    settings: Settings, sessions: async_sessionmaker[AsyncSession], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("api.deps.PLAYBOOK_CHECK_SECONDS", 0.0)  # see each publication at once
    draft = (ROOT / "playbooks/default.yaml").read_text()
    with TestClient(create_app(settings)) as client:
        assert client.get("/v1/playbook", headers=AUTH).json()["version"].startswith("file-")
        first = client.post("/v1/playbooks", json={"playbook": draft, "author": "mika"}, headers=AUTH)
        assert first.status_code == 201 and first.json()["version"] == 1 and first.json()["author"] == "mika"
        again = client.post("/v1/playbooks", json={"playbook": draft}, headers=AUTH)
        assert again.status_code == 200 and again.json() == {**first.json(), "created": False}
        broken = client.post(
            "/v1/playbooks", json={"playbook": draft.replace("points: 40", "points: many")}, headers=AUTH
        )
        assert broken.status_code == 422 and broken.json()["issues"][0]["line"] is not None
        second = client.post(
            "/v1/playbooks",
            headers=AUTH,
            json={"playbook": draft.replace("points: 40", "points: 45"), "note": "pricing"},
        )
        assert second.status_code == 201 and second.json()["version"] == 2

        listed = client.get("/v1/playbooks", headers=AUTH).json()
        assert [v["version"] for v in listed["items"]] == [2, 1]
        assert client.get("/v1/playbooks/1", headers=AUTH).json()["document"] == draft
        diff = client.get("/v1/playbooks/1/diff/2", headers=AUTH).json()["diff"]
        assert "-      points: 40" in diff and "+      points: 45" in diff
        assert client.get("/v1/playbooks/9", headers=AUTH).status_code == 404
        assert client.get("/v1/playbook", headers=AUTH).json()["version"] == "v2"
