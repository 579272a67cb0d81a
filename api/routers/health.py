"""Liveness and readiness."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from api.deps import State
from store import repo

router = APIRouter(tags=["health"])


@router.get("/health/live")
async def live() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/health/ready")
async def ready(state: State) -> JSONResponse:
    checks: dict[str, Any] = {}
    try:
        async with state.sessions() as session:
            await asyncio.wait_for(repo.ping(session), 5)
        checks["database"] = "ok"
    except Exception as exc:  # readiness reports any failure as not ready
        checks["database"] = f"unavailable: {type(exc).__name__}"
    try:
        client = await state.temporal()
        await asyncio.wait_for(client.service_client.check_health(), 5)
        checks["temporal"] = "ok"
    except Exception as exc:  # idem
        checks["temporal"] = f"unavailable: {type(exc).__name__}"
    ok = all(v == "ok" for v in checks.values())
    body = {"status": "ok" if ok else "unavailable", "checks": checks, "playbook": state.playbook.bundle.version}
    return JSONResponse(body, status_code=200 if ok else 503)
