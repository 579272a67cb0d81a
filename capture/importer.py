"""The CSV import: read a chunk of rows, clean them (rules/), classify each against the file and the store
(new lead, duplicate of an earlier line, existing lead, rejected), deliver one merged upsert per lead, then
record the chunk's report lines, counts and resume point in one transaction.

Resumable by import id: a run stopped anywhere (crash, Ctrl-C, Temporal overloaded) starts again after the
last recorded chunk. A chunk delivered but not recorded is delivered again, which only repeats the same
upserts: lead ids are keyed hashes of the email, so a lead is never doubled.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.lead_ids import lead_id_for
from capture.csv_source import CsvError, CsvRows, file_digest
from capture.delivery import DeliveryStalled, LeadDelivery
from rules.cleaning import CleaningError
from rules.import_rows import CONSENT_FIELD, import_attributes, import_consent, map_columns, row_attributes
from rules.model import ConsentRecord
from store import imports

log = logging.getLogger("leadflow.import")
CHUNK_ROWS = 500
Progress = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class ImportOptions:
    source: str
    consent_basis: str | None = None
    default_country: str | None = None
    column_map: dict[str, str] = field(default_factory=dict)

    def digest_parts(self) -> list[str]:
        return [self.source, self.consent_basis or "", self.default_country or "", json.dumps(self.column_map)]


def import_id_for(path: Path, options: ImportOptions) -> str:
    """The same file imported with the same options is the same import: running it again resumes it."""
    return "imp-" + file_digest(path, *options.digest_parts())[:24]


def _aware(at: datetime) -> datetime:
    """SQLite hands datetimes back without their zone; the store writes UTC."""
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


@dataclass
class RowResult:
    line: int
    email: str | None
    lead_id: str | None = None
    attributes: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    warnings: list[str] = field(default_factory=list)
    # What the row's consent column records (None: no such column, an empty or an unreadable cell).
    consent: ConsentRecord | None = None


class Importer:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        delivery: LeadDelivery,
        id_key: str,
        chunk_rows: int = CHUNK_ROWS,
        *,
        smtp_utf8: bool = False,
    ) -> None:
        self._sessions, self._delivery, self._id_key, self._chunk_rows = sessions, delivery, id_key, chunk_rows
        # LEADFLOW_SMTP_UTF8: whether a Unicode local part can be sent (else such a row is rejected).
        self._smtp_utf8 = smtp_utf8

    async def prepare(self, path: Path, filename: str, options: ImportOptions, import_id: str) -> dict[str, Any]:
        """The import's row, created (pending) unless it exists: the caller then runs or resumes it."""
        async with self._sessions() as session:
            await imports.create_import(
                session,
                {"id": import_id, "filename": filename, "file_path": str(path), "source": options.source,
                 "consent_basis": options.consent_basis, "default_country": options.default_country,
                 "column_map": options.column_map, "bytes_total": (await asyncio.to_thread(path.stat)).st_size},
            )  # fmt: skip
            row = await imports.get_import(session, import_id)
        assert row is not None
        return row

    async def run(self, import_id: str, on_progress: Progress | None = None) -> dict[str, Any]:
        """Run or resume an import to its end; returns its final row (status done, failed or interrupted)."""
        async with self._sessions() as session:
            job = await imports.get_import(session, import_id)
            if job is None:
                raise KeyError(import_id)
            if job["status"] == "done":
                return job
            await imports.set_status(session, import_id, "running")
        try:
            await self._run(job, on_progress)
        except asyncio.CancelledError:
            await asyncio.shield(self._set_status(import_id, "interrupted", "stopped before the end: run it again"))
            raise
        except (CsvError, CleaningError, DeliveryStalled) as exc:
            await self._set_status(import_id, "failed", str(exc))
        except Exception as exc:
            log.exception("import %s failed", import_id)
            await self._set_status(import_id, "failed", f"{type(exc).__name__}: {exc}")
            raise
        else:
            await self._set_status(import_id, "done")
        async with self._sessions() as session:
            final = await imports.get_import(session, import_id)
        assert final is not None
        return final

    async def _set_status(self, import_id: str, status: str, error: str | None = None) -> None:
        async with self._sessions() as session:
            await imports.set_status(session, import_id, status, error)

    async def _run(self, job: dict[str, Any], on_progress: Progress | None) -> None:
        rows = CsvRows(Path(job["file_path"]))
        try:
            mapping = map_columns(rows.headers, job["column_map"])
            cells = iter(rows)
            while True:
                chunk = await asyncio.to_thread(self._clean_chunk, cells, mapping, job)
                if not chunk:
                    return
                await self._import_chunk(job, chunk, rows.bytes_read)
                if on_progress is not None:
                    async with self._sessions() as session:
                        current = await imports.get_import(session, job["id"])
                    if current is not None:
                        on_progress(current)
        finally:
            rows.close()

    def _clean_chunk(
        self, cells: Iterator[tuple[int, list[str]]], mapping: dict[int, str], job: dict[str, Any]
    ) -> list[RowResult]:
        chunk: list[RowResult] = []
        for line, values in cells:
            if line <= job["lines_done"]:
                continue  # done by an earlier run of this import
            fields = {name: values[index] for index, name in mapping.items() if index < len(values)}
            consent, consent_warning = import_consent(
                fields.pop(CONSENT_FIELD, None),
                basis=job["consent_basis"],
                import_id=job["id"],
                at=_aware(job["created_at"]),
            )
            try:
                cleaned = row_attributes(fields, default_country=job["default_country"], smtputf8=self._smtp_utf8)
            except CleaningError as exc:
                chunk.append(RowResult(line, fields.get("email") or None, error=str(exc)))
            else:
                email = cleaned.attributes["email"]
                warnings = cleaned.warnings + ([consent_warning] if consent_warning else [])
                lead_id = lead_id_for(email, self._id_key)
                chunk.append(RowResult(line, email, lead_id, cleaned.attributes, None, warnings, consent))
            if len(chunk) >= self._chunk_rows:
                break
        return chunk

    async def _import_chunk(self, job: dict[str, Any], chunk: list[RowResult], bytes_done: int) -> None:
        import_id = job["id"]
        first_lines: dict[str, int] = {}
        for row in chunk:
            if row.lead_id is not None:
                first_lines.setdefault(row.lead_id, row.line)
        async with self._sessions() as session:
            seen = await imports.first_seen(session, import_id, first_lines)
        outcomes: list[tuple[RowResult, str, str]] = []  # row, counter, report reason ("" when none)
        payload: dict[str, dict[str, Any]] = {}
        consents: dict[str, ConsentRecord] = {}
        for row in chunk:
            if row.lead_id is None:
                outcomes.append((row, "rejected", row.error or "rejected"))
                continue
            first = seen[row.lead_id]
            is_first = first.line == row.line
            attributes = import_attributes(
                row.attributes, source=job["source"], consent_basis=job["consent_basis"], import_id=import_id,
                creates_lead=is_first and not first.existed,
            )  # fmt: skip
            payload[row.lead_id] = payload.get(row.lead_id, {}) | attributes  # later rows win, as in the lead
            if row.consent is not None:
                consents[row.lead_id] = row.consent
            if not is_first:
                outcomes.append((row, "merged_duplicate", f"merged: same email as line {first.line}"))
            elif first.existed:
                outcomes.append((row, "merged_existing", "merged into an existing lead"))
            else:
                outcomes.append((row, "created", ""))
        failures = await self._delivery.deliver(payload, consents)
        counts: Counter[str] = Counter(rows_read=len(chunk))
        issues: list[dict[str, Any]] = []
        for row, counter, reason in outcomes:
            if row.lead_id in failures:
                counter, reason = "rejected", failures[row.lead_id]
            counts[counter] += 1
            counts["warnings"] += bool(row.warnings)
            notes = "; ".join(([reason] if reason else []) + row.warnings)
            if notes:
                outcome = {"created": "cleaned", "rejected": "rejected"}.get(counter, "merged")
                issues.append(
                    {"line": row.line, "outcome": outcome, "reason": notes, "email": row.email, "lead_id": row.lead_id}
                )
        async with self._sessions() as session:
            await imports.finish_chunk(
                session, import_id, lines_done=chunk[-1].line, bytes_done=bytes_done, issues=issues, counts=counts
            )
