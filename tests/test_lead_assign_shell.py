"""LeadWorkflow's assignment shell with stand-in activities (time-skipping server): the typed assign call, and
the projection that follows every answer so an answer the lead no longer waits for releases its rep."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
import yaml
from temporalio import activity
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.email import EmailJob
from payload_converter import data_converter
from rules.model import (
    AssignmentFailed,
    AssignRep,
    CapacityHeld,
    EventsReceived,
    LeadSnapshot,
    LeadUpserted,
    Rep,
    RepAssigned,
    TrackedEvent,
)
from runtime import workflow_runner
from tests.conftest import venv_binary
from workflows.lead import LeadWorkflow
from workflows.payloads import LeadOptions, LeadStart, PlaybookBundle

PLAYBOOK = yaml.safe_load(
    """\
name: shell
fields: [status]
scoring:
  rules:
    - {id: pricing, when: 'event.type == "page_view" and contains(event.url, "/pricing")', points: 60}
stages:
  rules:
    - {id: to_sql, to: sql, when: 'score >= 60 and lead.status != "nurture_again"'}
    - {id: back_to_nurture, to: recycled, when: 'lead.status == "nurture_again"'}
routing:
  default_team: inside-sales
"""
)
REP = Rep("rep-a", "A", "a@x.test", "inside-sales", "Mia", "mia@x.test")


@pytest.fixture(scope="module")
async def env() -> AsyncIterator[WorkflowEnvironment]:
    environment = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=venv_binary("temporal-test-server"), data_converter=data_converter
    )
    yield environment
    await environment.shutdown()


class StandIns:
    """The store and mail activities under their real names; the assignment answers when the test says so."""

    def __init__(self) -> None:
        self.log: list[tuple[str, object]] = []
        self.commands: list[AssignRep] = []
        self.answer_now = asyncio.Event()

    @activity.defn(name="project_lead")
    async def project_lead(self, snap: LeadSnapshot) -> None:
        self.log.append(("projected", snap.capacity))

    @activity.defn(name="send_email")
    async def send_email(self, job: EmailJob) -> str:
        return "sent"

    @activity.defn(name="assign_rep")
    async def assign_rep(self, command: AssignRep) -> RepAssigned | AssignmentFailed:
        self.commands.append(command)
        await self.answer_now.wait()
        self.log.append(("answered", command.key))
        return RepAssigned(command.key, REP, "round-robin in team inside-sales")


async def eventually(check, seconds: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    for _ in range(int(seconds / 0.05)):
        if check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("never happened")


async def test_an_answer_the_lead_no_longer_waits_for_is_followed_by_a_projection(env: WorkflowEnvironment) -> None:
    stand_ins, queue = StandIns(), f"tq-{uuid.uuid4().hex[:8]}"
    start = LeadStart("lead-shell", PlaybookBundle("shell-1", PLAYBOOK), LeadOptions(0, search_attributes=False))
    async with Worker(
        env.client,
        task_queue=queue,
        workflows=[LeadWorkflow],
        activities=[stand_ins.project_lead, stand_ins.send_email, stand_ins.assign_rep],
        workflow_runner=workflow_runner(),
    ):
        handle = await env.client.start_workflow(
            LeadWorkflow.run, start, id=f"lead-shell-{queue}", task_queue=queue,
            start_signal="upsert", start_signal_args=[LeadUpserted({"email": "shell@example.com"}, origin="form")],
        )  # fmt: skip
        now = datetime.now(UTC)
        await handle.signal(
            LeadWorkflow.events, EventsReceived([TrackedEvent("p1", "page_view", now, "https://x.test/pricing")])
        )
        await eventually(lambda: bool(stand_ins.commands))  # routed at sql: the assignment is in flight
        (command,) = stand_ins.commands
        assert command.lead_id == "lead-shell" and command.team == "inside-sales"

        await handle.signal(LeadWorkflow.upsert, LeadUpserted({"status": "nurture_again"}))
        pending = ("projected", CapacityHeld(None, command.key, asked=1))
        await eventually(lambda: pending in stand_ins.log)
        recycled = ("projected", CapacityHeld(None, None, asked=1))
        await eventually(lambda: recycled in stand_ins.log[stand_ins.log.index(pending) :])

        stand_ins.answer_now.set()  # the store wrote rep-a's assignment; the lead has moved on
        await eventually(lambda: ("answered", command.key) in stand_ins.log)
        await eventually(lambda: bool(stand_ins.log[stand_ins.log.index(("answered", command.key)) + 1 :]))
        after = stand_ins.log[stand_ins.log.index(("answered", command.key)) + 1 :]
        # Projected again, holding nobody's capacity: the store closes rep-a's stale assignment.
        assert after and all(entry == ("projected", CapacityHeld(None, None, asked=1)) for entry in after)
        view = await handle.query(LeadWorkflow.view)
        assert (view.stage, view.owner) == ("recycled", None)


class BrokenStore(StandIns):
    """An assignment that fails on every attempt (its retry budget spent): the first answer, then a rep."""

    def __init__(self) -> None:
        super().__init__()
        self.fail_first = True

    @activity.defn(name="assign_rep")
    async def assign_rep(self, command: AssignRep) -> RepAssigned | AssignmentFailed:
        self.commands.append(command)
        if self.fail_first:
            self.fail_first = False
            raise ApplicationError("the store is gone", non_retryable=True)
        return RepAssigned(command.key, REP, "round-robin in team inside-sales")


async def test_an_assignment_that_never_succeeds_queues_the_lead_and_offers_it_again(env: WorkflowEnvironment) -> None:
    """Before, the assignment retried for ever and the lead waited on it with no end (issue 6 item 1's rule: an
    activity that cannot succeed fails visibly); now the lead waits in its team's queue and is offered again."""
    stand_ins, queue = BrokenStore(), f"tq-{uuid.uuid4().hex[:8]}"
    start = LeadStart("lead-broken", PlaybookBundle("shell-1", PLAYBOOK), LeadOptions(0, search_attributes=False))
    async with Worker(
        env.client,
        task_queue=queue,
        workflows=[LeadWorkflow],
        activities=[stand_ins.project_lead, stand_ins.send_email, stand_ins.assign_rep],
        workflow_runner=workflow_runner(),
    ):
        handle = await env.client.start_workflow(
            LeadWorkflow.run, start, id=f"lead-broken-{queue}", task_queue=queue,
            start_signal="upsert", start_signal_args=[LeadUpserted({"email": "broken@example.com"}, origin="form")],
        )  # fmt: skip
        now = datetime.now(UTC)
        await handle.signal(
            LeadWorkflow.events, EventsReceived([TrackedEvent("p1", "page_view", now, "https://x.test/pricing")])
        )
        await eventually(lambda: len(stand_ins.commands) == 1)
        view = await handle.query(LeadWorkflow.view)
        for _ in range(200):
            if view.queued_team is not None:
                break
            await asyncio.sleep(0.05)
            view = await handle.query(LeadWorkflow.view)
        assert (view.stage, view.owner, view.queued_team) == ("sql", None, "inside-sales")
        # The team's retry timer offers it again (time skips): this time the store answers.
        await env.sleep(3600)
        await eventually(lambda: len(stand_ins.commands) == 2)
        for _ in range(200):
            view = await handle.query(LeadWorkflow.view)
            if view.owner is not None:
                break
            await asyncio.sleep(0.05)
        assert view.owner is not None and view.owner.rep.id == "rep-a"
