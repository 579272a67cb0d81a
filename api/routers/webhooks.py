"""Signed webhooks from other tools: ``POST /v1/webhooks/{source}``.

The sender signs each delivery like Stripe does: header ``X-Leadflow-Signature: t=<unix seconds>,v1=<hex>``
with ``v1 = HMAC-SHA256(secret, "<t>.<raw body>")``. A wrong or missing signature is a 401; a timestamp
further from now than ``LEADFLOW_WEBHOOK_TOLERANCE_SECONDS`` is refused as a replay, and a replay inside
the window is the same event (its id derives from the signed timestamp and body), counted once. The
JSON body is mapped to a lead like a form (``PUT /v1/admin/webhooks/{source}``; dotted paths reach nested
fields). The secret is never stored: it derives from the id key and a per-source nonce.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any

from fastapi import APIRouter, HTTPException, Request, status
from pydantic import BaseModel

from api.deps import State
from api.errors import documented
from api.roles import public
from api.routers.forms import InboundConfig, SourceId, take_post
from store import ingest

SIGNATURE_HEADER = "x-leadflow-signature"
MAX_WEBHOOK_BYTES = 256 * 1024
router = APIRouter(
    prefix="/v1/webhooks",
    tags=["webhooks"],
    responses=documented(400, 401, 404, 410, 413, 422, 429, 503),
    dependencies=[public("the sender's HMAC signature")],
)


def webhook_secret(id_key: str, source: str, nonce: str) -> str:
    return "whsec_" + hmac.new(id_key.encode(), f"webhook:{source}:{nonce}".encode(), hashlib.sha256).hexdigest()


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The header value a sender puts on a delivery (also what tests and the README example use)."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def check_signature(header: str | None, secret: str, body: bytes, now: float, tolerance: int) -> int:
    """The signed timestamp, or a 401 that says what is wrong."""
    if not header:
        raise _unauthorized(f"sign the body: {SIGNATURE_HEADER.title()}: t=<unix seconds>,v1=<hex HMAC-SHA256>")
    pairs = [part.strip().partition("=")[::2] for part in header.split(",")]
    stamp = next((value for name, value in pairs if name == "t"), "")
    given = [value for name, value in pairs if name == "v1"]  # several during a secret rotation
    if not stamp.isdigit() or not given:
        raise _unauthorized("the signature header needs t=<unix seconds> and v1=<hex>")
    expected = sign(secret, int(stamp), body).split("v1=")[1]
    if not any(hmac.compare_digest(expected, g) for g in given):
        raise _unauthorized("the signature does not match the body (wrong secret, or the body was changed)")
    if abs(now - int(stamp)) > tolerance:
        raise _unauthorized(f"the signed timestamp is more than {tolerance} s from now: replays are refused")
    return int(stamp)


def _unauthorized(message: str) -> HTTPException:
    return HTTPException(status.HTTP_401_UNAUTHORIZED, message, headers={"WWW-Authenticate": "Signature"})


class WebhookAccepted(BaseModel):
    lead_id: str
    event_id: str


@router.post("/{source}", status_code=status.HTTP_202_ACCEPTED, response_model=WebhookAccepted)
async def receive_webhook(source: SourceId, request: Request, state: State) -> WebhookAccepted:
    """A signed delivery from another tool; see the module docstring for the signature."""
    async with state.sessions() as session:
        row = await ingest.get_source(session, "webhook", source)
    if row is None or not row.secret_nonce:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND, f"no webhook source {source}: create it with PUT /v1/admin/webhooks/"
        )
    body = await request.body()
    if len(body) > MAX_WEBHOOK_BYTES:
        raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, f"a webhook body is at most {MAX_WEBHOOK_BYTES} bytes")
    secret = webhook_secret(state.id_key, source, row.secret_nonce)
    stamp = check_signature(
        request.headers.get(SIGNATURE_HEADER), secret, body, time.time(), state.settings.webhook_tolerance_seconds
    )
    try:
        data: Any = json.loads(body)
    except ValueError as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, f"the body is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "the body must be one JSON object")
    event_id = f"webhook-{hashlib.sha256(f'{source}:{stamp}:'.encode() + body).hexdigest()[:40]}"
    lead_id = await take_post(state, "webhook", source, InboundConfig.model_validate(row.config), data, event_id)
    return WebhookAccepted(lead_id=lead_id, event_id=event_id)
