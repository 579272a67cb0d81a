"""One type for a rep: the shapes recorded before it existed still decode into it."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from pydantic import TypeAdapter
from temporalio.api.common.v1 import Payload

from payload_converter import data_converter
from rules.model import AssignmentFailed, AssignRep, LeadState, Owner, Rep, RepAssigned
from workflows.payloads import AssignAnswerV1, LeadView

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
AIKO = Rep("rep-aiko", "Aiko Sato", "aiko@example.com", "inside-sales", "Mina Manager", "mina@example.com")
COMMAND = AssignRep("lead-1", "lead-1:assign:1", "inside-sales", "round_robin", "default team")


def decode(value: object, type_hint: object) -> object:
    payload = Payload(metadata={"encoding": b"json/plain"}, data=json.dumps(value).encode())
    return data_converter.payload_converter.from_payload(payload, type_hint)  # type: ignore[arg-type]


def roundtrip(value: object, type_hint: object) -> object:
    return data_converter.payload_converter.from_payload(
        data_converter.payload_converter.to_payload(value),
        type_hint,  # type: ignore[arg-type]
    )


def test_a_carried_state_with_the_flat_owner_of_before_reads_as_owner_with_rep() -> None:
    flat = {
        "rep_id": "rep-aiko",
        "rep_name": "Aiko Sato",
        "rep_email": "aiko@example.com",
        "team": "inside-sales",
        "manager_name": "Mina Manager",
        "manager_email": "mina@example.com",
        "assigned_at": T0.isoformat(),
        "reason": "default team; round-robin in team inside-sales",
    }
    state = decode({"lead_id": "lead-1", "owner": flat}, LeadState)
    assert isinstance(state, LeadState)
    assert state.owner == Owner(AIKO, T0, "default team; round-robin in team inside-sales")


def test_owner_and_assignment_answers_round_trip_in_todays_shape() -> None:
    state = LeadState("lead-1", owner=Owner(AIKO, T0, "rr"))
    assert roundtrip(state, LeadState) == state
    answered = RepAssigned(COMMAND.key, AIKO, "default team; round-robin in team inside-sales")
    failed = AssignmentFailed(COMMAND.key, "inside-sales", "nobody available in team inside-sales")
    for answer in (answered, failed):
        assert roundtrip(answer, RepAssigned | AssignmentFailed) == answer


def test_the_answer_recorded_by_the_untyped_assign_activity_still_decodes() -> None:
    # As tests/histories/lead_sla_breach_reassign_v2.json holds it.
    recorded = {
        "assigned": {
            "rep_id": "rep-aiko",
            "rep_name": "Aiko Sato",
            "rep_email": "aiko@example.com",
            "manager_name": "Mina Manager",
            "manager_email": "mina@example.com",
            "reason": "default team; round-robin in team inside-sales",
        },
        "reason": "assigned",
    }
    legacy = decode(recorded, AssignAnswerV1 | RepAssigned | AssignmentFailed)
    assert isinstance(legacy, AssignAnswerV1)
    assert legacy.answer(COMMAND) == RepAssigned(COMMAND.key, AIKO, "default team; round-robin in team inside-sales")
    nobody = decode({"assigned": None, "reason": "nobody"}, AssignAnswerV1 | RepAssigned | AssignmentFailed)
    assert isinstance(nobody, AssignAnswerV1)
    assert nobody.answer(COMMAND) == AssignmentFailed(COMMAND.key, "inside-sales", "nobody")
    # An activity scheduled before an upgrade and answered by today's worker: today's shape comes back.
    today = decode({"key": COMMAND.key, "rep": vars(AIKO), "reason": "rr"}, AssignAnswerV1 | RepAssigned)
    assert today == RepAssigned(COMMAND.key, AIKO, "rr")


def test_the_api_documents_the_owner_as_one_rep() -> None:
    owner = TypeAdapter(LeadView).json_schema()["$defs"]["Owner"]
    defs = TypeAdapter(LeadView).json_schema()["$defs"]
    assert owner["properties"]["rep"] == {"$ref": "#/$defs/Rep"}
    assert set(defs["Rep"]["properties"]) == {"id", "name", "email", "team", "manager_name", "manager_email"}
