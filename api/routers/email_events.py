"""Bounce and complaint reports from the SMTP relay (``POST /v1/email-events``), in one generic JSON form.

Each report is kept (by its id, so a resent webhook counts once) and matched to the send through the
email ledger's deterministic Message-IDs. A hard bounce, a complaint, or the third soft bounce in a row
(rules/deliverability.py) puts the address on the suppression list and tells the lead whose address it is,
which ends nurture to it and shows on the lead. Reports about a rep's or manager's address suppress that
address but concern no lead.
"""

from __future__ import annotations

import hashlib
import json
import time
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Request, status
from pydantic import (
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    StringConstraints,
    ValidationError,
    model_validator,
)
from temporalio.service import RPCError, RPCStatusCode

from api.deps import AppState, State
from api.errors import BODY_ERRORS, V1_ERRORS, documented
from api.identity import survivor_of
from api.lead_ids import lead_id_for
from api.roles import public
from api.schemas import TIME_RANGE, Time
from api.webhook_auth import refusal
from privacy.addresses import address_hash
from rules.deliverability import suppression_reason, verdict, verdict_reason
from rules.model import EmailFeedback
from store import email_feedback as feedback_store
from store import suppressions
from workflows.lead import LeadWorkflow

router = APIRouter(
    tags=["email events"], dependencies=[public("the API key or the relay's signature (api/webhook_auth.py)")]
)
KINDS = {"hard": "hard_bounce", "soft": "soft_bounce", "complaint": "complaint", "delivered": "delivered"}


class EmailEventIn(BaseModel):
    """One report. ``message_id`` (the Message-ID leadflow sent) and/or ``recipient`` identify the mail."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    type: Literal["hard", "soft", "complaint", "delivered"] = Field(
        description="hard/soft bounce, complaint (marked as spam), or delivered (ends a run of soft bounces)"
    )
    message_id: Annotated[str, StringConstraints(min_length=3, max_length=998)] | None = None
    recipient: EmailStr | None = None
    reason: Annotated[str, StringConstraints(max_length=2000)] | None = Field(
        default=None, description="the relay's diagnostic, e.g. 550 5.1.1 user unknown"
    )
    at: Time | None = Field(default=None, description=f"when it happened ({TIME_RANGE}); default now")
    id: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = Field(
        default=None, description="the relay's event id: a report resent with the same id counts once"
    )

    @model_validator(mode="after")
    def _identified(self) -> EmailEventIn:
        if self.message_id is None and self.recipient is None:
            raise ValueError("give message_id or recipient (or both)")
        return self


class EmailEventsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    events: list[EmailEventIn] = Field(min_length=1, max_length=500)


class EmailEventsAccepted(BaseModel):
    accepted: int = Field(description="new reports kept")
    duplicates: int = Field(description="reports seen before (same id)")
    suppressed: int = Field(description="reports that put their address on the suppression list")
    unmatched: int = Field(description="reports with no recipient whose message id leadflow never sent")


def _webhook_secret(state: AppState) -> str | None:
    try:
        return state.settings.secret("webhook_secret")
    except RuntimeError:
        return None


async def _authenticated_body(request: Request, state: AppState) -> bytes:
    body = await request.body()  # BodyLimitMiddleware has refused anything over MAX_BODY_BYTES
    why = refusal(
        request.headers,
        body,
        api_key=state.api_key,
        secret=_webhook_secret(state),
        tolerance=state.settings.webhook_tolerance_seconds,
        now=time.time(),
    )
    if why is not None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, why, headers={"WWW-Authenticate": "Bearer"})
    return body


def _parse(body: bytes) -> EmailEventsIn:
    try:
        return EmailEventsIn.model_validate_json(body)
    except ValidationError as exc:
        errors = [
            {"field": ".".join(str(p) for p in e["loc"]) or "body", "message": e["msg"], "type": e["type"]}
            for e in exc.errors(include_url=False, include_input=False)
        ]
        summary = "; ".join(f"{e['field']}: {e['message']}" for e in errors[:5])
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, f"invalid request: {summary}") from exc


def _report_id(event: EmailEventIn, kind: str, hashed: str, at: datetime) -> str:
    if event.id is not None:
        return f"relay:{event.id}"
    basis = json.dumps([kind, event.message_id, hashed, at.isoformat()])
    return "derived:" + hashlib.sha256(basis.encode()).hexdigest()[:40]


async def _tell_lead(state: AppState, lead_id: str, feedback: EmailFeedback) -> None:
    try:
        async with state.temporal_call() as client:
            await client.get_workflow_handle(lead_id).signal(LeadWorkflow.email_feedback, feedback)
    except RPCError as exc:
        if exc.status != RPCStatusCode.NOT_FOUND:
            raise  # 503: the relay retries, and the resent report repeats this
        survivor = await survivor_of(state, lead_id)
        if survivor is not None and feedback.kind == "complaint":  # merged: a complaint is the person's opt-out
            async with state.temporal_call() as client:
                await client.get_workflow_handle(survivor).signal(LeadWorkflow.email_feedback, feedback)
        # No such lead (a rep's address) or an erased one: the suppression is all there is to do.


def _inlined(schema: dict[str, Any]) -> dict[str, Any]:
    """The body's JSON schema with its ``$defs`` inlined: OpenAPI resolves ``$ref`` from the document root."""
    defs = schema.pop("$defs", {})

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref", "")
            if ref.startswith("#/$defs/"):
                return walk(defs[ref.removeprefix("#/$defs/")])
            return {key: walk(value) for key, value in node.items()}
        if isinstance(node, list):
            return [walk(item) for item in node]
        return node

    return walk(schema)


@router.post(
    "/v1/email-events",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=EmailEventsAccepted,
    responses=V1_ERRORS | BODY_ERRORS | documented(429),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": _inlined(EmailEventsIn.model_json_schema())}},
        }
    },
)
async def post_email_events(request: Request, state: State) -> EmailEventsAccepted:
    """Bounce and complaint reports, with the API key or a relay's signature (README, "Bounce webhooks")."""
    body = _parse(await _authenticated_body(request, state))
    now = datetime.now(UTC)
    id_key = state.id_key
    counts = EmailEventsAccepted(accepted=0, duplicates=0, suppressed=0, unmatched=0)
    for event in body.events:  # in order: a run of soft bounces is counted as it arrives
        kind = KINDS[event.type]
        async with state.sessions() as session:
            send = await feedback_store.ledger_send(session, event.message_id) if event.message_id else None
        address = event.recipient or (send.to_addr if send is not None and "@" in send.to_addr else None)
        if address is None:
            counts.unmatched += 1
            continue
        lead_id = lead_id_for(address, id_key)
        if send is not None and send.kind == "nurture" and send.lead_id and send.to_addr == address.lower():
            lead_id = send.lead_id  # the address as sent (an IDN domain in A-labels) is the lead's own
        own = send if send is not None and send.lead_id == lead_id else None  # the lead's mail, not a rep's
        hashed, at = address_hash(address, id_key), min(event.at or now, now)
        row: dict[str, Any] = {
            "id": _report_id(event, kind, hashed, at),
            "address_hash": hashed,
            "type": kind,
            "message_id": event.message_id,
            "email_key": send.key if send is not None else None,
            "lead_id": lead_id if own is not None or send is None else None,
            "reason": event.reason,
            "occurred_at": at,
            "received_at": now,
        }
        async with state.sessions() as session:
            seen = await feedback_store.add_feedback(session, row)
            if seen is None:
                counts.accepted += 1
                history = await feedback_store.recent_history(session, hashed, lead_id)
                ends = verdict(kind, history)
            else:
                counts.duplicates += 1
                ends = suppression_reason(kind) if seen else None
            if ends is None:
                continue
            if seen is None:
                await suppressions.add(
                    session,
                    value=address,
                    scope="address",
                    reason=suppression_reason(ends),  # type: ignore[arg-type]  # hard_bounce or complaint
                    key=id_key,
                    now=now,
                    note=verdict_reason(kind, event.reason)[:500],
                    lead_id=lead_id if own is not None or send is None else None,
                )
                await feedback_store.mark_suppressed(session, str(row["id"]))
                counts.suppressed += 1
        feedback = EmailFeedback(
            ends,  # type: ignore[arg-type]  # verdict() answers only hard_bounce or complaint
            at,
            verdict_reason(kind, event.reason),
            own.key if own is not None else None,
            own.template if own is not None else None,
        )
        await _tell_lead(state, lead_id, feedback)
    return counts
