"""The accept/reject links in a rep's notification (outside /v1/: no API key, the signed token is the proof).

``GET /sal/{token}?action=accept|reject`` shows a confirmation page and changes nothing (mail scanners follow
links); its button POSTs, which accepts or rejects through the same workflow update as the API
(api/routers/lead_sales.py). The change is recorded as the rep's, the rep the token was signed for, and only
while the link's assignment is the lead's current one (activities/sal_tokens.py); otherwise a page says the
lead has moved on.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query, Request, status
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates
from temporalio.client import WorkflowQueryFailedError
from temporalio.service import RPCError, RPCStatusCode

from activities.sal_tokens import SalTicket, sal_key, verify
from api.deps import AppState, Overloaded, ServiceUnavailable, State
from api.roles import page_form, public
from api.routers.lead_sales import change_lead
from api.routers.leads import QUERY_TIMEOUT
from api.routers.unsubscribe import PAGE_HEADERS, page_locale
from privacy.keys import LeadErased
from rules.model import Actor, SalesChange
from settings import ROOT
from workflows.lead import LeadWorkflow
from workflows.payloads import LeadView

router = APIRouter(
    prefix="/sal",
    tags=["sales"],
    include_in_schema=False,
    dependencies=[public("the signed token in the rep's notification is the proof")],
)
pages = Jinja2Templates(directory=ROOT / "templates" / "pages")
Action = Literal["accept", "reject"]
Lang = Annotated[str | None, Query(max_length=16, description="page language (en, ja); else Accept-Language")]


def _page(
    request: Request, state: AppState, lang: str | None, which: str, code: int = 200, **extra: Any
) -> HTMLResponse:
    locale = page_locale(lang, request.headers.get("accept-language", ""), state.settings.default_locale)
    context = {"state": which, "locale": locale, **extra}
    return pages.TemplateResponse(request, "sal.html", context, status_code=code, headers=PAGE_HEADERS)


class _Unavailable(Exception):
    """Temporal cannot answer now: the page says to try again (nothing changed)."""


async def _current(state: AppState, ticket: SalTicket, key: str) -> LeadView | None:
    """The lead's view when the ticket's assignment still waits for the rep it was signed for, else None (an
    ended lead too: merged or erased since the mail went out)."""
    try:
        async with state.temporal_call() as client:
            view: LeadView = await client.get_workflow_handle(ticket.lead_id).query(
                LeadWorkflow.view, rpc_timeout=QUERY_TIMEOUT
            )
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return None
        raise _Unavailable from exc
    except (WorkflowQueryFailedError, LeadErased):
        return None
    except (ServiceUnavailable, Overloaded) as exc:
        raise _Unavailable from exc
    offered, owner = view.acceptance, view.owner
    if offered is None or owner is None or offered.status != "pending":
        return None
    if offered.assignment_key != ticket.assignment_key or not ticket.held_by(owner.rep.id, key):
        return None
    return view


def _lead_context(view: LeadView) -> dict[str, Any]:
    attrs = view.attributes
    name = " ".join(str(attrs.get(k, "")) for k in ("first_name", "last_name")).strip()
    return {"lead_name": name or attrs.get("email", ""), "company": attrs.get("company", "")}


@router.get("/{token}", response_class=HTMLResponse, summary="Confirmation page (changes nothing)")
async def sal_page(
    token: str, request: Request, state: State, action: Action = "accept", lang: Lang = None
) -> HTMLResponse:
    key = sal_key(state.id_key)
    ticket = verify(token, key)
    if ticket is None:
        return _page(request, state, lang, "invalid", status.HTTP_404_NOT_FOUND)
    try:
        view = await _current(state, ticket, key)
    except _Unavailable:
        return _page(request, state, lang, "unavailable", status.HTTP_503_SERVICE_UNAVAILABLE)
    if view is None:
        return _page(request, state, lang, "stale", status.HTTP_409_CONFLICT)
    reasons = (await state.current_playbook()).compiled.model.sales.reject_reasons
    return _page(request, state, lang, "confirm", action=action, reasons=reasons, **_lead_context(view))


@router.post("/{token}", response_class=HTMLResponse, summary="Accept or reject (the page's button)")
async def sal_answer(token: str, request: Request, state: State, lang: Lang = None) -> HTMLResponse:
    key = sal_key(state.id_key)
    ticket = verify(token, key)
    if ticket is None:
        return _page(request, state, lang, "invalid", status.HTTP_404_NOT_FOUND)
    form = await page_form(request)
    action = form.get("action")
    if action not in ("accept", "reject"):
        return _page(request, state, lang, "invalid", status.HTTP_422_UNPROCESSABLE_CONTENT)
    try:
        view = await _current(state, ticket, key)
    except _Unavailable:
        return _page(request, state, lang, "unavailable", status.HTTP_503_SERVICE_UNAVAILABLE)
    if view is None or view.owner is None:
        return _page(request, state, lang, "stale", status.HTTP_409_CONFLICT)
    rep = view.owner.rep
    # The token proves the rep: the change is theirs, made through their notification's link.
    by = Actor("link", f"sal-link:{rep.id}", "rep", rep.name, rep.id)
    change = SalesChange(
        f"sales-{uuid.uuid4().hex}", action, by, datetime.now(UTC),  # type: ignore[arg-type]
        reason=(form.get("reason") or None) if action == "reject" else None,
        note=(form.get("note") or "").strip()[:2000] or None, assignment_key=ticket.assignment_key,
    )  # fmt: skip
    try:
        await change_lead(state, ticket.lead_id, change)
    except (ServiceUnavailable, RPCError):
        return _page(request, state, lang, "unavailable", status.HTTP_503_SERVICE_UNAVAILABLE)
    except HTTPException as exc:
        if exc.status_code == status.HTTP_409_CONFLICT:
            return _page(request, state, lang, "stale", exc.status_code)
        if exc.status_code == status.HTTP_422_UNPROCESSABLE_CONTENT:
            reasons = (await state.current_playbook()).compiled.model.sales.reject_reasons
            context = _lead_context(view)
            return _page(request, state, lang, "confirm", exc.status_code, action=action, reasons=reasons,
                         error=str(exc.detail), **context)  # fmt: skip
        return _page(request, state, lang, "unavailable", status.HTTP_503_SERVICE_UNAVAILABLE)
    return _page(request, state, lang, f"done_{action}", **_lead_context(view))
