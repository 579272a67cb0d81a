"""The managers' dashboard: server-rendered HTML (templates/dashboard/), for signed-in managers and
marketers (/login), or any user name with an API key as the HTTP Basic password (scripts). A manager sees
the follow-ups and mail of their teams' leads only (api/lead_scope.py), as on every other route."""

from __future__ import annotations

from functools import partial

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from api import page_kit
from api.deps import Caller, Session, State
from api.lead_scope import store_scope
from api.roles import allow, csrf_token
from rules.access import Role
from settings import ROOT
from store import exports, repo, reports

router = APIRouter(tags=["dashboard"], include_in_schema=False, dependencies=[allow(Role.manager, Role.marketer)])
templates = Jinja2Templates(directory=ROOT / "templates" / "dashboard")


templates.env.filters["when"] = partial(page_kit.when, suffix=" UTC")
# Every page's forms carry the session's CSRF token: {{ csrf_token(request) }} (api/roles.py checks it).
templates.env.globals["csrf_token"] = csrf_token


@router.get("/dashboard", response_class=HTMLResponse)
async def dashboard(request: Request, state: State, session: Session, caller: Caller) -> HTMLResponse:
    scope = store_scope(caller)
    playbook = await state.current_playbook()
    order, routed_at = playbook.compiled.stage_order, playbook.compiled.model.routing.at_stage
    context = {
        # Funnel and sources are counts over every lead (no person in them); the lists below are scoped.
        "funnel": await reports.funnel(session),
        "stages": playbook.compiled.stage_order + list(playbook.compiled.model.stages.side),
        # "Qualified" is the playbook's routing stage and every stage after it (SQL onwards by default).
        "sources": await reports.sources(session, order[order.index(routed_at) :] if routed_at in order else []),
        "qualified_from": routed_at,
        "counts": {s: await exports.count_followups(session, scope, s) for s in ("pending", "overdue", "met")},
        "overdue": await repo.list_followups(session, status="overdue", limit=50, offset=0, scope=scope),
        "pending": await repo.list_followups(session, status="pending", limit=50, offset=0, scope=scope),
        "emails": await repo.list_emails(session, limit=20, teams=scope.teams),
        "failed_emails": await repo.list_emails(session, status="failed", limit=20, teams=scope.teams),
        "playbook": playbook.bundle.version,
    }
    return templates.TemplateResponse(request, "index.html", context)
