"""Error answers: every failure a client can cause or meet is a 4xx/503 with a message, never a bare 500."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import OperationalError
from temporalio.service import RPCError, RPCStatusCode

from api.deps import Overloaded, ServiceUnavailable
from privacy.keys import LeadErased

log = logging.getLogger("leadflow.api")
RETRY_AFTER = {"Retry-After": "2"}


def _field(loc: tuple[object, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path")]
    return ".".join(parts) or "body"


async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
    errors = [{"field": _field(tuple(e["loc"])), "message": e["msg"], "type": e["type"]} for e in exc.errors()]
    summary = "; ".join(f"{e['field']}: {e['message']}" for e in errors[:5])
    return JSONResponse(
        {"detail": f"invalid request: {summary}", "errors": errors}, status_code=status.HTTP_422_UNPROCESSABLE_CONTENT
    )


async def _overloaded(_: Request, exc: Exception) -> JSONResponse:
    return JSONResponse(
        {"detail": f"leadflow is at capacity, retry shortly ({exc})"},
        status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
        headers={"Retry-After": "1"},
    )


async def _unavailable(_: Request, exc: Exception) -> JSONResponse:
    log.warning("dependency unavailable: %s", exc)
    return JSONResponse(
        {"detail": f"a backing service is unavailable, retry shortly ({type(exc).__name__})"},
        status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
        headers=RETRY_AFTER,
    )


async def _rpc(request: Request, exc: RPCError) -> JSONResponse:
    if exc.status == RPCStatusCode.NOT_FOUND:
        return JSONResponse({"detail": "no such lead"}, status_code=status.HTTP_404_NOT_FOUND)
    if exc.status == RPCStatusCode.RESOURCE_EXHAUSTED:
        return JSONResponse(
            {"detail": "too many requests, retry shortly"},
            status_code=status.HTTP_429_TOO_MANY_REQUESTS,
            headers=RETRY_AFTER,
        )
    return await _unavailable(request, exc)


async def _erased(_: Request, exc: LeadErased) -> JSONResponse:
    # The codec refuses to seal anything for an erased lead: a new post for that person ends here.
    return JSONResponse(
        {"detail": f"{exc}; the address is suppressed and this lead cannot be recreated"},
        status_code=status.HTTP_410_GONE,
    )


def install(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _validation)  # type: ignore[arg-type]
    app.add_exception_handler(Overloaded, _overloaded)
    app.add_exception_handler(ServiceUnavailable, _unavailable)
    app.add_exception_handler(OperationalError, _unavailable)
    app.add_exception_handler(RPCError, _rpc)  # type: ignore[arg-type]
    app.add_exception_handler(LeadErased, _erased)  # type: ignore[arg-type]
