"""Log setup for the API and the worker: text for a terminal, JSON for production, personal data never.

Every handler gets a filter that rewrites each record before any formatter sees it: email addresses are
masked wherever they appear (message, arguments, traceback, extras), and the values of known personal
fields (name, phone, ...) are masked both as extras and in reprs such as ``to_name='Jane Doe'``. The
filter sits on the handlers, not on a logger, so records from every library (uvicorn, the Temporal SDK,
SQLAlchemy) pass through it.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

from observability import logcontext

REDACTED = "[redacted]"
# Deliberately broad: a false positive costs a log detail, a false negative leaks an address.
EMAIL = re.compile(r"[^\s<>()\[\]{}'\",;:]+@[^\s<>()\[\]{}'\",;:]+\.[^\s<>()\[\]{}'\",;:]+")
PERSONAL_FIELDS = (
    "email",
    "name",
    "first_name",
    "last_name",
    "full_name",
    "to_name",
    "rep_name",
    "manager_name",
    "phone",
    "title",
    "company",
    "to",
    "to_addr",
    "address",
)
# name='Jane Doe' / "name": "Jane Doe" / name=Jane (up to a separator) in reprs and query strings.
_FIELD_NAMES = "|".join(sorted(PERSONAL_FIELDS, key=len, reverse=True))
PERSONAL_VALUE = re.compile(
    rf"""(?P<key>\b(?:{_FIELD_NAMES})['"]?\s*[:=]\s*)(?:(?P<q>['"])(?:(?!(?P=q)).)*(?P=q)|[^\s&,)}}\]]+)"""
)
# Attributes every LogRecord has: anything else on a record came in through ``extra``.
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


def redact(text: str) -> str:
    # Each pattern needs its separator ('=' or ':', '@'): most log text (the access line of every request) has
    # none of them and skips the scans (an access line: 30 -> 19 us).
    if "=" in text or ":" in text:
        text = PERSONAL_VALUE.sub(_masked_value, text)
    return EMAIL.sub(REDACTED, text) if "@" in text else text


def _masked_value(match: re.Match[str]) -> str:
    quote = match.group("q") or ""
    return match.group("key") + quote + REDACTED + quote


def _redact_value(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: REDACTED if k in PERSONAL_FIELDS else _redact_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redact_value(v) for v in value]
    return value


class RedactPersonalData(logging.Filter):
    """Masks personal data in place, so every handler and formatter downstream sees only the masked record."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string must not lose the record (nor leak its arguments)
            message = str(record.msg)
        record.msg, record.args = redact(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        for key in set(vars(record)) - _STANDARD:
            value = getattr(record, key)
            setattr(record, key, REDACTED if key in PERSONAL_FIELDS else _redact_value(value))
        return True


class AddContext(logging.Filter):
    """Copies the request / lead / workflow ids of the current context onto the record."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, value in logcontext.current().items():
            if getattr(record, name, None) is None:
                setattr(record, name, value)
        # The SDK's workflow and activity loggers attach their own info: take the ids from it.
        for attr in ("temporal_workflow", "temporal_activity"):
            info = getattr(record, attr, None)
            if isinstance(info, dict) and info.get("workflow_id") and getattr(record, "workflow_id", None) is None:
                record.workflow_id = info["workflow_id"]
        workflow_id = getattr(record, "workflow_id", None)
        is_lead = isinstance(workflow_id, str) and workflow_id.startswith("lead-")
        if is_lead and getattr(record, "lead_id", None) is None:
            record.lead_id = workflow_id
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, the context ids, the exception."""

    def __init__(self, process: str) -> None:
        super().__init__()
        self.process = process

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "process": self.process,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in logcontext.FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                line[name] = value
        for key in set(vars(record)) - _STANDARD - set(logcontext.FIELDS) - set(line):
            if not key.startswith("_"):
                line[key] = getattr(record, key)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line["exception"] = record.exc_text
        return json.dumps(line, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    def __init__(self, process: str) -> None:
        super().__init__(f"%(asctime)s {process} %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        ids = " ".join(f"{n}={v}" for n in logcontext.FIELDS if (v := getattr(record, n, None)) is not None)
        return f"{text} [{ids}]" if ids else text


def configure_logging(
    process: str, log_format: str = "text", level: str = "INFO", stream: TextIO | None = None
) -> logging.Handler:
    """Replace the root logger's handlers with one that adds context, masks personal data and formats."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.addFilter(AddContext())
    handler.addFilter(RedactPersonalData())
    handler.setFormatter(JsonFormatter(process) if log_format == "json" else TextFormatter(process))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # uvicorn keeps its own handlers unless told otherwise: route its records through ours.
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True
    # leadflow.access (observability/http.py) logs every request with its route, time and ids: uvicorn's own
    # access line said it again, a second log record per request on the hot path.
    access = logging.getLogger("uvicorn.access")
    access.handlers.clear()
    access.propagate = False
    return handler
