"""Liveness and readiness, public for load balancers and orchestrators.

Anyone may learn whether leadflow is alive and ready; only a caller with the API key learns which
backing service is down (and the playbook version), which would otherwise tell a stranger where to push.
"""

from __future__ import annotations

import asyncio
import hmac
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from api.auth import presented_key
from api.deps import State
from api.errors import RETRY_AFTER
from api.roles import public
from store import repo

router = APIRouter(dependencies=[public("health checks are for load balancers")], tags=["health"])
CHECK_TIMEOUT_SECONDS = 5


@router.get("/health/live")
async def live() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/health/ready",
    responses={
        200: {"description": '`{"status": "ok"}`; with the API key also `checks` per service and `playbook`'},
        503: {"description": "not ready (with `Retry-After`); with the API key, `checks` says which service is down"},
    },
)
async def ready(state: State, request: Request) -> JSONResponse:
    checks: dict[str, Any] = {}
    try:
        async with state.sessions() as session:
            await asyncio.wait_for(repo.ping(session), CHECK_TIMEOUT_SECONDS)
        checks["database"] = "ok"
    except Exception as exc:  # readiness reports any failure as not ready
        checks["database"] = f"unavailable: {type(exc).__name__}"
    try:
        client = await state.temporal()
        await asyncio.wait_for(client.service_client.check_health(), CHECK_TIMEOUT_SECONDS)
        checks["temporal"] = "ok"
    except Exception as exc:  # idem
        checks["temporal"] = f"unavailable: {type(exc).__name__}"
    ok = all(v == "ok" for v in checks.values())
    body: dict[str, Any] = {"status": "ok" if ok else "unavailable"}
    given = presented_key(request.headers.raw)
    if given is not None and hmac.compare_digest(given.encode(), state.api_key.encode()):
        body.update(checks=checks, playbook=state.playbook.bundle.version)
    return JSONResponse(body, status_code=200 if ok else 503, headers=None if ok else RETRY_AFTER)
