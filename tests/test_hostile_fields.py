"""A corpus of hostile lead fields: each is either refused at the edge with a 4xx naming the field, or
its lead's email is delivered to a real SMTP server with clean one-line headers and exactly one
recipient in To. Never a silent loss.

The edge is the FastAPI app's own validation (Temporal is offline there, so an accepted lead answers 503:
it passed validation). An accepted payload then goes the way the worker takes it: the same LeadIn
attributes, the real rules engine on the default playbook, and the real Mailer with a real SQLite ledger.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from activities.email import Mailer
from activities.rendering import EmailRenderer
from api.main import create_app
from api.schemas import LeadIn
from rules import decide, load_playbook_text
from rules.model import LeadState, LeadUpserted, SendEmail
from settings import Settings
from store import repo
from tests.conftest import Inbox
from tests.test_email_safety import assert_clean
from tests.test_robustness import AUTH, offline_settings

LEAD_ID = "lead-" + "f" * 32
MEGABYTE = "x" * 1_000_000
REFUSED, SENT = "refused", "sent"

# (what it tries, the field, the value, the outcome)
CORPUS: list[tuple[str, str, str, str]] = [
    ("CR in a first name", "first_name", "Zoë\rBcc: attacker@evil.example", REFUSED),
    ("LF in a first name", "first_name", "Zoë\nBcc: attacker@evil.example", REFUSED),
    ("CRLF in a last name", "last_name", "Doe\r\nBcc: attacker@evil.example", REFUSED),
    ("CRLF in a company", "company", "Acme\r\nSubject: pwned", REFUSED),
    ("line separator", "first_name", "Zoë\u2028Bcc: attacker@evil.example", REFUSED),
    ("paragraph separator", "company", "Acme\u2029Bcc: attacker@evil.example", REFUSED),
    ("next line (U+0085)", "last_name", "Doe\x85Bcc: attacker@evil.example", REFUSED),
    ("NUL", "first_name", "Zo\x00ë", REFUSED),
    ("DEL", "company", "Ac\x7fme", REFUSED),
    ("C1 control", "company", "Ac\x9bme", REFUSED),
    ("terminal escape", "last_name", "Doe\x1b[31m", REFUSED),
    ("tab", "first_name", "Zo\të", REFUSED),
    ("1 MB name", "first_name", MEGABYTE, REFUSED),
    ("1 MB company", "company", MEGABYTE, REFUSED),
    ("trailing CRLF (stripped)", "first_name", "Zoë\r\n", SENT),
    ("display name adds a recipient", "first_name", "Zoë <attacker@evil.example>,", SENT),
    ("quoted display-name trick", "last_name", '"Bob" <attacker@evil.example>, "', SENT),
    ("group syntax", "first_name", "undisclosed-recipients:;", SENT),
    ("encoded-word trick", "first_name", "=?utf-8?q?attacker=40evil.example=2C?=", SENT),
    ("RTL override (stripped)", "company", "\u202eAcme\u202c moc.live", SENT),
    ("RTL isolate (stripped)", "first_name", "\u2067Zoë\u2069", SENT),
    ("long name at the limit", "first_name", "é" * 200, SENT),
    ("long company at the limit", "company", "Ω" * 200, SENT),
    ("IDN domain", "email", "user@bücher.example", SENT),
    ("IDN domain, upper case", "email", "User@BÜCHER.example", SENT),
    ("Unicode local part without SMTPUTF8", "email", "用户@example.com", REFUSED),
    ("CRLF in the address", "email", "x@example.com\r\nBcc: attacker@evil.example", REFUSED),
    ("two addresses", "email", "x@example.com, attacker@evil.example", REFUSED),
    ("RTL override in the address", "email", "\u202ex@example.com", REFUSED),
    ("1 MB address", "email", MEGABYTE + "@example.com", REFUSED),
]
IDS = [case[0] for case in CORPUS]


def payload(field: str, value: str) -> dict[str, str]:
    body = {"email": "hostile@example.com", "first_name": "Ana", "last_name": "Doe", "company": "Acme"}
    return body | {field: value}


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    settings = offline_settings(tmp_path_factory.mktemp("hostile"))
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield client


@pytest.mark.parametrize(("label", "field", "value", "outcome"), CORPUS, ids=IDS)
async def test_a_hostile_field_is_refused_at_the_edge_or_delivered_clean(
    edge: TestClient,
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    smtp: tuple[Inbox, int],
    label: str,
    field: str,
    value: str,
    outcome: str,
) -> None:
    body = payload(field, value)
    answer = edge.post("/v1/leads", json=body, headers=AUTH)
    if outcome == REFUSED:
        assert answer.status_code == 422, (label, answer.status_code, answer.text[:300])
        assert field in [e["field"] for e in answer.json()["errors"]], answer.json()
        return
    # Past validation; only the (offline) Temporal call is left.
    assert answer.status_code == 503, (label, answer.status_code, answer.text[:300])

    lead = LeadIn.model_validate(body)
    mails = welcome_emails(lead, settings)
    assert len(mails) == 1, mails
    mailer = Mailer(settings, sessions, EmailRenderer(settings.templates_dir))
    assert await mailer.send(mails[0], LEAD_ID) == "sent"
    inbox, _ = smtp
    (msg,) = inbox.messages
    rcpt = "user@xn--bcher-kva.example" if field == "email" else "hostile@example.com"
    assert_clean(msg, rcpt)
    assert msg["Bcc"] is None and msg["Cc"] is None
    async with sessions() as session:
        (row,) = await repo.list_emails(session, lead_id=LEAD_ID)
    assert (row["status"], row["to_addr"], row["error"]) == ("sent", rcpt, None)


def welcome_emails(lead: LeadIn, settings: Settings) -> list[SendEmail]:
    """The emails the worker would send for this new lead (the default playbook's welcome)."""
    renderer = EmailRenderer(settings.templates_dir)
    playbook = load_playbook_text(
        Path(settings.playbook_path).read_text(encoding="utf-8"),
        version="hostile-v1",
        templates=renderer.available(),
        teams={"inside-sales", "japan"},
    )
    decision = decide(LeadState(lead_id=LEAD_ID), LeadUpserted(lead.attributes()), datetime.now(UTC), playbook)
    return [c for c in decision.commands if isinstance(c, SendEmail)]


def test_unicode_local_parts_are_accepted_when_the_relay_offers_smtputf8(tmp_path: Path) -> None:
    with TestClient(create_app(offline_settings(tmp_path, smtp_utf8=True)), raise_server_exceptions=False) as client:
        answer = client.post("/v1/leads", json=payload("email", "用户@example.com"), headers=AUTH)
        events = client.post(
            "/v1/events", json={"events": [{"type": "page_view", "email": "用户@example.com"}]}, headers=AUTH
        )
    assert (answer.status_code, events.status_code) == (503, 503)  # valid; only Temporal is offline


def test_the_422_says_which_character_to_remove(edge: TestClient) -> None:
    answer = edge.post("/v1/leads", json=payload("company", "Acme\r\nBcc: x@evil.example"), headers=AUTH)
    (error,) = answer.json()["errors"]
    assert error["field"] == "company" and "U+000D (carriage return) at position 4" in error["message"]


def test_identified_events_refuse_an_address_leadflow_cannot_send_to(edge: TestClient) -> None:
    # Alone in its request: a 422 naming it. Beside good events it is rejected alone in the 202's results.
    events = [{"type": "page_view", "email": "用户@example.com"}]
    answer = edge.post("/v1/events", json={"events": events}, headers=AUTH)
    assert answer.status_code == 422
    (error,) = answer.json()["errors"]
    assert error["field"] == "events.0.email" and "LEADFLOW_SMTP_UTF8" in error["message"]


def test_the_openapi_schema_says_which_characters_names_and_company_refuse(tmp_path: Path) -> None:
    """The schema's pattern for names and company is the refusal the API applies (Unicode Cc, Zl, Zp), so a
    client or a schema-driven generator knows before sending what a 422 will name."""
    import re

    from api.schemas import HEADER_SAFE_PATTERN
    from rules.addresses import hostile_character

    with TestClient(create_app(offline_settings(tmp_path))) as client:
        schema = client.get("/openapi.json").json()["components"]["schemas"]["LeadIn"]["properties"]
    for field in ("first_name", "last_name", "company"):
        texts = [s for s in schema[field].get("anyOf", [schema[field]]) if s.get("type") == "string"]
        assert texts and texts[0]["pattern"] == HEADER_SAFE_PATTERN, (field, schema[field])
    allowed = re.compile(HEADER_SAFE_PATTERN)
    for code in [*range(0x0, 0x300), *range(0x2000, 0x2070), 0x3000, 0xFEFF, 0x1F600]:
        char = f"a{chr(code)}b"
        assert (allowed.fullmatch(char) is not None) == (hostile_character(char) is None), hex(code)
