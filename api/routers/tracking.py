"""Tracked links and open pixels: hit by mail clients, so no API key, and they answer nothing but the
redirect or the pixel (no lead, no template, no reason for a refusal).

A click or an open reaches the lead's workflow as an ``email_click`` / ``email_open`` event carrying the
template, the send key, the A/B variant and the link (so ``wait_for_event`` and scoring react to it); the
workflow keeps it as a touchpoint (the email report counts them), as it does every event. The event id comes
from rules/engagement.py: repeats within ``LEADFLOW_TRACKING_DEDUPE_SECONDS`` (prefetchers, link scanners)
count once. Recording never
delays or breaks the redirect: when Temporal cannot be reached the person still gets where they clicked.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from datetime import UTC, datetime
from urllib.parse import urlsplit

from fastapi import APIRouter, Request, Response, status
from fastapi.responses import JSONResponse, RedirectResponse
from temporalio.service import RPCError

from activities.tracking_tokens import TrackedSend, tracking_key, verify
from api.deps import AppState, ServiceUnavailable, State
from api.errors import documented
from api.intake import signal_events
from api.roles import public
from rules.engagement import CLICK, OPEN, engagement_event_id
from rules.model import EventsReceived, TrackedEvent

log = logging.getLogger("leadflow.tracking")
router = APIRouter(dependencies=[public("mail clients follow signed links")], prefix="/t", tags=["tracking"])
RECORD_TIMEOUT_SECONDS = 3.0
# The smallest transparent GIF (1x1).
PIXEL = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
# Never cached (each open should reach us), never sent on as a Referer (the token names the send).
NO_TRACE = {"Cache-Control": "no-store, private", "Referrer-Policy": "no-referrer", "X-Robots-Tag": "noindex"}


def _not_found() -> Response:
    # The same answer for every refusal: which check failed would help a forger.
    return JSONResponse({"detail": "not found"}, status.HTTP_404_NOT_FOUND, headers=NO_TRACE)


async def _record(state: AppState, send: TrackedSend, kind: str, link: str | None) -> None:
    """Tell the lead's workflow, which keeps the touchpoint (its one writer: with the link's campaign, in its
    next projection); a failure is logged, never shown to the person."""
    lead_id = send.lead_id
    if lead_id is None:
        return
    now = datetime.now(UTC)
    window = state.settings.tracking_dedupe_seconds
    properties = {"template": send.template, "send_key": send.send_key, "variant": send.variant, "link": link}
    event = TrackedEvent(
        engagement_event_id(kind, send.send_key, now, window, link), kind, now, link, send.template, properties
    )
    try:
        await asyncio.wait_for(
            signal_events(state, lead_id, EventsReceived([event]), create=False), RECORD_TIMEOUT_SECONDS
        )
    except (RPCError, ServiceUnavailable, TimeoutError, OSError) as exc:
        # An erased lead (its workflow ended) or Temporal down: the click still redirects.
        log.warning("%s for %s not recorded: %s", kind, send.send_key, type(exc).__name__)
    except Exception:  # the redirect matters more than the record
        log.exception("%s for %s not recorded", kind, send.send_key)


@router.get(
    "/c/{token}",
    response_model=None,
    status_code=status.HTTP_302_FOUND,
    responses=documented(404) | {302: {"description": "to the signed target (Location)"}},
)
@router.head("/c/{token}", response_model=None, include_in_schema=False)
async def click(token: str, request: Request, state: State) -> Response:
    """A tracked link: 302 to the signed target (404 for anything leadflow did not sign as it is)."""
    verified = verify(token, tracking_key(state.id_key))
    if verified is None or verified[1] is None:
        return _not_found()
    send, target = verified
    if urlsplit(target).scheme.lower() not in ("http", "https"):
        return _not_found()
    if request.method == "GET":  # HEAD is a scanner checking the link, not a person following it
        await _record(state, send, CLICK, target)
    return RedirectResponse(str(target), status.HTTP_302_FOUND, headers=NO_TRACE)


@router.get(
    "/o/{name}",
    response_model=None,
    responses=documented(404) | {200: {"content": {"image/gif": {}}, "description": "a 1x1 transparent GIF"}},
)
@router.head("/o/{name}", response_model=None, include_in_schema=False)
async def open_pixel(name: str, request: Request, state: State) -> Response:
    """The open pixel (``<token>.gif``): a 1x1 transparent GIF."""
    verified = verify(name.removesuffix(".gif"), tracking_key(state.id_key)) if name.endswith(".gif") else None
    if verified is None or verified[1] is not None:
        return _not_found()
    if request.method == "GET":
        await _record(state, verified[0], OPEN, None)
    return Response(PIXEL, media_type="image/gif", headers=NO_TRACE)
