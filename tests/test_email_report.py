"""GET /v1/reports/emails over a real store (SQLite and PostgreSQL): sends from the ledger, unique opens and
clicks from touchpoints, bounces from the relay's reports, unsubscribes against the last mail before them."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.main import create_app
from rules.model import TrackedEvent
from settings import Settings
from store import email_feedback, privacy, repo
from tests.conftest import TEST_API_KEY

T0 = datetime(2026, 3, 2, 9, tzinfo=UTC)
ANN, BEN, CY = ("lead-" + c * 32 for c in "abc")


async def send(session: AsyncSession, key: str, template: str, variant: str | None, at: datetime, **kw: str) -> None:
    lead = key.split(":")[0]
    await repo.record_email(
        session,
        key=key,
        lead_id=lead,
        kind=kw.get("kind", "nurture"),
        template=template,
        to_addr="x@example.com",
        subject="s",
        message_id=f"<{key}@t>",
        status=kw.get("status", "sent"),
        now=at,
        variant=variant,
    )


def touch(event_id: str, kind: str, key: str, at: datetime) -> TrackedEvent:
    return TrackedEvent(event_id, kind, at, None, None, {"send_key": key})


@pytest.mark.parametrize("database_url", ["sqlite", "postgres"], indirect=True)
async def test_the_report_counts_each_send_once_per_template_and_variant(
    settings: Settings, sessions: async_sessionmaker[AsyncSession]
) -> None:
    async with sessions() as s:
        await send(s, f"{ANN}:nurture:1", "welcome", "split=a", T0)
        await send(s, f"{BEN}:nurture:1", "welcome", "split=a", T0)
        await send(s, f"{CY}:nurture:1", "welcome", "split=b", T0)
        await send(s, f"{ANN}:nurture:2", "case_study", None, T0 + timedelta(days=3))
        await send(s, f"{BEN}:nurture:2", "case_study", None, T0 + timedelta(days=3), status="failed")
        await send(s, f"{ANN}:rep_new_lead:3", "rep_new_lead", None, T0, kind="rep_new_lead")
        hour = timedelta(hours=1)
        await repo.add_touchpoints(
            s,
            ANN,
            [
                touch("o1", "email_open", f"{ANN}:nurture:1", T0 + hour),  # prefetch
                touch("o2", "email_open", f"{ANN}:nurture:1", T0 + 5 * hour),  # the person
                TrackedEvent(
                    "c1",
                    "email_click",
                    T0 + 5 * hour,
                    "https://example.com/p",
                    "welcome",
                    {"send_key": f"{ANN}:nurture:1", "link": "https://example.com/p"},
                ),
                touch("o3", "email_open", f"{ANN}:nurture:2", T0 + timedelta(days=3, hours=1)),
                # Unsubscribed after the case study: it counts against the case study, not the welcome.
                TrackedEvent("u1", "unsubscribe", T0 + timedelta(days=4)),
            ],
            T0,
        )
        await repo.add_touchpoints(s, BEN, [touch("o4", "email_open", f"{BEN}:nurture:1", T0 + hour)], T0)
        for report_id, key, kind in (
            ("f1", f"{CY}:nurture:1", "hard_bounce"),
            ("f2", f"{BEN}:nurture:1", "soft_bounce"),
        ):
            row = {"id": report_id, "address_hash": report_id, "type": kind, "email_key": key, "lead_id": key[:37]}
            row["reason"] = f"550 5.1.1 <{report_id}@example.com>: user unknown"
            assert await email_feedback.add_feedback(s, row | {"occurred_at": T0, "received_at": T0}) is None

    app_settings = settings.model_copy(update={"temporal_address": "127.0.0.1:9", "scheduler_enabled": False})
    with TestClient(create_app(app_settings), raise_server_exceptions=False) as client:
        auth = {"X-API-Key": TEST_API_KEY}
        body = client.get("/v1/reports/emails", headers=auth).json()
        rows = {(r["template"], r["variant"]): r for r in body["rows"]}
        assert set(rows) == {("case_study", None), ("welcome", "split=a"), ("welcome", "split=b")}
        counts = ("sends", "unique_opens", "unique_clicks", "unsubscribes", "hard_bounces", "soft_bounces")
        assert [rows[("welcome", "split=a")][c] for c in counts] == [2, 2, 1, 0, 0, 1]
        assert [rows[("welcome", "split=b")][c] for c in counts] == [1, 0, 0, 0, 1, 0]
        assert [rows[("case_study", None)][c] for c in counts] == [1, 1, 0, 1, 0, 0]
        assert rows[("welcome", "split=a")]["open_rate"] == 1.0 and rows[("welcome", "split=a")]["click_rate"] == 0.5

        window = client.get(
            "/v1/reports/emails", params={"since": (T0 + timedelta(days=1)).isoformat()}, headers=auth
        ).json()
        assert [(r["template"], r["sends"]) for r in window["rows"]] == [("case_study", 1)]
        staff = client.get("/v1/reports/emails", params={"kind": "rep_new_lead"}, headers=auth).json()
        assert [(r["template"], r["sends"], r["unique_opens"]) for r in staff["rows"]] == [("rep_new_lead", 1, 0)]

        exported = client.get("/v1/reports/emails.csv", headers=auth)
        assert exported.headers["content-type"].startswith("text/csv")
        table = list(csv.DictReader(io.StringIO(exported.text)))
        assert [(r["template"], r["variant"], r["sends"], r["unique_opens"]) for r in table] == [
            ("case_study", "", "1", "1"),
            ("welcome", "split=a", "2", "2"),
            ("welcome", "split=b", "1", "0"),
        ]
        empty = client.get(
            "/v1/reports/emails",
            params={"since": "2026-03-03T00:00:00Z", "until": "2026-03-01T00:00:00Z"},
            headers=auth,
        )
        assert empty.status_code == 200 and empty.json()["rows"] == []
        for bad in ("yesterday", "-208", "1999-12-31T00:00:00Z"):
            assert client.get("/v1/reports/emails", params={"since": bad}, headers=auth).status_code == 422
        assert client.get("/v1/reports/emails").status_code == 401

        # Erasing a person keeps what the report counts (the send an open concerns), not the link or the reason.
        async with sessions() as s:
            await privacy.anonymise_lead(s, ANN)
            await privacy.anonymise_lead(s, CY)
            touches = await repo.list_touchpoints(s, ANN)
            (feedback,) = await email_feedback.list_feedback(s, CY)
        assert all(t["url"] is None and set(t["properties"]) <= {"send_key", "template", "variant"} for t in touches)
        assert feedback["reason"] is None
        assert client.get("/v1/reports/emails", headers=auth).json()["rows"] == body["rows"]
