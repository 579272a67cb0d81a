"""Shared by the role, scope, audit, login and export tests: an offline API (no Temporal: its routes answer
503) over a real migrated SQLite store, one API key per role, and leads and follow-ups owned by known reps."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import create_engine, insert

from api.main import create_app
from rules.access import Role
from store.models import FollowUpRow, Lead, Rep, Team
from tests.conftest import TEST_API_KEY
from tests.test_robustness import offline_settings

ADMIN = {"X-API-Key": TEST_API_KEY}
NOW = datetime.now(UTC)
# (lead id, owner rep, owner team): aiko and ben are in inside-sales, yui in japan.
LEADS = [
    ("lead-" + "a" * 32, "rep-aiko", "inside-sales", "ann@example.com"),
    ("lead-" + "b" * 32, "rep-ben", "inside-sales", "bob@example.com"),
    ("lead-" + "c" * 32, "rep-yui", "japan", "chie@example.jp"),
]
SCOPES: dict[Role, dict[str, Any]] = {
    Role.rep: {"rep_id": "rep-aiko"},
    Role.manager: {"teams": ["inside-sales"]},
}


def seed_store(url: str) -> None:
    engine = create_engine(url)
    with engine.begin() as conn:
        for key, name in (("inside-sales", "Inside Sales"), ("japan", "Japan")):
            conn.execute(insert(Team).values(key=key, name=name, manager_name=None, manager_email=None, updated_at=NOW))
        for rep, team in (("rep-aiko", "inside-sales"), ("rep-ben", "inside-sales"), ("rep-yui", "japan")):
            conn.execute(insert(Rep).values(id=rep, team_key=team, name=rep, email=f"{rep}@example.com", active=True))
        for lead_id, rep, team, email in LEADS:
            conn.execute(
                insert(Lead).values(
                    id=lead_id, email=email, company=f"Co {rep}", stage="sql", score=50, owner_rep_id=rep,
                    owner_team=team, attributes={}, created_at=NOW, updated_at=NOW,
                )
            )  # fmt: skip
            conn.execute(
                insert(FollowUpRow).values(
                    key=f"fu-{lead_id}", lead_id=lead_id, rep_id=rep, team_key=team, kind="first_touch",
                    policy_id="p", status="overdue", started_at=NOW - timedelta(hours=30),
                    due_at=NOW - timedelta(hours=6), updated_at=NOW,
                )
            )  # fmt: skip
    engine.dispose()


@dataclass
class Api:
    client: TestClient
    keys: dict[Role, str]
    key_ids: dict[Role, str]

    def as_role(self, role: Role) -> dict[str, str]:
        return {"X-API-Key": self.keys[role]}


def make_key(client: TestClient, role: Role, name: str | None = None, **extra: Any) -> dict[str, Any]:
    body = {"name": name or f"{role.value} key", "role": role.value, **SCOPES.get(role, {}), **extra}
    answer = client.post("/v1/admin/keys", json=body, headers=ADMIN)
    assert answer.status_code == 201, answer.text
    return answer.json()


def offline_api(data: Path, **overrides: Any) -> Iterator[Api]:
    settings = offline_settings(data, **overrides)
    seed_store(settings.resolved_database_url())
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        created = {role: make_key(client, role) for role in Role}
        yield Api(client, {r: c["key"] for r, c in created.items()}, {r: c["id"] for r, c in created.items()})
