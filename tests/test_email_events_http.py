"""Bounce and complaint intake over HTTP (dev server + worker + API + real SMTP): signed, forged and replayed
reports, a hard bounce that suppresses the address and stops the journey already waiting, a complaint that
opts the lead out, and three soft bounces in a row that become a hard one."""

from __future__ import annotations

import json
import time
from email.message import Message
from typing import Any

import httpx
import pytest
import yaml
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.exceptions import ApplicationError

from activities.email import Mailer
from activities.rendering import EmailRenderer
from api.lead_ids import lead_id_for
from api.webhook_auth import sign
from rules.model import SendEmail
from settings import ROOT, Settings
from store import email_feedback
from tests.conftest import Inbox
from tests.test_integration import AUTH, dev_server, eventually, stack  # noqa: F401  (fixtures)
from tests.tracking_fixtures import suppression_of

pytestmark = pytest.mark.integration
SECRET = "relay-shared-secret"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"webhook_secret": SecretStr(SECRET)})


def signed(body: dict[str, Any], *, secret: str = SECRET, age: float = 0.0) -> tuple[bytes, dict[str, str]]:
    raw = json.dumps(body).encode()
    timestamp = str(int(time.time() - age))
    headers = {"X-Leadflow-Timestamp": timestamp, "X-Leadflow-Signature": sign(secret, timestamp, raw)}
    return raw, headers | {"Content-Type": "application/json"}


async def post(http: httpx.AsyncClient, raw: bytes, headers: dict[str, str]) -> httpx.Response:
    return await http.post("/v1/email-events", content=raw, headers=headers)


async def slow_journey(http: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch) -> None:
    """Welcome, then the case study four seconds later: time for a report to arrive in between."""
    monkeypatch.setattr("api.deps.PLAYBOOK_CHECK_SECONDS", 0.0)
    doc = yaml.safe_load((ROOT / "playbooks" / "default.yaml").read_text(encoding="utf-8"))
    doc["journeys"][0]["steps"][1]["duration"] = "4s"
    published = await http.post("/v1/playbooks", json={"playbook": yaml.safe_dump(doc), "author": "t"}, headers=AUTH)
    assert published.status_code == 201, published.text


async def welcomed(http: httpx.AsyncClient, inbox: Inbox, address: str) -> tuple[str, Message]:
    created = await http.post("/v1/leads", json={"email": address, "first_name": "Bo"}, headers=AUTH)
    assert created.status_code == 202, created.text
    (msg,) = await inbox.wait_for(lambda m: address in m["X-Envelope-To"])
    lead = created.json()["lead_id"]
    # The ledger records the send just after the relay's 250: a report can only be matched from then on.
    await eventually(http, f"/v1/leads/{lead}/timeline", lambda t: t["emails"] and t["emails"][0]["status"] == "sent")
    return lead, msg


async def test_a_signed_hard_bounce_suppresses_the_address_and_stops_the_waiting_journey(
    monkeypatch: pytest.MonkeyPatch,
    stack: httpx.AsyncClient,  # noqa: F811
    smtp: tuple[Inbox, int],
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    http, (inbox, _) = stack, smtp
    await slow_journey(http, monkeypatch)
    lead, welcome = await welcomed(http, inbox, "bo@example.com")
    report = {
        "events": [
            {
                "id": "evt-1",
                "type": "hard",
                "message_id": welcome["Message-ID"],
                "recipient": "bo@example.com",
                "reason": "550 5.1.1 user unknown",
                "at": "2026-01-01T00:00:00Z",
            }
        ]
    }
    raw, headers = signed(report)
    # Refused: no credentials, a forged signature, an edited body, a replay from ten minutes ago.
    forged_raw, forged = signed(report, secret="guessed")
    old_raw, old = signed(report, age=600)
    for body, attempt in (
        (raw, {"Content-Type": "application/json"}),
        (forged_raw, forged),
        (raw.replace(b"hard", b"soft"), headers),
        (old_raw, old),
        (raw, headers | {"X-API-Key": "wrong"}),
    ):
        answer = await post(http, body, attempt)
        assert answer.status_code == 401, answer.text
    assert "replay" in (await post(http, old_raw, old)).json()["detail"]
    async with sessions() as session:
        assert await email_feedback.list_feedback(session, lead) == []

    accepted = await post(http, raw, headers)
    assert accepted.status_code == 202, accepted.text
    assert accepted.json() == {"accepted": 1, "duplicates": 0, "suppressed": 1, "unmatched": 0}
    again = await post(http, *signed(report))  # the relay resends it
    assert again.json() == {"accepted": 0, "duplicates": 1, "suppressed": 0, "unmatched": 0}

    view = await eventually(http, f"/v1/leads/{lead}", lambda v: v["nurture_holds"])
    assert [(f["kind"], f["send_key"], f["template"]) for f in view["email_feedback"]] == [
        ("hard_bounce", f"{lead}:nurture:1", "welcome")
    ]
    hold = view["nurture_holds"][0]
    assert (hold["action"], hold["template"]) == ("skipped", "case_study") and "hard-bounced" in hold["reason"]
    assert len(inbox.to("bo@example.com")) == 1  # the case study never went out
    timeline = (await http.get(f"/v1/leads/{lead}/timeline", headers=AUTH)).json()
    (row,) = timeline["email_feedback"]
    assert (row["type"], row["email_key"], row["suppressed"]) == ("hard_bounce", f"{lead}:nurture:1", True)
    assert await suppression_of(sessions, settings, "BO@example.com ") == "hard_bounce"


async def test_a_complaint_with_the_api_key_opts_the_lead_out(
    stack: httpx.AsyncClient,  # noqa: F811
    smtp: tuple[Inbox, int],
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    http, (inbox, _) = stack, smtp
    lead, welcome = await welcomed(http, inbox, "cy@example.com")
    # Message-ID without its angle brackets, no recipient: the ledger says who it was.
    bare = welcome["Message-ID"].strip("<>")
    report = {"events": [{"type": "complaint", "message_id": bare, "reason": "marked as spam"}]}
    answer = await http.post("/v1/email-events", json=report, headers=AUTH)
    assert answer.json() == {"accepted": 1, "duplicates": 0, "suppressed": 1, "unmatched": 0}
    view = await eventually(http, f"/v1/leads/{lead}", lambda v: v["consent"] == "opted_out")
    assert view["consents"][-1]["source"] == "complaint" and view["email_feedback"][0]["kind"] == "complaint"
    assert await suppression_of(sessions, settings, "cy@example.com") == "complaint"


async def test_three_soft_bounces_in_a_row_become_a_hard_one(
    stack: httpx.AsyncClient,  # noqa: F811
    smtp: tuple[Inbox, int],
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    http, (inbox, _) = stack, smtp
    lead, _ = await welcomed(http, inbox, "di@example.com")

    def report(kind: str, minute: int) -> dict[str, Any]:
        event = {"type": kind, "recipient": "di@example.com", "at": f"2026-01-01T00:{minute:02d}:00Z"}
        return {"events": [event | {"reason": "452 4.2.2 mailbox full"}]}

    for kind, minute in (("soft", 1), ("soft", 2), ("delivered", 3), ("soft", 4), ("soft", 5)):
        answer = await post(http, *signed(report(kind, minute)))
        assert answer.json()["suppressed"] == 0, (kind, minute)
    assert await suppression_of(sessions, settings, "di@example.com") is None
    third = await post(http, *signed(report("soft", 6)))
    assert third.json() == {"accepted": 1, "duplicates": 0, "suppressed": 1, "unmatched": 0}
    assert await suppression_of(sessions, settings, "di@example.com") == "hard_bounce"
    # The send activity's last check refuses any mail to it from now on, whoever asks.
    mailer = Mailer(settings, sessions, EmailRenderer(settings.templates_dir))
    later = SendEmail(f"{lead}:nurture:99", "nurture", "welcome", "di@example.com", {"lead": {}, "reason": "t"})
    with pytest.raises(ApplicationError) as refused:
        await mailer.send(later, lead)
    assert refused.value.type == "Suppressed" and len(inbox.to("di@example.com")) == 1
    view = await eventually(http, f"/v1/leads/{lead}", lambda v: v["email_feedback"])
    assert view["email_feedback"][0]["kind"] == "hard_bounce"
    assert view["email_feedback"][0]["reason"].startswith("3 soft bounces in a row")
    assert lead == lead_id_for("di@example.com", settings.secret("id_key"))


async def test_bad_reports_get_a_4xx_that_says_what_to_fix(stack: httpx.AsyncClient) -> None:  # noqa: F811
    http = stack
    for body, needle in (
        ({"events": [{"type": "bounce", "recipient": "a@example.com"}]}, "events.0.type"),
        ({"events": [{"type": "hard"}]}, "message_id or recipient"),
        ({"events": []}, "events"),
        ({"events": [{"type": "hard", "recipient": "not-an-address"}]}, "recipient"),
    ):
        answer = await post(http, *signed(body))
        assert answer.status_code == 422 and needle in answer.json()["detail"], answer.text
    unknown = await post(http, *signed({"events": [{"type": "hard", "message_id": "<nobody@elsewhere>"}]}))
    assert unknown.json() == {"accepted": 0, "duplicates": 0, "suppressed": 0, "unmatched": 1}
    stale = await post(http, b"{}", {"X-Leadflow-Timestamp": "yesterday", "X-Leadflow-Signature": "sha256=00"})
    assert stale.status_code == 401 and "Unix time" in stale.json()["detail"]
