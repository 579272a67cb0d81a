"""Backtest: stored histories replayed through the live and a draft playbook, the difference reported."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from fastapi.testclient import TestClient
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.main import create_app
from rules import load_playbook_text
from rules.backtest import LeadHistory, backtest
from rules.model import LeadSnapshot, TrackedEvent
from settings import ROOT, Settings
from store import repo
from tests.conftest import TEST_API_KEY

DEFAULT_TEXT = (ROOT / "playbooks" / "default.yaml").read_text()
LIVE = load_playbook_text(DEFAULT_TEXT, version="live")
# Draft: SQL at 45 instead of 60, and no Japan territory rule (everyone to inside-sales).
DRAFT_TEXT = DEFAULT_TEXT.replace("when: score >= 60 and grade", "when: score >= 45 and grade").replace(
    '      when: lead.country == "JP"\n      team: japan', '      when: lead.country == "XX"\n      team: japan'
)
DRAFT = load_playbook_text(DRAFT_TEXT, version="draft")
START = datetime(2026, 9, 1, 9, tzinfo=UTC)
END = START + timedelta(days=60)


def histories() -> list[LeadHistory]:
    """Three kinds of leads: hot (download + pricing = 55), warm (download + click = 20), JP hot."""
    out = []
    for i in range(30):
        kind = ("hot", "warm", "jp")[i % 3]
        at = START + timedelta(days=i)
        attrs = {
            "email": f"l{i}@example.com",
            "title": "VP Sales",
            "company_size": 300,
            "country": "JP" if kind == "jp" else "US",
        }
        events = [TrackedEvent(f"{i}-d", "download", at + timedelta(hours=1))]
        if kind in ("hot", "jp"):
            events.append(TrackedEvent(f"{i}-p", "page_view", at + timedelta(hours=2), url="https://x.example/pricing"))
        else:
            events.append(TrackedEvent(f"{i}-c", "email_click", at + timedelta(hours=2)))
        out.append(LeadHistory(f"lead-{i}", attrs, at, events))
    return out


def test_same_playbook_reports_no_difference() -> None:
    report = backtest(LIVE, LIVE, histories(), END)
    assert report.leads == 30 and report.routed_elsewhere == 0 and report.stage_changed == 0
    assert all(v["change"] == 0 for v in report.reached.values())
    # hot and JP leads have 55 points (MQL, not SQL); warm ones 20 (still new)
    assert report.reached["mql"]["live"] == 20 and report.reached["sql"]["live"] == 0


def test_draft_difference_is_reported_lead_by_lead() -> None:
    report = backtest(LIVE, DRAFT, histories(), END)
    # Hot and JP leads (55 points) now pass the lower SQL line; warm ones (20) do not.
    assert report.reached["sql"] == {"live": 0, "draft": 20, "change": 20}
    assert report.final_stage["mql"] == {"live": 20, "draft": 0, "change": -20}
    assert report.final_stage["new"] == {"live": 10, "draft": 10, "change": 0}
    assert report.stage_changed == 20
    # The JP leads would be routed to inside-sales: none routed live, so routing differs for all 20 SQLs.
    teams = {(r["live_team"], r["draft_team"]) for r in report.routed_elsewhere_leads}
    assert teams == {(None, "inside-sales")} and report.routed_elsewhere == 20
    # each untouched SQL: the first rep, then one reassignment (max_reassignments: 1), then the manager keeps it
    assert report.emails["rep_new_lead"] == {"live": 0, "draft": 40, "change": 40}
    assert backtest(LIVE, DRAFT, histories(), END) == report  # deterministic


async def test_backtest_endpoint_reads_stored_histories(
    settings: Settings, sessions: async_sessionmaker[AsyncSession]
) -> None:
    now = datetime.now(UTC)
    async with sessions() as session:
        for h in histories()[:9]:
            created = now - timedelta(days=5)
            await repo.project_lead(
                session, LeadSnapshot(h.lead_id, h.attributes, "mql", 55, "A", None, None, created, created, "v0", None)
            )
            shifted = [TrackedEvent(e.id, e.type, created + (e.at - h.created_at), e.url) for e in h.events]
            await repo.add_touchpoints(session, h.lead_id, shifted, created)
        old = LeadSnapshot(
            "lead-old",
            {"email": "old@example.com"},
            "new",
            0,
            "F",
            None,
            None,
            now - timedelta(days=200),
            now,
            "v0",
            None,
        )
        await repo.project_lead(session, old)
    with TestClient(create_app(settings)) as client:
        answer = client.post(
            "/v1/playbooks:backtest", json={"playbook": DRAFT_TEXT, "days": 90}, headers={"X-API-Key": TEST_API_KEY}
        )
        assert answer.status_code == 200, answer.text
        report = answer.json()
        assert report["leads"] == 9  # the 200-day-old lead is outside the window
        assert report["reached"]["sql"] == {"live": 0, "draft": 6, "change": 6}
        assert report["routed_elsewhere"] == 6 and report["elapsed_ms"] >= 0
        bad = client.post(
            "/v1/playbooks:backtest", json={"playbook": DRAFT_TEXT, "days": 0}, headers={"X-API-Key": TEST_API_KEY}
        )
        assert bad.status_code == 422 and "days" in bad.text
