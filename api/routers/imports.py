"""CSV imports over HTTP: the upload is streamed to a file (never held in memory), then imported in the
background; progress, counts and the report of rejected and merged rows are read back by import id."""

from __future__ import annotations

import asyncio
import csv
import io
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request, status
from fastapi import Path as PathParam
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from api.deps import AppState, Session, State
from api.errors import V1_ERRORS, documented
from api.identity import current_leads
from api.intake import lead_start
from api.roles import allow
from capture.csv_source import CsvError, CsvRows
from capture.delivery import LeadDelivery
from capture.importer import Importer, ImportOptions, import_id_for
from rules.access import Role
from rules.cleaning import CleaningError, country_code
from rules.import_rows import map_columns
from store import imports

MAX_UPLOAD_BYTES = 512 * 1024 * 1024
DELIVERY_CONCURRENCY = 8
REPORT_PAGE = 1000
router = APIRouter(prefix="/v1/imports", tags=["imports"], dependencies=[allow(Role.marketer)], responses=V1_ERRORS)
ImportId = Annotated[str, PathParam(pattern=r"^imp-[0-9a-f]{24}$", description="as returned by POST /v1/imports")]
# Imports this process is running, so a resume request never starts a second runner beside the first.
_running: dict[str, asyncio.Task[Any]] = {}


class ImportAccepted(BaseModel):
    import_id: str
    status: str
    status_url: str
    report_url: str


def _importer(state: AppState) -> Importer:
    delivery = LeadDelivery(
        state.temporal_call, lambda lead_id: lead_start(state, lead_id), state.settings.task_queue,
        DELIVERY_CONCURRENCY, resolve=lambda lead_ids: current_leads(state, lead_ids),
    )  # fmt: skip
    return Importer(state.sessions, delivery, state.id_key, smtp_utf8=state.settings.smtp_utf8)


def _start(state: AppState, import_id: str) -> None:
    task = _running.get(import_id)
    if task is None or task.done():
        task = asyncio.create_task(_importer(state).run(import_id), name=f"import {import_id}")
        _running[import_id] = task
        task.add_done_callback(lambda _: _running.pop(import_id, None))


def _column_map(pairs: list[str]) -> dict[str, str]:
    mapping: dict[str, str] = {}
    for pair in pairs:
        column, sep, field = pair.rpartition("=")
        if not sep or not column.strip() or not field.strip():
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, f"map={pair!r}: write it as 'column=field'")
        mapping[column.strip()] = field.strip()
    return mapping


async def _spool(request: Request, directory: Path) -> Path:
    """The request body, written to a file as it arrives."""
    await asyncio.to_thread(directory.mkdir, parents=True, exist_ok=True)
    part = directory / f"upload-{uuid.uuid4().hex}.part"
    size = 0
    file = await asyncio.to_thread(part.open, "wb")
    try:
        async for block in request.stream():
            size += len(block)
            if size > MAX_UPLOAD_BYTES:
                raise HTTPException(
                    status.HTTP_413_CONTENT_TOO_LARGE, f"an import is at most {MAX_UPLOAD_BYTES} bytes: split the file"
                )
            file.write(block)
    except BaseException:
        file.close()
        part.unlink(missing_ok=True)
        raise
    file.close()
    if size == 0:
        part.unlink(missing_ok=True)
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "the body is empty: send the CSV file as the body")
    return part


def _check_columns(path: Path, column_map: dict[str, str]) -> None:
    rows = CsvRows(path)
    try:
        map_columns(rows.headers, column_map)
    finally:
        rows.close()


@router.post("", status_code=status.HTTP_202_ACCEPTED, response_model=ImportAccepted, responses=documented(413))
async def start_import(
    request: Request,
    state: State,
    filename: Annotated[str, Query(max_length=200, description="the file's name; the default source")] = "upload.csv",
    source: Annotated[str | None, Query(max_length=200, description="lead source; default the file name")] = None,
    consent_basis: Annotated[
        str | None,
        Query(max_length=200, description="e.g. consent, legitimate_interest; the wording kept with a consent column"),
    ] = None,
    country: Annotated[str | None, Query(max_length=60, description="country for phone numbers without one")] = None,
    map: Annotated[list[str] | None, Query(description="'column=field', repeatable: overrides header names")] = None,
) -> ImportAccepted:
    """Import a CSV file sent as the body (`Content-Type: text/csv`). The same file with the same options is
    the same import: posting it again resumes it (or answers with the finished one)."""
    try:
        default_country = country_code(country) if country else None
    except CleaningError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from None
    options = ImportOptions(source or filename, consent_basis, default_country, _column_map(map or []))
    directory = state.settings.data_dir / "imports"
    part = await _spool(request, directory)
    try:
        await asyncio.to_thread(_check_columns, part, options.column_map)
        import_id = await asyncio.to_thread(import_id_for, part, options)
    except (CsvError, CleaningError) as exc:
        part.unlink(missing_ok=True)
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from None
    path = directory / f"{import_id}.csv"
    if path.exists():
        part.unlink()
    else:
        part.rename(path)
    job = await _importer(state).prepare(path, filename, options, import_id)
    if job["status"] != "done":
        _start(state, import_id)
    return ImportAccepted(
        import_id=import_id,
        status=job["status"],
        status_url=f"/v1/imports/{import_id}",
        report_url=f"/v1/imports/{import_id}/report.csv",
    )


@router.get("/{import_id}", responses=documented(404))
async def get_import(import_id: ImportId, session: Session) -> dict[str, Any]:
    """Progress and counts: rows read, leads created, merged (duplicate in the file / existing lead), rejected."""
    job = await imports.get_import(session, import_id)
    if job is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no import {import_id}")
    job.pop("file_path")
    job["progress"] = 1.0 if job["status"] == "done" else round(job["bytes_done"] / max(job["bytes_total"], 1), 4)
    job["report_url"] = f"/v1/imports/{import_id}/report.csv"
    return job


@router.post(
    "/{import_id}/resume",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=ImportAccepted,
    responses=documented(404),
)
async def resume_import(import_id: ImportId, state: State, session: Session) -> ImportAccepted:
    """Continue an interrupted or failed import after its last finished chunk."""
    job = await imports.get_import(session, import_id)
    if job is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no import {import_id}")
    if job["status"] != "done":
        _start(state, import_id)
    return ImportAccepted(
        import_id=import_id,
        status="running" if job["status"] != "done" else "done",
        status_url=f"/v1/imports/{import_id}",
        report_url=f"/v1/imports/{import_id}/report.csv",
    )


@router.get("/{import_id}/report.csv", response_class=StreamingResponse, responses=documented(404))
async def import_report(import_id: ImportId, state: State, session: Session) -> StreamingResponse:
    """Every rejected, merged or corrected row: line, outcome, reason, email, lead id (CSV, streamed)."""
    if await imports.get_import(session, import_id) is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no import {import_id}")

    async def lines() -> AsyncIterator[str]:
        yield "line,outcome,reason,email,lead_id\r\n"
        after = 0
        while True:
            async with state.sessions() as page_session:
                page = await imports.list_issues(page_session, import_id, after_line=after, limit=REPORT_PAGE)
            if not page:
                return
            out = io.StringIO()
            writer = csv.writer(out)
            for issue in page:
                writer.writerow([issue["line"], issue["outcome"], issue["reason"], issue["email"] or "",
                                 issue["lead_id"] or ""])  # fmt: skip
            yield out.getvalue()
            after = page[-1]["line"]

    return StreamingResponse(
        lines(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{import_id}-report.csv"'},
    )
