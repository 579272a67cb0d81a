"""The acceptance SLA on Temporal's time-skipping test server: a rep who neither accepts nor rejects is
reminded, their manager is told at the deadline, and the lead goes to another rep of the team, who gets a
fresh offer (and links) of their own. Hours pass in seconds; real SMTP and store."""

from __future__ import annotations

import uuid
from datetime import timedelta
from pathlib import Path

import yaml
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.testing import WorkflowEnvironment

from runtime import build_worker, with_lead_codec
from settings import ROOT, Settings
from store import repo
from tests.conftest import Inbox
from tests.test_lead_workflow import env, start_sql_lead, wait_view  # noqa: F401  (fixture)

SALES = {"acceptance": {"within": "4h", "remind_before": "1h", "reroute_after": "2h", "max_reroutes": 1}}


def sla_playbook(path: Path) -> Path:
    doc = yaml.safe_load((ROOT / "playbooks" / "default.yaml").read_text(encoding="utf-8"))
    doc["sales"] = {**doc.get("sales", {}), **SALES}
    path.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    return path


async def test_an_unanswered_assignment_is_reminded_escalated_then_rerouted(
    env: WorkflowEnvironment,  # noqa: F811
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    smtp: tuple[Inbox, int],
    tmp_path: Path,
) -> None:
    inbox, _ = smtp
    settings = settings.model_copy(
        update={"task_queue": f"tq-{uuid.uuid4().hex[:8]}", "playbook_path": sla_playbook(tmp_path / "pb.yaml")}
    )
    client = with_lead_codec(env.client, settings, sessions)
    async with build_worker(client, settings, sessions):
        handle = await start_sql_lead(client, settings, "noa@example.com")
        view = await wait_view(handle, lambda v: v.owner is not None)
        first = view.owner.rep
        assert view.acceptance is not None and view.acceptance.status == "pending"
        assert view.acceptance.due_at - view.acceptance.offered_at == timedelta(hours=4)
        notice = (await inbox.wait_for(lambda m: m["X-Leadflow-Kind"] == "rep_new_lead"))[0]
        assert "/sal/lead-" in notice.get_body(("plain",)).get_content()

        await env.sleep(timedelta(hours=3, minutes=1))
        reminder = await inbox.wait_for(lambda m: m["X-Leadflow-Kind"] == "sal_reminder")
        assert (
            first.email in reminder[0]["X-Envelope-To"]
            and "/sal/lead-" in reminder[0].get_body(("plain",)).get_content()
        )

        await env.sleep(timedelta(hours=1))
        escalation = await inbox.wait_for(lambda m: m["X-Leadflow-Kind"] == "sal_escalation")
        assert "mina.manager@example.com" in escalation[0]["X-Envelope-To"]
        assert "/sal/" not in escalation[0].get_body(("plain",)).get_content()  # no links signed for the rep
        view = await wait_view(handle, lambda v: v.acceptance is not None and v.acceptance.escalated_at is not None)
        assert view.owner is not None and view.owner.rep.id == first.id  # still theirs until the reroute

        await env.sleep(timedelta(hours=2))
        view = await wait_view(handle, lambda v: v.owner is not None and v.owner.rep.id != first.id)
        assert view.owner.rep.team == "inside-sales" and view.acceptance.status == "pending"
        assert view.acceptance.rep_id == view.owner.rep.id
        second = view.owner.rep
        await inbox.wait_for(lambda m: m["X-Leadflow-Kind"] == "rep_new_lead" and second.email in m["X-Envelope-To"])

        # The store shows the new offer for the queue's "awaiting acceptance" list.
        for _ in range(200):
            async with sessions() as session:
                row = await repo.get_lead(session, handle.id)
            if row and row["owner_rep_id"] == second.id and row["acceptance_status"] == "pending":
                break
            await env.sleep(timedelta(seconds=1))
        assert row is not None and (row["owner_rep_id"], row["acceptance_status"]) == (second.id, "pending")
        assert row["acceptance_due_at"] is not None
