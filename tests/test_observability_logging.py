"""Log records reach a handler without personal data, and carry the request / lead / workflow ids."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from observability import logcontext
from observability.logging import EMAIL, PERSONAL_VALUE, REDACTED, configure_logging, redact


@pytest.fixture
def json_logs() -> Iterator[io.StringIO]:
    """The root logger as the processes configure it (JSON), writing into a buffer; restored after."""
    root = logging.getLogger()
    saved, level = list(root.handlers), root.level
    stream = io.StringIO()
    configure_logging("test", "json", "INFO", stream=stream)
    yield stream
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in saved:
        root.addHandler(handler)
    root.setLevel(level)


def lines(stream: io.StringIO) -> list[dict]:  # type: ignore[type-arg]
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


def test_addresses_are_masked_wherever_they_appear(json_logs: io.StringIO) -> None:
    log = logging.getLogger("leadflow.test")
    log.info("sending to %s", "Jane.Doe+x@Example.co.uk")
    log.warning("refused <jane@example.com> by relay", extra={"recipient": "jane@example.com"})
    try:
        raise ValueError("cannot send to 'jane@example.com'")
    except ValueError:
        log.exception("send failed")
    text = json_logs.getvalue()
    assert "jane" not in text.lower()
    assert text.count(REDACTED) >= 4
    assert lines(json_logs)[0]["message"] == f"sending to {REDACTED}"


def test_known_personal_fields_are_masked_as_extras_and_in_reprs(json_logs: io.StringIO) -> None:
    log = logging.getLogger("leadflow.test")
    log.info("command %r", "SendEmail(to='x', to_name='Zelda Quux', template='welcome')")
    log.info("attributes %s", {"first_name": "Zelda", "last_name": "Quux", "score": 40})
    log.info("lead updated", extra={"first_name": "Zelda", "attributes": {"company": "Quux Ltd", "grade": "B"}})
    text = json_logs.getvalue()
    assert "Zelda" not in text and "Quux" not in text
    last = lines(json_logs)[-1]
    assert last["first_name"] == REDACTED and last["attributes"] == {"company": REDACTED, "grade": "B"}
    assert "template='welcome'" in text and "'score': 40" in text  # what is not personal stays readable


def test_redact_leaves_ordinary_text_alone() -> None:
    line = "activity failed ({'activity_type': 'send_email', 'workflow_id': 'lead-0123', 'attempt': 2})"
    assert redact(line) == line


def test_context_ids_are_on_every_line(json_logs: io.StringIO) -> None:
    log = logging.getLogger("leadflow.test")
    with logcontext.bound(request_id="req-1", lead_id="lead-abc", workflow_id="lead-abc"):
        log.info("inside")
    log.info("outside")
    inside, outside = lines(json_logs)
    assert (inside["request_id"], inside["lead_id"], inside["workflow_id"]) == ("req-1", "lead-abc", "lead-abc")
    assert "request_id" not in outside


def test_text_format_keeps_the_ids_and_masks_too() -> None:
    root = logging.getLogger()
    saved = list(root.handlers)
    stream = io.StringIO()
    configure_logging("test", "text", "INFO", stream=stream)
    try:
        with logcontext.bound(request_id="req-2"):
            logging.getLogger("leadflow.test").info("to %s", "a.b@example.org")
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in saved:
            root.addHandler(handler)
    assert "request_id=req-2" in stream.getvalue() and "example.org" not in stream.getvalue()


def _redact_scanning_everything(text: str) -> str:
    """redact() as it was before it skipped text without a separator: both patterns over every text."""
    text = PERSONAL_VALUE.sub(lambda m: m.group("key") + (m.group("q") or "") + REDACTED + (m.group("q") or ""), text)
    return EMAIL.sub(REDACTED, text)


@settings(max_examples=400, deadline=None)
@given(
    st.lists(st.sampled_from([*"ab @.:=,'\"_ {}()\n", "name", "email", "to", "phone", "x.io"]), max_size=40).map(
        "".join
    )
)
def test_redaction_skips_only_text_neither_pattern_can_match(text: str) -> None:
    assert redact(text) == _redact_scanning_everything(text)
