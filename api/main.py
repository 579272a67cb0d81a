"""The FastAPI application: thin routers over Temporal and the store."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import Response

from activities.email import Mailer
from activities.rendering import EmailRenderer
from api import errors
from api.audit import AuditMiddleware
from api.auth import ApiKeyMiddleware
from api.deps import AppState
from api.limits import BodyLimitMiddleware
from api.roles import EnforceRoles, LoginRequired, document_roles
from api.routers import (
    access_admin,
    audit_log,
    costs,
    dashboard,
    email_events,
    email_report,
    events,
    exports,
    followups,
    forms,
    health,
    imports,
    ingest_admin,
    lead_merge,
    lead_sales,
    leads,
    login,
    me,
    pages_kpi,
    pages_lead,
    pages_queue,
    pages_workspace,
    playbook_migrations,
    playbooks,
    reports,
    sal_links,
    segment,
    suppressions,
    teams,
    templates,
    tracking,
    unsubscribe,
    webhooks,
)
from jobs.scheduler import build_scheduler
from observability import endpoints
from observability.http import ObservabilityMiddleware
from observability.logging import configure_logging
from observability.tracing import instrument_api
from runtime import load_active_playbook
from settings import Settings, get_settings
from store.db import make_engine, make_sessionmaker


def create_app(settings: Settings | None = None, *, own_logging: bool = False) -> FastAPI:
    """``own_logging``: the served process configures logging (tests and embedders keep theirs)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        s = settings or get_settings()
        if own_logging:
            configure_logging("api", s.log_format, s.log_level)
        engine = make_engine(s.resolved_database_url())
        app.state.leadflow = state = AppState(
            settings=s,
            engine=engine,
            sessions=make_sessionmaker(engine),
            playbook=load_active_playbook(s),
            api_key=s.secret("api_key"),
            id_key=s.secret("id_key"),
            unsubscribe_keys=s.unsubscribe_keys(),
        )
        scheduler = None
        if s.scheduler_enabled:
            scheduler = build_scheduler(s, Mailer(s, state.sessions, EmailRenderer(s.templates_dir, s.default_locale)))
            scheduler.start()
        yield
        if scheduler is not None:
            scheduler.shutdown(wait=False)
        await engine.dispose()

    app = FastAPI(
        title="leadflow",
        version="0.1.0",
        description="Lead-management automation: every lead is a durable Temporal workflow.",
        lifespan=lifespan,
        # Every route's declared roles are checked here (api/roles.py); undeclared routes admit only admin.
        dependencies=[EnforceRoles],
    )
    # The last added runs first: the key is checked before the body is read, the size before it is parsed.
    app.add_middleware(BodyLimitMiddleware)
    app.add_middleware(ApiKeyMiddleware)
    app.add_middleware(AuditMiddleware)  # outside the key check: it reads who the key check found
    app.add_middleware(ObservabilityMiddleware)  # outermost: it also times and counts the 401s
    errors.install(app)

    async def _to_login(request: Request, exc: Exception) -> Response:
        return login.login_redirect(request, exc)  # type: ignore[arg-type]

    app.add_exception_handler(LoginRequired, _to_login)
    for module in (
        health,
        leads,
        lead_merge,
        lead_sales,
        events,
        imports,
        followups,
        teams,
        playbooks,
        playbook_migrations,
        templates,
        suppressions,
        costs,
        reports,
        dashboard,
        unsubscribe,
        sal_links,
        tracking,
        email_report,
        email_events,
        login,
        access_admin,
        audit_log,
        exports,
        me,
        pages_queue,
        pages_lead,
        pages_kpi,
        pages_workspace,
    ):
        app.include_router(module.router)
    if (settings or get_settings()).api_metrics:
        app.include_router(endpoints.router)
    instrument_api(app, settings or get_settings())
    document_roles(app)
    for door in (segment, forms, webhooks, ingest_admin):  # tracking, forms, webhooks and their admin
        app.include_router(door.router)
    return app


app = create_app(own_logging=True)
