"""Context every log line carries (request id, lead id, workflow id), set at the process's boundaries.

Context variables follow a request or an activity through its awaits without passing anything around:
the API middleware sets the request id and the lead id of the route, the activity interceptor sets the
workflow id (a lead's workflow id is its lead id).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

REQUEST_ID: ContextVar[str | None] = ContextVar("leadflow_request_id", default=None)
LEAD_ID: ContextVar[str | None] = ContextVar("leadflow_lead_id", default=None)
WORKFLOW_ID: ContextVar[str | None] = ContextVar("leadflow_workflow_id", default=None)
ACTIVITY_TYPE: ContextVar[str | None] = ContextVar("leadflow_activity_type", default=None)

FIELDS: dict[str, ContextVar[str | None]] = {
    "request_id": REQUEST_ID,
    "lead_id": LEAD_ID,
    "workflow_id": WORKFLOW_ID,
    "activity_type": ACTIVITY_TYPE,
}


@contextmanager
def bound(**values: str | None) -> Iterator[None]:
    """Set some of FIELDS for the duration of a block (restored after, also on error)."""
    tokens = [(FIELDS[name], FIELDS[name].set(value)) for name, value in values.items()]
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)


def current() -> dict[str, str]:
    return {name: value for name, var in FIELDS.items() if (value := var.get()) is not None}
