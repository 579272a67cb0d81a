"""A follow-up the lead no longer owes leaves the read model's lists (issue 9 item 3): recycled, disqualified or
reassigned, the real engine ends it as cancelled, and the store (SQLite, and PostgreSQL when
LEADFLOW_TEST_POSTGRES_URL is set) takes it off the overdue list (GET /v1/followups), the managers' digest, the
queue page and the SLA breaches; a follow-up replaced by a reassignment, or dropped by a worker before this
change, is cancelled by the lead's next projection."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from activities.email import Mailer
from activities.erasure import erase_person
from activities.rendering import EmailRenderer
from jobs.digest import send_overdue_digests
from rules import decide, load_playbook_text, snapshot
from rules.model import (
    EventsReceived,
    Input,
    LeadState,
    LeadUpserted,
    Rep,
    RepAssigned,
    TimerFired,
    TouchLogged,
    TrackedEvent,
)
from rules.report_facts import Period
from rules.report_kpis import sla_report
from settings import Settings
from store import pages, repo, reports_facts
from store.lead_aliases import release_merged
from tests.conftest import Inbox
from tests.lifecycle_fixtures import lifecycle_playbook

pytestmark = pytest.mark.parametrize("database_url", ["sqlite", "postgres"], indirect=True)
Sessions = async_sessionmaker[AsyncSession]
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
PB = load_playbook_text(lifecycle_playbook("every_time"), version="lc")
MARCH = Period(datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 4, 1, tzinfo=UTC), "2026-03")
AIKO = Rep("rep-aiko", "Aiko Sato", "aiko@example.com", "inside-sales", "Mina Manager", "mina.manager@example.com")
BEN = Rep("rep-ben", "Ben Carter", "ben@example.com", "inside-sales", "Mina Manager", "mina.manager@example.com")


class Lead:
    """The workflow's part by hand: decide, answer the assignment with the rep given, project the state."""

    def __init__(self, sessions: Sessions, name: str) -> None:
        self.sessions, self.state = sessions, LeadState(lead_id=f"lead-{name}")

    async def send(self, inp: Input, at: datetime, rep: Rep = AIKO) -> None:
        decide(self.state, inp, at, PB)
        if self.state.pending_assignment and isinstance(inp, EventsReceived | TimerFired):
            decide(self.state, RepAssigned(self.state.pending_assignment, rep, "test"), at, PB)
        async with self.sessions() as session:
            await repo.project_lead(session, snapshot(self.state, pb=PB))

    async def overdue(self, name: str) -> None:
        await self.send(LeadUpserted({"email": f"{name}@example.com", "company": name.title()}), T0)
        await self.send(EventsReceived([TrackedEvent(f"{name}-p", "page_view", T0, "https://x.test/pricing")]), T0)
        await self.send(TimerFired("sla_due"), self.state.timers["sla_due"])
        assert self.state.followup is not None and self.state.followup.status == "overdue"


async def overdue_list(sessions: Sessions, now: datetime) -> list[tuple[str, str]]:
    async with sessions() as session:
        rows = await repo.list_followups(session, status="overdue", limit=50, offset=0, now=now)
    return sorted((row["lead_id"], row["key"]) for row in rows)


async def read_model(sessions: Sessions, now: datetime) -> dict[str, Any]:
    async with sessions() as session:
        everything = await repo.list_followups(session, status=None, limit=50, offset=0, now=now)
        queue = await pages.queue(session, pages.QueueFilter(), now=now, due_within=timedelta(days=1))
        counts = await pages.queue_counts(session, pages.QueueFilter(), now=now, due_within=timedelta(days=1))
        facts = await reports_facts.followup_facts(session, MARCH.start, MARCH.end)
    total = next(row for row in sla_report(facts, MARCH, now) if row["team"] == "(total)")
    return {
        "statuses": {row["key"]: (row["status"], row["overdue_by_seconds"]) for row in everything},
        "queue": [row["key"] for row in queue],
        "counts": counts,
        "sla": {k: total[k] for k in ("followups", "met_on_time", "breached", "open", "cancelled")},
    }


async def test_a_recycled_leads_overdue_follow_up_leaves_every_list(
    settings: Settings, sessions: Sessions, smtp: tuple[Inbox, int]
) -> None:
    inbox, _ = smtp
    kept, recycled = Lead(sessions, "kept"), Lead(sessions, "gone")
    await kept.overdue("kept")
    await recycled.overdue("gone")
    now = T0 + timedelta(days=2)
    assert await overdue_list(sessions, now) == [
        ("lead-gone", "lead-gone:followup:1"),
        ("lead-kept", "lead-kept:followup:1"),
    ]

    # 30 days in SQL: recycled, back to marketing without an owner.
    await recycled.send(TimerFired("recycle"), recycled.state.timers["recycle"])
    assert (recycled.state.stage, recycled.state.owner) == ("recycled", None)
    now = recycled.state.timers["journey:recycled_nurture"]
    assert await overdue_list(sessions, now) == [("lead-kept", "lead-kept:followup:1")]
    model = await read_model(sessions, now)
    assert model["statuses"]["lead-gone:followup:1"] == ("cancelled", 0)
    assert model["queue"] == ["lead-kept:followup:1"]
    assert [(c["rep_id"], c["overdue"]) for c in model["counts"]] == [("rep-aiko", 1)]
    # Both went overdue before one was cancelled: the KPI keeps both as breaches (the rep missed it), none open.
    assert model["sla"] == {"followups": 2, "met_on_time": 0, "breached": 2, "open": 0, "cancelled": 0}
    async with sessions() as session:
        lead = await repo.get_lead(session, "lead-gone")
        cancelled = await repo.list_followups(session, status="cancelled", limit=5, offset=0, now=now)
    assert lead is not None and (lead["sla_status"], lead["owner_rep_id"]) == ("cancelled", None)
    assert [row["key"] for row in cancelled] == ["lead-gone:followup:1"]

    # The managers' digest lists only the follow-up still owed.
    mailer = Mailer(settings, sessions, EmailRenderer(settings.templates_dir))
    assert (await send_overdue_digests(mailer, now))["inside-sales"] == "sent"
    (digest,) = await inbox.wait_for(lambda m: m["X-Leadflow-Kind"] == "manager_digest")
    body = digest.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "Kept" in body and "Gone" not in body


async def test_a_disqualified_leads_follow_up_is_cancelled(sessions: Sessions) -> None:
    lead = Lead(sessions, "rival")
    await lead.send(LeadUpserted({"email": "rival@example.com"}), T0)
    await lead.send(EventsReceived([TrackedEvent("r-p", "page_view", T0, "https://x.test/pricing")]), T0)
    assert lead.state.followup is not None and lead.state.followup.status == "pending"
    await lead.send(LeadUpserted({"company": "Rival Inc"}), T0 + timedelta(hours=1))
    assert lead.state.stage == "disqualified"
    model = await read_model(sessions, T0 + timedelta(days=3))  # long past its due time
    assert model["statuses"] == {"lead-rival:followup:1": ("cancelled", 0)}
    # Cancelled before its due time: no breach, even read long after it.
    assert model["queue"] == [] and (model["sla"]["breached"], model["sla"]["cancelled"]) == (0, 1)


async def test_a_reassignment_cancels_the_follow_up_it_replaced(sessions: Sessions) -> None:
    lead = Lead(sessions, "moved")
    await lead.overdue("moved")
    # 24 h after the breach the lead goes to the next rep with a fresh follow-up.
    await lead.send(TimerFired("sla_reassign"), lead.state.timers["sla_reassign"], rep=BEN)
    assert lead.state.owner is not None and lead.state.owner.rep.id == "rep-ben"
    now = lead.state.timers["sla_due"] - timedelta(hours=1)
    model = await read_model(sessions, now)
    assert model["statuses"] == {
        "lead-moved:followup:1": ("cancelled", 0),
        "lead-moved:followup:2": ("pending", 0),
    }
    assert await overdue_list(sessions, now) == []


async def test_a_late_projection_of_the_replaced_follow_up_lands_cancelled(sessions: Sessions) -> None:
    """A projection retried after a crash can land after the newer one (the crash test saw it): the follow-up it
    carries did not exist when the newer projection cancelled the lead's others, and must not stay overdue."""
    lead = Lead(sessions, "late")
    # Decided, not yet projected: every projection up to the breach is still in flight.
    decide(lead.state, LeadUpserted({"email": "late@example.com", "company": "Late"}), T0, PB)
    decide(lead.state, EventsReceived([TrackedEvent("late-p", "page_view", T0, "https://x.test/pricing")]), T0, PB)
    assert lead.state.pending_assignment is not None
    decide(lead.state, RepAssigned(lead.state.pending_assignment, AIKO, "test"), T0, PB)
    decide(lead.state, TimerFired("sla_due"), lead.state.timers["sla_due"], PB)
    stale = snapshot(lead.state, pb=PB)  # followup:1 overdue: this projection is the one that gets delayed
    assert stale.followup is not None and stale.followup.status == "overdue"
    stale.followup = replace(stale.followup)  # as the activity's payload: a copy, not the state's object
    await lead.send(TimerFired("sla_reassign"), lead.state.timers["sla_reassign"], rep=BEN)
    async with sessions() as session:
        await repo.project_lead(session, stale)  # lands last, older than what the store has
    model = await read_model(sessions, lead.state.timers["sla_due"] - timedelta(hours=1))
    assert model["statuses"] == {"lead-late:followup:1": ("cancelled", 0), "lead-late:followup:2": ("pending", 0)}
    # It went overdue and was escalated before it was replaced: a breach in the KPI, and nothing else open.
    assert (model["sla"]["breached"], model["sla"]["open"]) == (1, 1)


async def test_a_late_projection_still_records_the_escalation_it_saw(sessions: Sessions) -> None:
    """The replaced follow-up's row exists (pending) and the newer projection cancelled it; the delayed projection
    of its breach cannot move it back, but its escalation happened: the KPI counts the breach."""
    lead = Lead(sessions, "seen")
    await lead.send(LeadUpserted({"email": "seen@example.com", "company": "Seen"}), T0)
    await lead.send(EventsReceived([TrackedEvent("seen-p", "page_view", T0, "https://x.test/pricing")]), T0)
    decide(lead.state, TimerFired("sla_due"), lead.state.timers["sla_due"], PB)
    stale = snapshot(lead.state, pb=PB)
    assert stale.followup is not None
    stale.followup = replace(stale.followup)
    await lead.send(TimerFired("sla_reassign"), lead.state.timers["sla_reassign"], rep=BEN)
    async with sessions() as session:
        await repo.project_lead(session, stale)
    model = await read_model(sessions, lead.state.timers["sla_due"] - timedelta(hours=1))
    assert model["statuses"]["lead-seen:followup:1"] == ("cancelled", 0)
    assert (model["sla"]["breached"], model["sla"]["cancelled"]) == (1, 0)


async def test_a_follow_up_an_older_worker_dropped_is_cancelled_by_the_next_projection(sessions: Sessions) -> None:
    """Workers before this change set the follow-up to None on recycling: the row stayed pending for ever."""
    lead = Lead(sessions, "legacy")
    lead.state.legacy_followups = True
    await lead.send(LeadUpserted({"email": "legacy@example.com"}), T0)
    await lead.send(EventsReceived([TrackedEvent("l-p", "page_view", T0, "https://x.test/pricing")]), T0)
    lead.state.timers.pop("sla_due")
    await lead.send(TimerFired("recycle"), lead.state.timers["recycle"])
    assert lead.state.followup is None
    assert (await read_model(sessions, T0 + timedelta(days=31)))["statuses"] == {
        "lead-legacy:followup:1": ("cancelled", 0)
    }


async def test_a_merge_cancels_only_open_follow_ups(sessions: Sessions) -> None:
    """One definition of open (rules/followups.py): a breach answered late stays on record through a merge."""
    late, waiting = Lead(sessions, "late"), Lead(sessions, "waiting")
    await late.overdue("late")
    await waiting.overdue("waiting")
    await late.send(TouchLogged("t", "call", T0 + timedelta(days=2)), T0 + timedelta(days=2))
    async with sessions() as session:
        for lead in (late, waiting):
            await release_merged(
                session, duplicate_id=lead.state.lead_id, survivor_id="lead-x", now=T0 + timedelta(days=3)
            )
    statuses = (await read_model(sessions, T0 + timedelta(days=3)))["statuses"]
    assert statuses["lead-late:followup:1"][0] == "overdue" and statuses["lead-waiting:followup:1"][0] == "cancelled"


async def test_an_erased_leads_open_follow_up_is_cancelled(sessions: Sessions) -> None:
    lead = Lead(sessions, "erased")
    await lead.overdue("erased")
    outcome = await erase_person(sessions, None, lead.state.lead_id, "erased@example.com", "k")
    assert (outcome.assignments_closed, outcome.followups_cancelled) == (0, 1)  # no assignment row: none asked here
    assert await overdue_list(sessions, T0 + timedelta(days=2)) == []
    again = await erase_person(sessions, None, lead.state.lead_id, None, "k")
    assert again.followups_cancelled == 0
