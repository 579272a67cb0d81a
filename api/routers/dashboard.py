"""The managers' dashboard: server-rendered HTML (templates/dashboard/), behind the API key as the
HTTP Basic password so a browser can open it."""

from __future__ import annotations

import hmac
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request, status
from fastapi.responses import HTMLResponse
from fastapi.security import HTTPBasic, HTTPBasicCredentials
from fastapi.templating import Jinja2Templates

from api.deps import Session, State
from settings import ROOT
from store import repo, reports

router = APIRouter(tags=["dashboard"], include_in_schema=False)
templates = Jinja2Templates(directory=ROOT / "templates" / "dashboard")


def when(value: datetime | str | None) -> str:
    """A time as managers read it: to the minute, in UTC."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return str(value)
    if value is None:
        return ""
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


templates.env.filters["when"] = when
_basic = HTTPBasic(realm="leadflow", auto_error=False)


def require_browser_key(state: State, credentials: Annotated[HTTPBasicCredentials | None, Depends(_basic)]) -> None:
    if credentials is None or not hmac.compare_digest(credentials.password.encode(), state.api_key.encode()):
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "sign in with any user name and the API key as password",
            headers={"WWW-Authenticate": 'Basic realm="leadflow"'},
        )


@router.get("/dashboard", response_class=HTMLResponse, dependencies=[Depends(require_browser_key)])
async def dashboard(request: Request, state: State, session: Session) -> HTMLResponse:
    playbook = await state.current_playbook()
    order, routed_at = playbook.compiled.stage_order, playbook.compiled.model.routing.at_stage
    context = {
        "funnel": await reports.funnel(session),
        "stages": playbook.compiled.stage_order + list(playbook.compiled.model.stages.side),
        # "Qualified" is the playbook's routing stage and every stage after it (SQL onwards by default).
        "sources": await reports.sources(session, order[order.index(routed_at) :] if routed_at in order else []),
        "qualified_from": routed_at,
        "counts": await reports.followup_counts(session),
        "overdue": await repo.list_followups(session, status="overdue", limit=50, offset=0),
        "pending": await repo.list_followups(session, status="pending", limit=50, offset=0),
        "emails": await repo.list_emails(session, limit=20),
        "failed_emails": await repo.list_emails(session, status="failed", limit=20),
        "playbook": playbook.bundle.version,
    }
    return templates.TemplateResponse(request, "index.html", context)
