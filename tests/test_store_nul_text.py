"""PostgreSQL text cannot hold U+0000 (NUL), SQLite can: a NUL that passed the edge (a title, a rep's name, a
search) made the lead's projection fail for good and PUT /v1/teams answer 500 on PostgreSQL (issue 6: store
writes never see an unrepresentable value). The store drops NUL from every text parameter on both backends."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.testing import ActivityEnvironment

from activities.leads import LeadActivities
from api.main import create_app
from rules.model import LeadSnapshot
from settings import Settings
from store import repo
from tests.conftest import TEST_API_KEY

AUTH = {"X-API-Key": TEST_API_KEY}
LEAD = "lead-" + "a" * 32
BACKENDS = pytest.mark.parametrize("database_url", ["sqlite", "postgres"], indirect=True)


@BACKENDS
async def test_a_nul_in_a_lead_field_is_projected_without_it(sessions: async_sessionmaker[AsyncSession]) -> None:
    now = datetime.now(UTC)
    attributes = {"email": "nul@example.com", "title": "V\x00P", "industry": "\x00", "notes": "a\x00b"}
    snap = LeadSnapshot(LEAD, attributes, "new", 0, None, None, None, now, now, "v1", None)
    await ActivityEnvironment().run(LeadActivities(sessions).project_lead, snap)  # DataError before, on PostgreSQL
    async with sessions() as session:
        lead = await repo.get_lead(session, LEAD)
    assert lead is not None and lead["title"] == "VP"


@BACKENDS
def test_nul_in_a_team_or_a_search_is_never_a_500(
    settings: Settings, sessions: async_sessionmaker[AsyncSession]
) -> None:
    offline = settings.model_copy(update={"temporal_address": "127.0.0.1:9", "scheduler_enabled": False})
    with TestClient(create_app(offline), raise_server_exceptions=False) as client:
        team = {"name": "Nul\x00 team", "reps": [{"id": "rep-nul", "name": "Ann\x00", "email": "ann@example.com"}]}
        answer = client.put("/v1/teams/nul", json=team, headers=AUTH)
        assert answer.status_code == 200, answer.text
        assert answer.json()["name"] == "Nul team" and answer.json()["reps"][0]["name"] == "Ann"
        search = client.get("/leads", params={"q": "acme\x00"}, auth=("manager", TEST_API_KEY))
        assert search.status_code == 200, search.text[:300]
