"""The email policy in LeadWorkflow on the time-skipping server: quiet hours and a daily cap defer nurture to
the next allowed moment by the lead's own timer, and the mail then really reaches an SMTP server."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from pathlib import Path

import yaml
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from api.lead_ids import lead_id_for
from rules.model import ConsentRecord, ConsentRecorded, LeadUpserted
from runtime import build_worker, load_active_playbook, with_lead_codec
from settings import ROOT, Settings
from tests.conftest import Inbox
from tests.test_lead_workflow import env, wait_view  # noqa: F401  (env: the shared time-skipping server)
from workflows.lead import LeadWorkflow
from workflows.payloads import LeadOptions, LeadStart

LEAD = "nora@example.com"


def quiet_now_playbook(path: Path, now: datetime) -> tuple[Path, datetime]:
    """The default playbook with quiet hours from an hour ago until two hours from now (UTC, the lead has
    no zone or country) and at most one nurture email a day; the journey sends its two emails back to back."""
    quiet_end = (now + timedelta(hours=2)).replace(second=0, microsecond=0)
    doc = yaml.safe_load((ROOT / "playbooks" / "default.yaml").read_text(encoding="utf-8"))
    doc["email"] = {
        "quiet_hours": {"start": f"{now - timedelta(hours=1):%H:%M}", "end": f"{quiet_end:%H:%M}"},
        "max_per_day": 1,
    }
    doc["journeys"][0]["steps"] = [
        {"id": "welcome", "type": "send_email", "template": "welcome"},
        {"id": "case_study", "type": "send_email", "template": "case_study"},
    ]
    path.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    return path, quiet_end


@asynccontextmanager
async def running_lead(
    env: WorkflowEnvironment,  # noqa: F811
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
) -> AsyncIterator[WorkflowHandle]:
    """A new lead; terminated afterwards, since the shared test server stops skipping time for workflows
    whose timers fire with no worker left to run them."""
    handle = await start_lead(env, settings, sessions)
    try:
        yield handle
    finally:
        await handle.terminate()


async def start_lead(
    env: WorkflowEnvironment,  # noqa: F811
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
) -> WorkflowHandle:
    playbook = load_active_playbook(settings)
    lead_id = lead_id_for(LEAD, settings.secret("id_key"))
    start = LeadStart(lead_id, playbook.bundle, LeadOptions(projection_delay_seconds=1, search_attributes=False))
    # Lead payloads are sealed per lead: the handle's client needs the codec (privacy/codec.py).
    return await with_lead_codec(env.client, settings, sessions).start_workflow(
        LeadWorkflow.run,
        start,
        id=lead_id,
        task_queue=settings.task_queue,
        start_signal="upsert",
        start_signal_args=[LeadUpserted({"email": LEAD, "first_name": "Nora", "company": "Nora Labs"})],
    )


async def test_quiet_hours_and_a_daily_cap_defer_nurture_to_the_next_allowed_moment(
    env: WorkflowEnvironment,  # noqa: F811
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    smtp: tuple[Inbox, int],
    tmp_path: Path,
) -> None:
    inbox, _ = smtp
    path, quiet_end = quiet_now_playbook(tmp_path / "playbook.yaml", await env.get_current_time())
    settings = settings.model_copy(update={"task_queue": f"tq-{uuid.uuid4().hex[:8]}", "playbook_path": path})
    async with build_worker(env.client, settings, sessions), running_lead(env, settings, sessions) as handle:
        # Quiet hours: the welcome waits for them to end, on the journey's own timer; the live view says why.
        view = await wait_view(handle, lambda v: v.nurture_holds)
        hold = view.nurture_holds[0]
        assert (hold.action, hold.template, hold.until) == ("deferred", "welcome", quiet_end)
        assert "outside the send window" in hold.reason
        assert view.timers["journey:welcome_nurture"] == quiet_end
        await env.sleep(quiet_end - await env.get_current_time() - timedelta(minutes=1))
        assert inbox.to(LEAD) == []

        # Quiet hours end: the welcome goes out; the case study right behind it hits the cap of one a day.
        await env.sleep(timedelta(minutes=2))
        welcome = await inbox.wait_for(lambda m: "Thanks for your interest, Nora" in m["Subject"])
        assert welcome[0]["X-Leadflow-Kind"] == "nurture"
        view = await wait_view(handle, lambda v: len(v.nurture_holds) == 2)
        capped = view.nurture_holds[1]
        assert (capped.action, capped.template) == ("deferred", "case_study")
        assert "daily cap of 1" in capped.reason
        assert capped.until is not None and timedelta(hours=24) <= capped.until - quiet_end < timedelta(
            hours=24, minutes=1
        )
        await env.sleep(capped.until - await env.get_current_time() - timedelta(minutes=1))
        assert len(inbox.to(LEAD)) == 1

        # A day after the welcome, the case study is sent: deferred, never dropped.
        await env.sleep(timedelta(minutes=2))
        await inbox.wait_for(lambda m: "doubled qualified pipeline" in m["Subject"])
        view = await wait_view(handle, lambda v: v.journeys[0].status == "completed")
        assert len(inbox.to(LEAD)) == 2


async def test_an_opt_out_stops_the_send_of_a_journey_already_waiting(
    env: WorkflowEnvironment,  # noqa: F811
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    smtp: tuple[Inbox, int],
) -> None:
    inbox, _ = smtp
    settings = settings.model_copy(update={"task_queue": f"tq-{uuid.uuid4().hex[:8]}"})  # the default playbook
    # US-style: the welcome goes out without recorded consent.
    async with build_worker(env.client, settings, sessions), running_lead(env, settings, sessions) as handle:
        await inbox.wait_for(lambda m: "Thanks for your interest, Nora" in m["Subject"])
        view = await wait_view(handle, lambda v: "journey:welcome_nurture" in v.timers)  # 3 days to the case study

        # The lead unsubscribes (a signal: nobody waits on the answer) while the journey waits.
        now = await env.get_current_time()
        await handle.signal(LeadWorkflow.consent, ConsentRecorded(ConsentRecord("opted_out", "unsubscribe_link", now)))
        view = await wait_view(handle, lambda v: v.consent == "opted_out")
        assert view.consents[0].source == "unsubscribe_link"
        await env.sleep(timedelta(days=3, minutes=1))

        view = await wait_view(handle, lambda v: v.nurture_holds)
        hold = view.nurture_holds[0]
        assert (hold.action, hold.template) == ("skipped", "case_study") and "unsubscribe_link" in hold.reason
        assert len(inbox.to(LEAD)) == 1
