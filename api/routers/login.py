"""The pages' login: a user name and password (scrypt-hashed, store/access.py), or no user name and an API
key as the password (the session then has the key's role and scope, and ends when the key is revoked or
expires), opens a session whose cookie
is HttpOnly, SameSite=Lax and (behind HTTPS) Secure; its CSRF token goes into every form of the pages.

The login form itself is protected by a double-submit token (a cookie and a hidden field that must
match), so another site cannot sign a browser in to an account of its choosing.
"""

from __future__ import annotations

import hmac
import secrets
from datetime import timedelta
from urllib.parse import quote

from fastapi import APIRouter, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from api.auth import SESSION_COOKIE, key_principal, session_token
from api.deps import State
from api.roles import PRINCIPAL, LoginRequired, allow, page_form, public
from rules.access import ROLES
from settings import ROOT
from store import access

router = APIRouter(tags=["login"], include_in_schema=False)
templates = Jinja2Templates(directory=ROOT / "templates" / "dashboard")
LOGIN_CSRF_COOKIE = "leadflow_login_csrf"
DEFAULT_PAGE = "/dashboard"


def safe_next(value: str | None) -> str:
    """Only a path on this site: never an open redirect to another one."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return DEFAULT_PAGE
    return value


def _login_page(request: Request, *, error: str | None, next_page: str, status_code: int = 200) -> Response:
    token = secrets.token_urlsafe(24)
    page = templates.TemplateResponse(
        request,
        "login.html",
        {"csrf_token": token, "next": next_page, "error": error},
        status_code=status_code,
    )
    secure = request.app.state.leadflow.settings.secure_cookies
    page.set_cookie(LOGIN_CSRF_COOKIE, token, httponly=True, samesite="lax", secure=secure, path="/login")
    return page


@router.get("/login", response_class=HTMLResponse, dependencies=[public("the login page itself")])
async def login_page(request: Request, next: str | None = None) -> Response:
    return _login_page(request, error=None, next_page=safe_next(next))


@router.post("/login", dependencies=[public("the login checks the password itself")])
async def login(request: Request, state: State) -> Response:
    form = await page_form(request)
    next_page = safe_next(form.get("next"))
    expected, given = request.cookies.get(LOGIN_CSRF_COOKIE, ""), form.get("csrf_token", "")
    if not expected or not hmac.compare_digest(expected.encode(), given.encode()):
        return _login_page(request, error="The form expired: sign in again.", next_page=next_page, status_code=403)
    username, password = form.get("username", "").strip()[:200], form.get("password", "")
    address = request.client.host if request.client else "unknown"
    wait = state.login_throttle.retry_after(username, address)
    if wait:
        page = _login_page(
            request, error=f"Too many failed sign-ins: try again in {wait} s.", next_page=next_page, status_code=429
        )
        page.headers["Retry-After"] = str(wait)
        return page
    async with state.sessions() as session:
        if username:
            principal = await access.check_password(session, username, password)
        else:  # no user name: the password is an API key, and the session has the key's role and scope
            principal = (await key_principal(request.scope, password)).principal if password else None
        if principal is None:
            state.login_throttle.failed(username, address)
            return _login_page(request, error="Wrong user name or password.", next_page=next_page, status_code=401)
        state.login_throttle.succeeded(username, address)
        token, _csrf = await access.open_session(session, principal.id, timedelta(hours=state.settings.session_hours))
    # The audit log records who signed in (api/audit.py reads the principal from the scope).
    request.scope[PRINCIPAL] = principal
    answer = RedirectResponse(next_page, status_code=status.HTTP_303_SEE_OTHER)
    answer.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=int(state.settings.session_hours * 3600),
        httponly=True,
        samesite="lax",
        secure=state.settings.secure_cookies,
        path="/",
    )
    answer.delete_cookie(LOGIN_CSRF_COOKIE, path="/login")
    return answer


@router.post("/logout", dependencies=[allow(*ROLES)])
async def logout(request: Request, state: State) -> Response:
    """Ends the session (the CSRF check ran first: another site cannot sign people out)."""
    token = session_token(request.scope["headers"])
    if token is not None:
        async with state.sessions() as session:
            await access.close_session(session, token)
    answer = RedirectResponse("/login", status_code=status.HTTP_303_SEE_OTHER)
    answer.delete_cookie(SESSION_COOKIE, path="/")
    return answer


def login_redirect(request: Request, _: LoginRequired) -> Response:
    """A page opened without a session: to the login page, and back after it."""
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/login?next={quote(target, safe='/')}", status_code=status.HTTP_303_SEE_OTHER)
