"""A projection that lands late (retried after a worker died, or slower than the activity after it) must not
close an assignment made after its snapshot was taken. Found by the crash test: a lead kept its new owner
in the workflow while the store had no open assignment for it, so the rep's capacity looked free.

Same real engine and store (SQLite, PostgreSQL with LEADFLOW_TEST_POSTGRES_URL) as test_capacity_release.py.
"""

from __future__ import annotations

from datetime import timedelta

from rules import snapshot
from rules.model import AssignRep
from store import assignments, repo
from tests.test_capacity_release import PLAYBOOK, T0, Lead, Sessions, db_url, sm  # noqa: F401  (fixtures)


async def test_a_late_projection_leaves_a_newer_assignment_open(sm: Sessions) -> None:  # noqa: F811
    team = repo.TeamIn("inside-sales", "Inside sales", "Mia", "mia@x.test",
                       [repo.RepIn("rep-a", "A", "a@x.test"), repo.RepIn("rep-b", "B", "b@x.test")])  # fmt: skip
    async with sm() as session:
        await repo.upsert_team(session, team, now=T0)
    lead = Lead(sm, "late")
    await lead.to_sql(T0)
    assert lead.owner == "rep-a"
    # A projection of the lead as it is now starts, and its attempt is lost with the worker...
    in_flight = snapshot(lead.state, pb=PLAYBOOK)
    # ...while the lead is reassigned: the store records assignment 2 before the workflow hears the answer.
    later = T0 + timedelta(minutes=5)
    lead_id = lead.state.lead_id
    reassign = AssignRep(lead_id, f"{lead_id}:assign:2", "inside-sales", "round_robin", "SLA missed", ["rep-a"])
    async with sm() as session:
        answer = await assignments.assign_rep(session, reassign, later)
    assert answer.rep.id == "rep-b"  # type: ignore[union-attr]  # an answer, not a failure: asserted here

    await lead.project(in_flight)  # the retry lands now; nothing newer is stored, so it is current
    async with sm() as session:
        open_rows = await assignments.list_assignments(session, lead_id=lead_id, open_only=True)
    assert [row["key"] for row in open_rows] == [reassign.key], "the late projection closed the newer assignment"
