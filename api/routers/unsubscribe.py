"""The unsubscribe link in every nurture email (outside /v1/: no API key, the signed token is the proof).

``GET`` shows a confirmation page and changes nothing, since mail scanners follow links; ``POST`` with
RFC 8058's body ``List-Unsubscribe=One-Click`` (a mail client's one-click, or the page's button)
unsubscribes at once: the address goes on the suppression list (reason ``unsubscribed``) and the lead's
workflow gets an opt-out consent record (source ``unsubscribe_link``), which stops its journeys' sends.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Annotated
from urllib.parse import parse_qs

from fastapi import APIRouter, Query, Request, status
from fastapi.responses import HTMLResponse, PlainTextResponse, Response
from fastapi.templating import Jinja2Templates
from temporalio.service import RPCError, RPCStatusCode

from activities.unsubscribe import ONE_CLICK, Sender, lead_of_token
from api.deps import AppState, State
from api.identity import survivor_of
from api.roles import public
from rules.model import ConsentRecord, ConsentRecorded, EventsReceived, TrackedEvent
from settings import ROOT
from store import repo, suppressions
from workflows.lead import LeadWorkflow

log = logging.getLogger("leadflow.api.unsubscribe")
# Pages for people and mail clients, like the dashboard: documented in README, not in the API's spec.
router = APIRouter(
    prefix="/unsubscribe",
    tags=["unsubscribe"],
    include_in_schema=False,
    dependencies=[public("the signed token in the link is the proof")],
)
pages = Jinja2Templates(directory=ROOT / "templates" / "pages")
PAGE_LOCALES = ("en", "ja")
MAX_BODY_BYTES = 8 * 1024
# The token is in the URL: keep it out of caches, referrers and search engines.
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Robots-Tag": "noindex",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'",
}
Lang = Annotated[str | None, Query(max_length=16, description="page language (en, ja); else Accept-Language")]


def page_locale(lang: str | None, accept_language: str, default: str) -> str:
    wanted = [lang or ""] + [part.split(";")[0].strip()[:2].lower() for part in accept_language.split(",")]
    return next((w for w in wanted if w in PAGE_LOCALES), default if default in PAGE_LOCALES else "en")


def page(request: Request, state: AppState, lang: str | None, which: str, code: int = 200) -> HTMLResponse:
    locale = page_locale(lang, request.headers.get("accept-language", ""), state.settings.default_locale)
    context = {"state": which, "locale": locale, "sender": Sender.of(state.settings).name}
    return pages.TemplateResponse(request, "unsubscribe.html", context, status_code=code, headers=PAGE_HEADERS)


def one_click(body: bytes, content_type: str) -> tuple[bool, bool]:
    """(the body asks to unsubscribe as RFC 8058 says, it came from our page's button)."""
    if content_type.startswith("multipart/form-data"):  # some mail providers post the pair as multipart
        return b'name="List-Unsubscribe"' in body and b"One-Click" in body, False
    fields = parse_qs(body.decode("utf-8", "replace"))
    return fields.get("List-Unsubscribe") == ["One-Click"], fields.get("via") == ["page"]


@router.get("/{token}", response_class=HTMLResponse, summary="Confirmation page (changes nothing)")
async def unsubscribe_page(token: str, request: Request, state: State, lang: Lang = None) -> HTMLResponse:
    if lead_of_token(token, state.unsubscribe_keys) is None:
        return page(request, state, lang, "invalid", status.HTTP_404_NOT_FOUND)
    return page(request, state, lang, "confirm")


@router.post("/{token}", summary="Unsubscribe at once (RFC 8058 one-click, or the page's button)")
async def unsubscribe(token: str, request: Request, state: State, lang: Lang = None) -> Response:
    lead_id = lead_of_token(token, state.unsubscribe_keys)
    if lead_id is None:
        return page(request, state, lang, "invalid", status.HTTP_404_NOT_FOUND)
    body = await request.body()
    if len(body) > MAX_BODY_BYTES:
        return PlainTextResponse("the body is too large", status.HTTP_413_CONTENT_TOO_LARGE)
    asked, from_page = one_click(body, request.headers.get("content-type", ""))
    if not asked:
        return PlainTextResponse(
            f"the POST body must be {ONE_CLICK} (RFC 8058); open the link in a browser to unsubscribe",
            status.HTTP_400_BAD_REQUEST,
        )
    wording = "unsubscribe page button" if from_page else f"one-click unsubscribe ({ONE_CLICK}, RFC 8058)"
    await record_unsubscribe(state, lead_id, wording)
    return page(request, state, lang, "done")


async def record_unsubscribe(state: AppState, lead_id: str, wording: str) -> None:
    """Suppress the lead's address (no send goes out from now on, even one already under way), then tell
    the lead's workflow (signals: quick): the opt-out consent record, which skips its journeys' sends, and an
    ``unsubscribe`` event, which the playbook's scoring sees and the workflow stores as a touchpoint (the
    email report counts it against the last mail; one per person: a fixed id)."""
    now = datetime.now(UTC)
    async with state.sessions() as session:
        lead = await repo.get_lead(session, lead_id)
        if lead is not None and lead.get("email"):
            await suppressions.add(
                session, value=lead["email"], scope="address", reason="unsubscribed", key=state.id_key, now=now,
                note=wording, lead_id=lead_id,
            )  # fmt: skip
    change = ConsentRecorded(ConsentRecord("opted_out", "unsubscribe_link", now, wording=wording))
    left = EventsReceived([TrackedEvent(f"unsubscribe:{lead_id}", "unsubscribe", now)], origin="unsubscribe_link")
    async with state.temporal_call() as client:
        handle = client.get_workflow_handle(lead_id)
        try:
            await handle.signal(LeadWorkflow.consent, change)
        except RPCError as exc:
            if exc.status != RPCStatusCode.NOT_FOUND:
                raise
            survivor = await survivor_of(state, lead_id)
            if survivor is None:
                # No workflow (an erased lead): nothing more can be sent to it, so the person is unsubscribed.
                log.info("unsubscribe for %s: no workflow", lead_id)
                return
            # Merged since the mail went out: the person's lead records the opt-out.
            handle = client.get_workflow_handle(survivor)
            await handle.signal(LeadWorkflow.consent, change)
        await handle.signal(LeadWorkflow.events, left)
