"""privacy/: the lead payload codec, data keys wrapped by the master key, shredding, suppression, anonymising.

Real store (SQLite; PostgreSQL too where LEADFLOW_TEST_POSTGRES_URL is set), real AES-GCM.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography.exceptions import InvalidTag
from sqlalchemy import event, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.api.common.v1 import Payload
from temporalio.client import WorkflowHistory
from temporalio.converter import ActivitySerializationContext, WorkflowSerializationContext
from temporalio.exceptions import ApplicationError
from temporalio.worker import Replayer

from activities.erasure import erase_person
from activities.suppression import refuse_if_suppressed
from cli.keys import rewrap_all
from payload_converter import data_converter
from privacy.codec import ENCODING, LeadPayloadCodec, lead_data_converter
from privacy.keys import DataKey, KeyRing, KeyUnavailable, LeadErased, MasterKeys
from rules.model import FollowUp, LeadSnapshot, ScoreChange, StageChange, TrackedEvent
from runtime import workflow_runner
from store import privacy, repo
from store.models import Base
from workflows.lead import LeadWorkflow
from workflows.playbook_migration import PlaybookMigrationWorkflow
from workflows.visitor import VisitorWorkflow

LEAD = "lead-" + "a" * 32
OTHER = "lead-" + "b" * 32
EMAIL, NAME, COMPANY = "ann.lee@example.com", "Annabelle", "Acmecorp"
Sessions = async_sessionmaker[AsyncSession]
pytestmark = pytest.mark.parametrize("database_url", ["sqlite", "postgres"], indirect=True)


def ring(sessions: Sessions, master: str = "master-1", previous: list[str] | None = None) -> KeyRing:
    return KeyRing(sessions, MasterKeys(master, previous))


def workflow_context(workflow_id: str) -> WorkflowSerializationContext:
    return WorkflowSerializationContext(namespace="default", workflow_id=workflow_id)


def activity_context(workflow_id: str) -> ActivitySerializationContext:
    return ActivitySerializationContext(
        namespace="default",
        activity_id="1",
        activity_type="send_email",
        activity_task_queue="q",
        workflow_id=workflow_id,
        workflow_type="LeadWorkflow",
        is_local=False,
    )


def personal_payload() -> Payload:
    return data_converter.payload_converter.to_payload({"email": EMAIL, "name": NAME, "company": COMPANY})


async def test_lead_payloads_are_sealed_and_open_again(sessions: Sessions) -> None:
    codec = LeadPayloadCodec(ring(sessions)).with_context(workflow_context(LEAD))
    plain = personal_payload()
    [sealed] = await codec.encode([plain])
    assert sealed.metadata["encoding"] == ENCODING and sealed.metadata["leadflow-lead"] == LEAD.encode()
    raw = sealed.SerializeToString()
    assert all(secret.encode() not in raw for secret in (EMAIL, NAME, COMPANY))
    # Another process (fresh cache) with the same master key opens it, without any context.
    assert await LeadPayloadCodec(ring(sessions)).decode([sealed]) == [plain]
    # Activity payloads of a lead workflow use the same key.
    [from_activity] = await LeadPayloadCodec(ring(sessions)).with_context(activity_context(LEAD)).encode([plain])
    assert from_activity.metadata["leadflow-key"] == sealed.metadata["leadflow-key"]


async def test_other_payloads_pass_through(sessions: Sessions) -> None:
    codec = LeadPayloadCodec(ring(sessions))
    plain = personal_payload()
    assert await codec.encode([plain]) == [plain]  # no context
    assert await codec.with_context(workflow_context("digest-2026-01-05")).encode([plain]) == [plain]
    assert await codec.with_context(activity_context("not-a-lead")).encode([plain]) == [plain]
    # Histories recorded before encryption decode unchanged.
    assert await codec.with_context(workflow_context(LEAD)).decode([plain]) == [plain]


async def test_a_payload_moved_to_another_lead_or_altered_does_not_open(sessions: Sessions) -> None:
    keys = ring(sessions)
    [sealed] = await LeadPayloadCodec(keys).with_context(workflow_context(LEAD)).encode([personal_payload()])
    await LeadPayloadCodec(keys).with_context(workflow_context(OTHER)).encode([personal_payload()])
    moved = Payload()
    moved.CopyFrom(sealed)
    moved.metadata["leadflow-lead"] = OTHER.encode()
    with pytest.raises(KeyUnavailable):
        await LeadPayloadCodec(keys).decode([moved])
    altered = Payload()
    altered.CopyFrom(sealed)
    altered.data = sealed.data[:-1] + bytes([sealed.data[-1] ^ 1])
    with pytest.raises(InvalidTag):
        await LeadPayloadCodec(keys).decode([altered])


async def test_a_wrong_master_key_cannot_unwrap(sessions: Sessions) -> None:
    [sealed] = await LeadPayloadCodec(ring(sessions)).with_context(workflow_context(LEAD)).encode([personal_payload()])
    with pytest.raises(KeyUnavailable, match="LEADFLOW_MASTER_KEY_PREVIOUS"):
        await LeadPayloadCodec(ring(sessions, master="someone-else")).decode([sealed])


async def test_destroying_the_key_shreds_every_payload(sessions: Sessions) -> None:
    keys = ring(sessions)
    codec = LeadPayloadCodec(keys).with_context(workflow_context(LEAD))
    [sealed] = await codec.encode([personal_payload()])
    async with sessions() as session:
        assert await privacy.destroy_lead_key(session, LEAD, datetime.now(UTC))
        stored = await privacy.get_lead_key(session, LEAD)
    assert stored is not None and stored.wrapped_key is None
    keys.forget(LEAD)
    for fresh in (keys, ring(sessions)):
        with pytest.raises(LeadErased):
            await LeadPayloadCodec(fresh).decode([sealed])
        # Nothing new can be sealed for the lead either (a new post for the person is refused).
        with pytest.raises(LeadErased):
            await LeadPayloadCodec(fresh).with_context(workflow_context(LEAD)).encode([personal_payload()])
    # A lead erased before it ever had a key is refused too.
    async with sessions() as session:
        assert not await privacy.destroy_lead_key(session, OTHER, datetime.now(UTC))
    with pytest.raises(LeadErased):
        await LeadPayloadCodec(ring(sessions)).with_context(workflow_context(OTHER)).encode([personal_payload()])


async def test_cache_is_bounded_and_one_store_trip_per_lead(sessions: Sessions) -> None:
    keys = KeyRing(sessions, MasterKeys("master-1"), max_cached=2)
    codecs = [LeadPayloadCodec(keys).with_context(workflow_context(f"lead-{i:032x}")) for i in range(3)]
    for codec in codecs:
        await codec.encode([personal_payload()])
    assert keys.misses == 3 and len(keys._cache) == 2
    for _ in range(5):
        await codecs[2].encode([personal_payload()])
    assert keys.misses == 3


async def test_leads_missing_at_once_share_one_store_transaction(sessions: Sessions) -> None:
    """A burst of new leads (16 requests at a time at the API) took one transaction each, each waiting for
    SQLite's one write lock; now the misses of one moment share a query and a transaction."""
    opened = 0

    def counting() -> AsyncSession:
        nonlocal opened
        opened += 1
        return sessions()

    keys = KeyRing(counting, MasterKeys("master-1"))  # type: ignore[arg-type]
    leads = [f"lead-{i:032x}" for i in range(20)]
    sealed = await asyncio.gather(
        *(LeadPayloadCodec(keys).with_context(workflow_context(lead)).encode([personal_payload()]) for lead in leads)
    )
    assert opened == 1 and keys.misses == 20
    # Each lead has its own key, and a fresh process (reads only, also batched) opens every payload.
    async with sessions() as session:
        stored = await privacy.get_lead_keys(session, leads)
    assert len({k.key_id for k in stored.values()}) == 20
    reader = KeyRing(sessions, MasterKeys("master-1"))
    opened_back = await asyncio.gather(*(LeadPayloadCodec(reader).decode(payloads) for payloads in sealed))
    assert all(p[0] == personal_payload() for p in opened_back) and reader.misses == 20


def counted_statements(sessions: Sessions) -> list[str]:
    """The SQL statements the store runs from now on (to count round trips on a create's path)."""
    statements: list[str] = []
    engine = sessions.kw["bind"].sync_engine
    event.listen(engine, "before_cursor_execute", lambda *args: statements.append(args[2].split()[0]))
    return statements


async def test_a_new_leads_key_is_made_with_one_round_trip_fewer(sessions: Sessions) -> None:
    """Creating a lead waited for its key: look, insert, look again (three statements, on SQLite and
    PostgreSQL alike). A lead about to be started is most likely new: insert first, then read what won."""
    keys = ring(sessions)
    statements = counted_statements(sessions)
    await keys.for_encoding(LEAD)
    assert statements == ["SELECT", "INSERT", "SELECT"]
    statements.clear()
    key = await keys.for_new_lead(OTHER)
    assert statements == ["INSERT", "SELECT"]
    # The key is the one the codec then seals with: no further store trip when the lead is started.
    codec = LeadPayloadCodec(keys).with_context(workflow_context(OTHER))
    [sealed] = await codec.encode([personal_payload()])
    assert sealed.metadata["leadflow-key"] == key.key_id.encode() and keys.misses == 2
    assert (await LeadPayloadCodec(ring(sessions)).decode([sealed]))[0] == personal_payload()


async def test_a_new_leads_key_keeps_the_stored_one_and_erasure(sessions: Sessions) -> None:
    """Inserting first never replaces a key: a lead that has one (another process made it, or the lead is
    not new after all) keeps it, and an erased lead stays erased."""
    existing = await ring(sessions).for_encoding(LEAD)
    assert (await ring(sessions).for_new_lead(LEAD)).key_id == existing.key_id
    async with sessions() as session:
        await privacy.destroy_lead_key(session, OTHER, datetime.now(UTC))
    with pytest.raises(LeadErased):
        await ring(sessions).for_new_lead(OTHER)
    # In one batch with reads of other leads: each gets its own answer, the reads create nothing.
    keys = ring(sessions)
    third = "lead-" + "c" * 32
    fourth = "lead-" + "d" * 32
    outcomes = await asyncio.gather(
        keys.for_new_lead(third),
        keys.for_decoding(LEAD, existing.key_id),
        keys.for_new_lead(OTHER),
        keys.for_decoding(fourth, "nothing"),
        return_exceptions=True,
    )
    assert keys.misses == 4
    assert isinstance(outcomes[0], DataKey) and outcomes[0].lead_id == third
    assert isinstance(outcomes[1], DataKey) and outcomes[1].key_id == existing.key_id
    assert isinstance(outcomes[2], LeadErased) and isinstance(outcomes[3], KeyUnavailable)
    async with sessions() as session:
        assert await privacy.get_lead_key(session, fourth) is None


async def test_master_key_rotation_rewraps_every_data_key(sessions: Sessions) -> None:
    old = ring(sessions, master="old-master")
    sealed = {}
    for lead in (LEAD, OTHER):
        [sealed[lead]] = await LeadPayloadCodec(old).with_context(workflow_context(lead)).encode([personal_payload()])
    # During the rotation both keys unwrap; new leads get the new one.
    both = ring(sessions, master="new-master", previous=["old-master"])
    assert await LeadPayloadCodec(both).decode([sealed[LEAD]]) == [personal_payload()]
    assert await rewrap_all(sessions, both.masters) == 2
    assert await rewrap_all(sessions, both.masters) == 0
    # Afterwards the old master key can go.
    only_new = ring(sessions, master="new-master")
    for lead in (LEAD, OTHER):
        assert await LeadPayloadCodec(only_new).decode([sealed[lead]]) == [personal_payload()]
    with pytest.raises(KeyUnavailable):
        await LeadPayloadCodec(ring(sessions, master="old-master")).decode([sealed[LEAD]])


async def test_converter_keeps_failure_messages_out_of_clear_text(sessions: Sessions) -> None:
    converter = lead_data_converter(ring(sessions)).with_context(workflow_context(LEAD))
    from temporalio.api.failure.v1 import Failure

    failure = Failure()
    await converter.encode_failure(ApplicationError(f"invalid address {EMAIL!r}", type="InvalidAddress"), failure)
    assert EMAIL.encode() not in failure.SerializeToString()
    decoded = await converter.decode_failure(failure)
    assert EMAIL in str(decoded)


async def test_suppressed_address_is_refused_right_before_sending(sessions: Sessions) -> None:
    await refuse_if_suppressed(sessions, EMAIL, "k")  # not suppressed: no error
    await erase_person(sessions, None, LEAD, EMAIL, "k")
    for spelling in (EMAIL, " Ann.Lee@EXAMPLE.com "):
        with pytest.raises(ApplicationError) as caught:
            await refuse_if_suppressed(sessions, spelling, "k")
        assert caught.value.type == "Suppressed" and caught.value.non_retryable and EMAIL not in str(caught.value)
    await refuse_if_suppressed(sessions, "someone.else@example.com", "k")
    # The hash depends on the key: the list is useless without it.
    await refuse_if_suppressed(sessions, EMAIL, "another-key")


async def all_text(sessions: Sessions) -> str:
    """Every string and JSON value in every table of the store."""
    found: list[str] = []
    async with sessions() as session:
        for table in Base.metadata.sorted_tables:
            for row in (await session.execute(select(table))).all():
                found.extend(str(value) for value in row if value is not None)
    return "\n".join(found)


def seeded_snapshot(now: datetime) -> LeadSnapshot:
    attributes: dict[str, Any] = {
        "email": EMAIL,
        "first_name": NAME,
        "last_name": "Lee",
        "company": COMPANY,
        "title": "VP Marketing",
        "phone": "+1 555 0100",
        "notes": f"met {NAME} at the fair",
        "source": "whitepaper",
        "country": "US",
        "company_size": 500,
        "utm_campaign": "q4",
    }
    return LeadSnapshot(
        LEAD, attributes, "sql", 60, "A", "rep-aiko", "inside-sales", now, now, "v1",
        FollowUp("fu-1", "first_touch", "fast", "rep-aiko", "inside-sales", now, now),
        [ScoreChange(1, now, 60, 60, "pricing_page", "pricing page", "ev-1")],
        [StageChange(1, now, "new", "sql", "score 60")],
    )  # fmt: skip


async def test_erasure_leaves_nothing_personal_in_the_store_and_keeps_the_counts(sessions: Sessions) -> None:
    now = datetime.now(UTC)
    async with sessions() as session:
        await repo.project_lead(session, seeded_snapshot(now))
        events = [TrackedEvent("ev-1", "page_view", now, f"https://example.com/?who={EMAIL}", NAME, {"co": COMPANY})]
        await repo.add_touchpoints(session, LEAD, events, now)
        await repo.record_email(
            session, key="k1", lead_id=LEAD, kind="nurture", template="welcome", to_addr=EMAIL,
            subject=f"Welcome {NAME} of {COMPANY}", message_id="<m@x>", status="failed",
            error=f"invalid address {EMAIL}", now=now,
        )  # fmt: skip
    await LeadPayloadCodec(ring(sessions)).with_context(workflow_context(LEAD)).encode([personal_payload()])
    before = await all_text(sessions)
    assert all(secret in before for secret in (EMAIL, NAME, COMPANY))

    outcome = await erase_person(sessions, ring(sessions), LEAD, EMAIL, "k")
    assert outcome.key_destroyed and outcome.suppressed
    assert outcome.anonymised == {"leads": 1, "touchpoints": 1, "emails": 1}
    after = await all_text(sessions)
    for secret in (EMAIL, NAME, COMPANY, "Lee", "VP Marketing", "555 0100", "at the fair"):
        assert secret not in after, f"{secret!r} survived the erasure"
    async with sessions() as session:
        lead = await repo.get_lead(session, LEAD)
        emails = await repo.list_emails(session, lead_id=LEAD)
        [touch] = await repo.list_touchpoints(session, LEAD)
    assert lead is not None
    assert (lead["stage"], lead["score"], lead["grade"], lead["source"], lead["country"]) == (
        "sql",
        60,
        "A",
        "whitepaper",
        "US",
    )
    assert lead["attributes"] == {"source": "whitepaper", "country": "US", "company_size": 500, "utm_campaign": "q4"}
    assert (emails[0]["template"], emails[0]["status"], touch["type"]) == ("welcome", "failed", "page_view")
    # Asked again: same result, nothing breaks.
    again = await erase_person(sessions, ring(sessions), LEAD, EMAIL, "k")
    assert not again.key_destroyed and await all_text(sessions) == after


async def test_recorded_plain_histories_replay_through_the_codec(sessions: Sessions) -> None:
    # The committed histories predate encryption: a worker with the codec must still read them.
    for path in sorted((Path(__file__).parent / "histories").glob("*.json")):
        history = WorkflowHistory.from_json(path.stem, path.read_text())
        replayer = Replayer(
            workflows=[LeadWorkflow, VisitorWorkflow, PlaybookMigrationWorkflow],
            data_converter=lead_data_converter(ring(sessions)),
            workflow_runner=workflow_runner(),
        )
        result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
        assert result.replay_failure is None, f"{path.name}: {result.replay_failure}"
