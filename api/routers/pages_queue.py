"""The follow-up queue page (reps and managers): overdue and due-soon follow-ups by team and rep, sortable and
filtered by query parameters, with a form per row that logs a touch through the same workflow update as
POST /v1/leads/{id}/touches; and the leads awaiting the rep's acceptance, with accept and reject (with a
reason) forms that run the same update as POST /v1/leads/{id}/accept and /reject. A rep sees their own
follow-ups and leads, a manager their teams'."""

from __future__ import annotations

from collections.abc import Awaitable
from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, status
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError

from api.deps import Caller, Session, State
from api.lead_ids import LEAD_ID_PATTERN
from api.lead_scope import lead_in_scope, store_scope
from api.page_kit import page_error, render
from api.roles import allow, page_form
from api.routers.lead_sales import NoteIn, ReasonIn, accept_lead, reject_lead
from api.routers.leads import log_touch
from api.schemas import TouchIn
from rules.access import Role
from rules.model import TOUCH_KINDS
from store import pages

router = APIRouter(tags=["pages"], include_in_schema=False, dependencies=[allow(Role.rep, Role.manager)])
Key = Annotated[str | None, Query(pattern=r"^[A-Za-z0-9_.:@-]{1,64}$")]


@router.get("/queue")
async def queue_page(
    request: Request,
    state: State,
    session: Session,
    caller: Caller,
    team: Key = None,
    rep: Key = None,
    source: Annotated[str | None, Query(max_length=64)] = None,
    grade: Annotated[str | None, Query(pattern=r"^[A-Za-z0-9+-]{1,8}$")] = None,
    min_score: Annotated[int | None, Query(ge=-100_000, le=100_000)] = None,
    due_within_hours: Annotated[int, Query(ge=1, le=24 * 30, description="what counts as due soon")] = 24,
    show: Annotated[Literal["all", "overdue", "due_soon"], Query()] = "all",
    sort: Annotated[pages.QueueSort, Query()] = "due",
    order: Annotated[Literal["asc", "desc"], Query()] = "asc",
    done: Annotated[str | None, Query(pattern=LEAD_ID_PATTERN)] = None,
    answered: Annotated[Literal["accept", "reject"] | None, Query()] = None,
) -> Response:
    where = pages.QueueFilter(store_scope(caller), team, rep, source or None, grade, min_score)
    now, window = datetime.now(UTC), timedelta(hours=due_within_hours)
    rows = await pages.queue(session, where, now=now, due_within=window, sort=sort, descending=order == "desc")
    awaiting = await pages.awaiting_acceptance(session, where)
    counts = await pages.queue_counts(session, where, now=now, due_within=window)
    filters = {
        "team": team, "rep": rep, "source": source, "grade": grade, "min_score": min_score,
        "due_within_hours": due_within_hours, "show": show,
    }  # fmt: skip
    kept = {k: v for k, v in filters.items() if v not in (None, "")}
    sections = [s for s in ("overdue", "due_soon") if show in ("all", s)]
    return render(
        request,
        "queue.html",
        {
            "sections": {s: [r for r in rows if r["section"] == s] for s in sections},
            "counts": counts,
            "totals": {s: sum(c[s] for c in counts) for s in ("overdue", "touched_late", "due_soon")},
            "filters": filters,
            "sort": sort,
            "order": order,
            "sort_link": lambda key: (
                "/queue?"
                + urlencode({**kept, "sort": key, "order": "desc" if sort == key and order == "asc" else "asc"})
            ),
            "back": "/queue?" + urlencode({**kept, "sort": sort, "order": order}),
            "touch_kinds": TOUCH_KINDS,
            "sorts": pages.QUEUE_SORTS,
            "done": done,
            "answered": answered,
            "awaiting": awaiting,
            "reject_reasons": (await state.current_playbook()).compiled.model.sales.reject_reasons,
        },
    )


def _back_to(target: str | None, lead_id: str, done: str = "touch") -> str:
    """Back to the queue as it was filtered, or to the lead's page (only these: never an open redirect)."""
    if target == f"/leads/{lead_id}":
        return f"{target}?done={done}"
    base = target if target and target.startswith("/queue?") and "//" not in target else "/queue?"
    answered = {} if done == "touch" else {"answered": done}
    return f"{base}&{urlencode({'done': lead_id, **answered})}"


@router.post("/queue/{lead_id}/touch", dependencies=[Depends(lead_in_scope)])
async def touch_from_queue(
    request: Request,
    lead_id: Annotated[str, Path(pattern=LEAD_ID_PATTERN)],
    state: State,
    caller: Caller,
) -> Response:
    """Log a touch (the CSRF token was checked before this runs): the follow-up is met and the lead leaves
    the overdue list once its workflow projects it."""
    form = await page_form(request)
    try:
        touch = TouchIn.model_validate({"kind": form.get("kind", ""), "note": form.get("note") or None})
    except ValidationError as exc:
        return _form_error(request, exc, f" (kind is one of {', '.join(TOUCH_KINDS)})")
    return await _carried_out(request, log_touch(lead_id, touch, state, caller), form.get("back"), lead_id)


@router.post("/queue/{lead_id}/accept", dependencies=[Depends(lead_in_scope)])
async def accept_from_queue(
    request: Request,
    lead_id: Annotated[str, Path(pattern=LEAD_ID_PATTERN)],
    state: State,
    caller: Caller,
) -> Response:
    """Accept the lead (the CSRF token was checked before this runs), through the same update as the API."""
    form = await page_form(request)
    note = (form.get("note") or "").strip()[:2000] or None
    accepted = accept_lead(lead_id, state, caller, NoteIn(note=note))
    return await _carried_out(request, accepted, form.get("back"), lead_id, "accept")


@router.post("/queue/{lead_id}/reject", dependencies=[Depends(lead_in_scope)])
async def reject_from_queue(
    request: Request,
    lead_id: Annotated[str, Path(pattern=LEAD_ID_PATTERN)],
    state: State,
    caller: Caller,
) -> Response:
    """Reject the lead with a reason (and a note for other), through the same update as the API."""
    form = await page_form(request)
    try:
        body = ReasonIn.model_validate({"reason": form.get("reason", ""), "note": form.get("note") or None})
    except ValidationError as exc:
        return _form_error(request, exc)
    return await _carried_out(request, reject_lead(lead_id, body, state, caller), form.get("back"), lead_id, "reject")


def _form_error(request: Request, exc: ValidationError, hint: str = "") -> Response:
    problem = exc.errors()[0]
    return page_error(request, 422, f"{problem['loc'][0]}: {problem['msg']}{hint}")


async def _carried_out(
    request: Request, action: Awaitable[object], back: str | None, lead_id: str, done: str = "touch"
) -> Response:
    """Run a queue action through the API's own route function: its refusal as an error page, else back."""
    try:
        await action
    except HTTPException as exc:
        return page_error(request, exc.status_code, str(exc.detail))
    return RedirectResponse(_back_to(back, lead_id, done), status_code=status.HTTP_303_SEE_OTHER)
