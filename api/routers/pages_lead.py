"""The lead page and lead search (reps, managers, marketers): one timeline of everything the store holds
about a lead (touchpoints, emails with their opens and clicks, stage changes, assignments, SLA events,
outcomes, who did what), the score explained change by change, and from the live workflow (when Temporal
answers) the grade's reasons, journey positions and what each waits for, and consent."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import Response
from temporalio.client import WorkflowQueryFailedError
from temporalio.service import RPCError

from api.deps import AppState, Caller, ServiceUnavailable, Session, State
from api.lead_ids import LEAD_ID_PATTERN
from api.lead_scope import lead_in_scope, store_scope
from api.page_kit import page_error, render
from api.roles import allow
from privacy.keys import LeadErased
from rules.access import Role
from rules.model import TOUCH_KINDS
from store import email_feedback, pages, repo
from workflows.lead import LeadWorkflow
from workflows.payloads import LeadView

router = APIRouter(tags=["pages"], include_in_schema=False, dependencies=[allow(Role.rep, Role.manager, Role.marketer)])
LIVE_QUERY_TIMEOUT = timedelta(seconds=3)


@router.get("/leads")
async def search_page(
    request: Request,
    session: Session,
    caller: Caller,
    q: Annotated[str | None, Query(max_length=200, description="email, company or lead id")] = None,
) -> Response:
    text = (q or "").strip()
    found = await pages.search_leads(session, text, scope=store_scope(caller)) if text else []
    return render(request, "leads.html", {"q": text, "found": found})


async def live_view(state: AppState, lead_id: str) -> LeadView | None:
    """The workflow's own view, or None when Temporal cannot answer now (the page shows the store's copy)."""
    try:
        async with state.temporal_call() as client:
            view: LeadView = await client.get_workflow_handle(lead_id).query(
                LeadWorkflow.view, rpc_timeout=LIVE_QUERY_TIMEOUT
            )
    except (ServiceUnavailable, RPCError, WorkflowQueryFailedError, LeadErased):
        return None
    return view if view.exists else None


def timeline(
    lead: dict[str, Any] | None,
    touchpoints: list[dict[str, Any]],
    emails: list[dict[str, Any]],
    stage_changes: list[dict[str, Any]],
    assignments: list[dict[str, Any]],
    followups: list[dict[str, Any]],
) -> list[dict[str, Any]]:
    """Every dated thing in one list, newest first: when, what kind, what, who."""
    items: list[dict[str, Any]] = []
    opened: dict[str, dict[str, int]] = {}
    for point in touchpoints:
        send_key = (point.get("properties") or {}).get("send_key")
        if send_key and point["type"] in ("email_open", "email_click"):
            opened.setdefault(send_key, {"email_open": 0, "email_click": 0})[point["type"]] += 1
        props = point.get("properties") or {}
        if point["type"].startswith("touch."):  # a rep's touch: the rep is its name, the note its property
            what, who = props.get("note") or "", point.get("name")
        elif point["type"].startswith("sales."):  # a sales change (rules/sales.py): who made it, and why
            what, who = sales_summary(props), point.get("name")
        else:
            what, who = point.get("name") or point.get("url") or "", None
        items.append({"at": point["occurred_at"], "kind": point["type"], "what": what, "who": who})
    for email in emails:
        counts = opened.get(email["key"], {})
        what = f"{email['template']} · {email['status']}"
        if email.get("error"):  # a failed send says why (the ledger's reason), not only that it failed
            what += f" · {email['error']}"
        if counts:
            what += f" · opens {counts.get('email_open', 0)}, clicks {counts.get('email_click', 0)}"
        items.append({"at": email.get("sent_at") or email["created_at"], "kind": f"email.{email['kind']}",
                      "what": what, "who": "workflow"})  # fmt: skip
    for change in stage_changes:
        what = f"{change['from_stage']} → {change['to_stage']} ({change['reason']})"
        items.append({"at": change["at"], "kind": "stage", "what": what, "who": "workflow"})
    for assigned in assignments:
        what = f"{assigned['team_key']} / {assigned['rep_id']} ({assigned['reason']})"
        items.append({"at": assigned["assigned_at"], "kind": "assignment", "what": what, "who": "workflow"})
    for fu in followups:
        what = f"{fu['kind']} due {fu['due_at']:%Y-%m-%d %H:%M}"
        items.append({"at": fu["started_at"], "kind": "sla.started", "what": what, "who": fu["rep_id"]})
        for field, kind in (("reminded_at", "sla.reminded"), ("escalated_at", "sla.escalated"), ("met_at", "sla.met")):
            if fu.get(field):
                items.append({"at": fu[field], "kind": kind, "what": fu["kind"], "who": fu["rep_id"]})
    recorded = {point["type"] for point in touchpoints}
    if lead is not None and lead.get("won_at") and "sales.won" not in recorded:
        amount = f"{lead.get('won_amount') or ''} {lead.get('won_currency') or ''}".strip()
        items.append({"at": lead["won_at"], "kind": "outcome.won", "what": amount, "who": lead.get("owner_rep_id")})
    if lead is not None and lead.get("lost_reason") and "sales.lost" not in recorded:
        items.append({"at": lead["updated_at"], "kind": "outcome.lost", "what": lead["lost_reason"], "who": None})
    return sorted(items, key=lambda item: item["at"], reverse=True)


def sales_summary(props: dict[str, Any]) -> str:
    """A sales change in one line: its reason and note, the stage, the deal, the new owner."""
    deal = " ".join(str(props[k]) for k in ("amount", "currency") if props.get(k))
    parts = [props.get("reason"), props.get("stage"), deal, props.get("product"), props.get("close_date"),
             props.get("rep_id") or props.get("team"), props.get("note")]  # fmt: skip
    return " · ".join(str(part) for part in parts if part)


@router.get("/leads/{lead_id}", dependencies=[Depends(lead_in_scope)])
async def lead_page(
    request: Request,
    lead_id: Annotated[str, Path(pattern=LEAD_ID_PATTERN)],
    state: State,
    session: Session,
    caller: Caller,
) -> Response:
    lead = await repo.get_lead(session, lead_id)
    touchpoints = await repo.list_touchpoints(session, lead_id, limit=500)
    if lead is None and not touchpoints:
        return page_error(request, 404, f"no lead {lead_id} in the store yet: search by email or company on /leads")
    emails = await repo.list_emails(session, lead_id=lead_id, limit=200)
    score_changes = await repo.list_score_changes(session, lead_id)
    events = {t["event_id"]: t for t in touchpoints}
    context = {
        "lead_id": lead_id,
        "lead": lead,
        "live": await live_view(state, lead_id),
        "score_changes": [{**c, "event": events.get(c.get("event_id") or "")} for c in reversed(score_changes)],
        "timeline": timeline(
            lead,
            touchpoints,
            emails,
            await repo.list_stage_changes(session, lead_id),
            await pages.lead_assignments(session, lead_id),
            await pages.lead_followups(session, lead_id),
        ),
        "feedback": await email_feedback.list_feedback(session, lead_id),
        "can_touch": caller.role in (Role.rep, Role.manager, Role.admin),
        "touch_kinds": TOUCH_KINDS,
        "reject_reasons": (await state.current_playbook()).compiled.model.sales.reject_reasons,
    }
    return render(request, "lead.html", context)
