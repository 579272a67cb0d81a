"""The demo teams ``make run`` seeds into a store that has none (devstack/demo_team.yaml)."""

from __future__ import annotations

from pathlib import Path

import yaml

from store.db import make_engine, make_sessionmaker
from store.repo import RepIn, TeamIn, count_teams, upsert_team

DEMO_TEAMS = Path(__file__).with_name("demo_team.yaml")


def load_demo_teams(path: Path = DEMO_TEAMS) -> list[TeamIn]:
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    return [TeamIn(**{**team, "reps": [RepIn(**rep) for rep in team.get("reps", [])]}) for team in document["teams"]]


async def seed_demo_teams(database_url: str, teams: list[TeamIn]) -> list[str]:
    """Demo teams for a store without any team; a store that has teams is the user's and left alone."""
    engine = make_engine(database_url)
    try:
        async with make_sessionmaker(engine)() as session:
            if await count_teams(session):
                return []
            for team in teams:
                await upsert_team(session, team)  # commits
    finally:
        await engine.dispose()
    return [team.key for team in teams]
