"""The managers' digest: each team manager gets one email a day listing the team's overdue follow-ups.

Every API replica runs the scheduler, so the job claims ``digest:<team>:<day>`` in the email ledger first:
only the claimant sends, and a second run the same day sends nothing.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from datetime import date, datetime
from typing import Any

from activities.email import Mailer
from rules.model import SendEmail
from store import repo

log = logging.getLogger("leadflow.jobs.digest")
MAX_ITEMS = 500


async def send_overdue_digests(mailer: Mailer, now: datetime, day: date | None = None) -> dict[str, str]:
    """Send the digest of ``day`` (default: ``now``'s date, UTC) to every team manager with overdue
    follow-ups, once per team and day whatever the replicas; returns team -> outcome."""
    day = day or now.date()
    async with mailer.sessions() as session:
        overdue = await repo.list_followups(
            session, status="overdue", limit=MAX_ITEMS, offset=0, now=now, owed_only=True
        )
        teams = {t["key"]: t for t in await repo.list_teams(session)}
    by_team: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for item in overdue:
        by_team[item["team_key"]].append(item)
    outcomes: dict[str, str] = {}
    for team_key, items in sorted(by_team.items()):
        team = teams.get(team_key)
        if not team or not team.get("manager_email"):
            outcomes[team_key] = "no manager email"
            continue
        key = f"digest:{team_key}:{day.isoformat()}"
        async with mailer.sessions() as session:
            claimed = await repo.claim_email(
                session,
                key=key,
                kind="manager_digest",
                template="manager_digest",
                to_addr=team["manager_email"],
                now=now,
            )
        if not claimed:
            outcomes[team_key] = "already sent or claimed"
            continue
        context = {
            "team": {"key": team_key, "name": team["name"]},
            "manager_name": team.get("manager_name"),
            "day": day.isoformat(),
            "items": items,
        }
        try:
            outcomes[team_key] = await mailer.send(
                SendEmail(
                    key, "manager_digest", "manager_digest", team["manager_email"], context, team.get("manager_name")
                )
            )
        except Exception as exc:  # one team's failure must not stop the others' digests
            log.warning("digest for team %s failed: %s", team_key, exc)
            outcomes[team_key] = f"failed: {exc}"
    return outcomes
