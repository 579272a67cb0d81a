"""Error answers: every failure a client can cause or meet is a 4xx/503 with a message, never a bare 500."""

from __future__ import annotations

import logging
import re
from typing import Any

from fastapi import FastAPI, HTTPException, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy.exc import OperationalError
from temporalio.service import RPCError, RPCStatusCode

from api.deps import Overloaded, ServiceUnavailable
from api.limits import MAX_BODY_BYTES
from privacy.keys import LeadErased

log = logging.getLogger("leadflow.api")
RETRY_AFTER = {"Retry-After": "2"}


class FieldError(BaseModel):
    field: str = Field(description="dotted path of the field in the request, e.g. events.0.at")
    message: str
    type: str


class PlaybookIssue(BaseModel):
    line: int | None
    path: str
    message: str


class UnmappedStep(BaseModel):
    from_version: str = Field(description="the playbook version leads run now")
    journey: str
    step: str = Field(description='a step leads can wait at that the target lacks: map "journey/step" in step_map')


class ErrorOut(BaseModel):
    """Every error answer: ``detail`` says what went wrong and what to fix; some carry the particulars."""

    detail: str
    errors: list[FieldError] | None = Field(default=None, description="422 on a malformed request: each field")
    issues: list[PlaybookIssue] | None = Field(default=None, description="422 on a bad playbook: each problem")
    unmapped_steps: list[UnmappedStep] | None = Field(
        default=None, description="422 on a playbook migration: journey steps that need a step map entry"
    )


class ApiError(HTTPException):
    """An HTTP error whose body carries particulars beside ``detail`` (ErrorOut's other fields)."""

    def __init__(self, status_code: int, detail: str, **particulars: Any) -> None:
        super().__init__(status_code, detail)
        self.particulars = particulars


WHY = {
    400: "the body is not JSON text, or Temporal refused the request as invalid",
    401: "no API key, or not a valid one",
    404: "no such resource",
    409: "the request conflicts with the resource's state (e.g. a lead merged or being merged): `detail` says why",
    410: "the lead was erased: the address is suppressed and the lead cannot be recreated",
    413: f"the body is larger than {MAX_BODY_BYTES} bytes, or too large for one Temporal signal",
    422: "a field is malformed or out of range: `detail` and `errors` name it",
    429: "Temporal is rate limiting: retry after `Retry-After` seconds",
    503: "Temporal or the database cannot be reached (retry after `Retry-After` seconds when present)",
}


def documented(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for these error statuses, all with the one error body."""
    return {code: {"model": ErrorOut, "description": WHY[code]} for code in codes}


# Every /v1 route: the key, a malformed path or query, and a store or Temporal that may be down.
V1_ERRORS = documented(401, 422, 503)
BODY_ERRORS = documented(400, 413)
TEMPORAL_ERRORS = documented(404, 410, 429)


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


# Temporal answers that may go away on their own; anything else is told not to retry (no Retry-After).
TRANSIENT = {
    RPCStatusCode.UNAVAILABLE,
    RPCStatusCode.DEADLINE_EXCEEDED,
    RPCStatusCode.ABORTED,
    RPCStatusCode.CANCELLED,
    RPCStatusCode.UNKNOWN,
    RPCStatusCode.INTERNAL,
}
TOO_LARGE_MARKERS = ("size exceeds limit", "larger than max", "message too large")


def rpc_answer(exc: RPCError) -> JSONResponse:
    """Temporal's refusal as an HTTP answer. Retry-After only where a retry can succeed."""
    if exc.status == RPCStatusCode.NOT_FOUND:
        return JSONResponse({"detail": "no such lead"}, status_code=status.HTTP_404_NOT_FOUND)
    if any(marker in exc.message.lower() for marker in TOO_LARGE_MARKERS):
        return JSONResponse(
            {"detail": f"the request is too large for one Temporal signal ({exc.message}): send less per request"},
            status_code=status.HTTP_413_CONTENT_TOO_LARGE,
        )
    if exc.status == RPCStatusCode.RESOURCE_EXHAUSTED:
        return JSONResponse(
            {"detail": "too many requests, retry shortly"},
            status_code=status.HTTP_429_TOO_MANY_REQUESTS,
            headers=RETRY_AFTER,
        )
    if exc.status == RPCStatusCode.INVALID_ARGUMENT:
        return JSONResponse(
            {"detail": f"Temporal refused the request as invalid: {exc.message}"},
            status_code=status.HTTP_400_BAD_REQUEST,
        )
    log.warning("Temporal refused a call: %s %s", exc.status.name if exc.status else "?", exc.message)
    if exc.status in TRANSIENT:
        return JSONResponse(
            {"detail": f"a backing service is unavailable, retry shortly ({type(exc).__name__})"},
            status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
            headers=RETRY_AFTER,
        )
    # Permissions, namespace, configuration: retrying will not help until an operator acts.
    return JSONResponse(
        {"detail": f"Temporal refused the request ({exc.status.name if exc.status else 'unknown'}): {exc.message}"},
        status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
    )


async def _rpc(_: Request, exc: RPCError) -> JSONResponse:
    return rpc_answer(exc)


async def _erased(_: Request, exc: LeadErased) -> JSONResponse:
    # The codec refuses to seal anything for an erased lead: a new post for that person ends here.
    return JSONResponse(
        {"detail": f"{exc}; the address is suppressed and this lead cannot be recreated"},
        status_code=status.HTTP_410_GONE,
    )


async def _method_not_allowed(request: Request, exc: HTTPException) -> JSONResponse:
    # Starlette names only the methods of the first route that matched the path; several routes may share
    # it (GET and POST /v1/playbooks), and Allow must list them all: the spec knows every route. A parameter
    # never holds a colon: "/v1/leads/{id}" is not "/v1/leads/{id}:merge" (api/lead_ids.py, LEAD_SEGMENT).
    allowed = sorted(
        method.upper()
        for path, ops in request.app.openapi()["paths"].items()
        if re.fullmatch(re.sub(r"\\{[^}]+\\}", "[^/:]+", re.escape(path)), request.url.path)
        for method in ops
    )
    return JSONResponse(
        {"detail": f"{request.method} is not allowed here"},
        status_code=status.HTTP_405_METHOD_NOT_ALLOWED,
        headers={"Allow": ", ".join(allowed)} if allowed else exc.headers,
    )


async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
    return JSONResponse({"detail": exc.detail, **exc.particulars}, status_code=exc.status_code, headers=exc.headers)


def install(app: FastAPI) -> None:
    app.add_exception_handler(ApiError, _api_error)  # type: ignore[arg-type]
    app.add_exception_handler(status.HTTP_405_METHOD_NOT_ALLOWED, _method_not_allowed)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _validation)  # type: ignore[arg-type]
    app.add_exception_handler(Overloaded, _overloaded)
    app.add_exception_handler(ServiceUnavailable, _unavailable)
    app.add_exception_handler(OperationalError, _unavailable)
    app.add_exception_handler(RPCError, _rpc)  # type: ignore[arg-type]
    app.add_exception_handler(LeadErased, _erased)  # type: ignore[arg-type]
