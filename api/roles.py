"""Every route declares who may call it, in one line; a route that declares nothing is denied.

    router = APIRouter(prefix="/v1/things", dependencies=[allow(Role.marketer)])   # the router's default
    @router.post("/{id}:do", dependencies=[allow(Role.rep, Role.manager)])         # a route overrides it
    @router.post("/v1/forms/{id}", dependencies=[public("the form's own config")]) # checks its own credential

Admin may call every declared route. The declaration nearest the route wins (route over router), so a
router's default never widens or narrows a route that says otherwise. ``enforce_declared_roles`` (installed
once on the app) does the checking: 401 without a key or login, 403 naming the roles needed, and for a
route with no declaration 403 to all but admin (tests/test_roles.py fails on any such route).
"""

from __future__ import annotations

import hmac
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import parse_qsl

from fastapi import Depends, HTTPException, Request, status
from fastapi.params import Depends as DependsParam
from fastapi.routing import APIRoute, iter_route_contexts
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from rules.access import Principal, Role, allowed, denial

PRINCIPAL = "leadflow.principal"
CSRF = "leadflow.csrf"
# Set when the caller came with HTTP Basic credentials (an API key as the password of a page).
BASIC = "leadflow.basic"
REFUSAL = "leadflow.refusal"
CSRF_FIELD = "csrf_token"
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


# Shown in the OpenAPI spec as the ways to send a key (the middleware in api/auth.py reads them).
_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="an API key (its role decides the routes)")
_bearer = HTTPBearer(auto_error=False)


@dataclass(frozen=True)
class RoleDeclaration:
    """The roles a route admits (admin always), or ``public``: the route checks its own credential."""

    roles: frozenset[Role]
    public: bool = False
    why_public: str = ""


# Both declarations are coroutines: FastAPI runs a plain callable in its thread pool, a thread hop (two, with the
# router's own declaration) on every request for a call that does nothing.
@dataclass(frozen=True)
class Restricted(RoleDeclaration):
    async def __call__(
        self,
        key: Annotated[str | None, Depends(_key_header)],
        bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> None:
        """Nothing to do when called: ``enforce_declared_roles`` reads the declaration off the route."""


@dataclass(frozen=True)
class Public(RoleDeclaration):
    async def __call__(self) -> None:
        """Nothing to check here: the route checks its own credential, if any."""


def allow(*roles: Role) -> Any:
    """``dependencies=[allow(Role.rep, Role.manager)]``: these roles (and admin) may call the route."""
    if not roles:
        raise ValueError("allow() needs at least one role; admin-only routes say allow(Role.admin)")
    return Depends(Restricted(frozenset(roles)))


def public(why: str) -> Any:
    """``dependencies=[public("signed token")]``: no key or login; the route checks its own credential."""
    return Depends(Public(frozenset(), public=True, why_public=why))


def declaration_of(route: Any) -> RoleDeclaration | None:
    """The declaration nearest the route (its own, else its router's), or None."""
    found = None
    for dependency in getattr(route, "dependencies", ()):
        if isinstance(dependency, DependsParam) and isinstance(dependency.dependency, RoleDeclaration):
            found = dependency.dependency
    return found


class LoginRequired(Exception):
    """A page was opened without a session: the browser goes to the login page (api/routers/login.py)."""


def principal_of(request: Request) -> Principal | None:
    return request.scope.get(PRINCIPAL)


def is_page(path: str) -> bool:
    return not path.startswith("/v1/")


async def enforce_declared_roles(request: Request) -> None:
    declaration = declaration_of(request.scope.get("route"))
    if declaration is not None and declaration.public:
        return
    principal = principal_of(request)
    if principal is None:
        if is_page(request.url.path) and request.method == "GET" and "text/html" in request.headers.get("accept", ""):
            raise LoginRequired  # a browser: to the login page
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            request.scope.get(REFUSAL) or "send the API key in the X-API-Key header, or sign in",
            headers={"WWW-Authenticate": "Bearer" if not is_page(request.url.path) else 'Basic realm="leadflow"'},
        )
    # Any caller that came with the session cookie (a user, or an API key signed in on /login): the browser
    # sends that cookie with a forged cross-site form as readily as with leadflow's own.
    from_session = principal.kind == "user" or CSRF in request.scope
    if from_session and is_page(request.url.path) and request.method in UNSAFE_METHODS:
        await _check_page_csrf(request)
    if BASIC in request.scope and is_page(request.url.path) and request.method in UNSAFE_METHODS:
        # A browser resends Basic credentials by itself, on a forged cross-site form too, and they carry no
        # CSRF token: Basic opens pages to read; acting on them takes a signed-in session.
        raise HTTPException(
            status.HTTP_403_FORBIDDEN, "sign in at /login to change anything from the pages (Basic is for reading)"
        )
    roles = declaration.roles if declaration is not None else frozenset()
    if not allowed(principal, roles):
        detail = denial(roles) if declaration is not None else "this route declares no role: only admin may call it"
        raise HTTPException(status.HTTP_403_FORBIDDEN, f"{detail} (yours: {principal.role.value})")


async def _check_page_csrf(request: Request) -> None:
    """A page's form posts with the session cookie must carry the session's CSRF token (a hidden field
    ``csrf_token``, or the X-CSRF-Token header for scripts on the page)."""
    expected = request.scope.get(CSRF, "")
    given = request.headers.get("x-csrf-token")
    if given is None:
        given = (await page_form(request)).get(CSRF_FIELD)
    if not expected or not given or not hmac.compare_digest(given.encode(), expected.encode()):
        raise HTTPException(
            status.HTTP_403_FORBIDDEN, "the form's CSRF token is missing or stale: reload the page and send it again"
        )


async def page_form(request: Request) -> dict[str, str]:
    """A page's urlencoded form post (the body is cached on the request: the route can read it again).
    Multipart is not parsed (no python-multipart here): such forms send the X-CSRF-Token header."""
    if not request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        return {}
    return dict(parse_qsl((await request.body()).decode("utf-8", "replace"), keep_blank_values=True))


def csrf_token(request: Request) -> str:
    """The session's CSRF token, for a page's forms: ``<input type=hidden name=csrf_token value=...>``."""
    return request.scope.get(CSRF, "")


def current_principal(request: Request) -> Principal:
    """The caller of a route that declared its roles (always set there: the check ran first)."""
    principal = principal_of(request)
    if principal is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "send the API key in the X-API-Key header, or sign in")
    return principal


EnforceRoles = Depends(enforce_declared_roles)


def declared_routes(app: Any) -> Iterator[tuple[str, str, RoleDeclaration | None]]:
    """(method, path template, declaration) for every API route of the app, in the schema or not."""
    for context in iter_route_contexts(app.routes):
        route = context.original_route
        if isinstance(route, APIRoute):
            for method in sorted(route.methods or ()):
                # path_format: the template as the spec shows it ("{lead_id:lead_segment}" is "{lead_id}").
                yield method, route.path_format, declaration_of(route)


def document_roles(app: Any) -> None:
    """The spec says who may call each operation (``x-leadflow-roles``, and in its description) and
    documents the 403 a caller with another role gets."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = build()
        for method, path, declaration in declared_routes(app):
            operation = schema.get("paths", {}).get(path, {}).get(method.lower())
            if operation is None or declaration is None:
                continue
            if declaration.public:
                operation["x-leadflow-roles"] = ["public"]
                continue
            roles = sorted({*declaration.roles, Role.admin}, key=list(Role).index)
            operation["x-leadflow-roles"] = [r.value for r in roles]
            note = f"Roles: {', '.join(r.value for r in roles)}."
            operation["description"] = f"{operation.get('description', '')}\n\n{note}".strip()
            operation.setdefault("responses", {}).setdefault(
                "403",
                {
                    "description": "the key's or login's role may not call this (or the lead is not in its scope)",
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorOut"}}},
                },
            )
        app.openapi_schema = schema
        return schema

    app.openapi = openapi
