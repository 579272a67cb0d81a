"""A relay that is down when a lead's welcome is due (dev server + worker + API, real clock): Temporal retries
the send with backoff, and the mail goes out exactly once when the relay comes back."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from aiosmtpd.controller import Controller
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from settings import Settings
from store import repo
from tests.conftest import Inbox, free_port
from tests.test_integration import AUTH, dev_server, stack  # noqa: F401  (fixtures)

pytestmark = pytest.mark.integration


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # Nothing listens there yet: the relay is down.
    return settings.model_copy(update={"smtp_port": free_port(), "smtp_timeout_seconds": 2.0})


async def test_the_welcome_waits_for_the_relay_and_goes_out_once(
    stack: httpx.AsyncClient,  # noqa: F811
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    http = stack
    created = await http.post("/v1/leads", json={"email": "wait@example.com"}, headers=AUTH)
    lead = created.json()["lead_id"]
    row: dict = {}
    for _ in range(300):  # EMAIL_RETRY: 2 s, then 4 s... between attempts
        async with sessions() as session:
            rows = await repo.list_emails(session, lead_id=lead)
        row = rows[0] if rows else {}
        if row.get("attempts", 0) >= 2:
            break
        await asyncio.sleep(0.05)
    assert row["status"] == "sending" and row["error"].startswith("RelayUnavailable"), row

    inbox = Inbox()
    relay = Controller(inbox, hostname="127.0.0.1", port=settings.smtp_port)
    relay.start()
    try:
        await inbox.wait_for(lambda m: "wait@example.com" in m["X-Envelope-To"], seconds=30)
        await asyncio.sleep(1.0)  # no second copy follows
    finally:
        relay.stop()
    assert len(inbox.to("wait@example.com")) == 1
    async with sessions() as session:
        (row,) = await repo.list_emails(session, lead_id=lead)
    assert row["status"] == "sent" and row["error"] is None and row["attempts"] >= 3
