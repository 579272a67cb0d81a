"""Engagement tracking over HTTP (dev server + worker + API + real SMTP): a tracked click resumes a journey
waiting for it, an altered redirect is refused, prefetched opens count once, and nothing leaks."""

from __future__ import annotations

import asyncio
import html
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from activities.tracking_tokens import TrackedSend, sign, tracking_key, verify
from settings import Settings
from tests.conftest import Inbox
from tests.test_integration import AUTH, dev_server, eventually, stack  # noqa: F401  (fixtures)
from tests.tracking_fixtures import click_journey_playbook, hrefs, html_part, pixel_src, templates_with_offer

pytestmark = pytest.mark.integration


@pytest.fixture
def settings(settings: Settings, tmp_path) -> Settings:  # type: ignore[no-untyped-def]
    return settings.model_copy(update={"templates_dir": templates_with_offer(tmp_path)})


async def publish(http: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch, text: str) -> None:
    monkeypatch.setattr("api.deps.PLAYBOOK_CHECK_SECONDS", 0.0)  # new leads pin the publication at once
    published = await http.post("/v1/playbooks", json={"playbook": text, "author": "test"}, headers=AUTH)
    assert published.status_code == 201, published.text


async def timeline_when(http: httpx.AsyncClient, lead: str, predicate) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """The lead's timeline once ``predicate`` holds: touchpoints reach the store with the lead's projection."""
    body: dict[str, Any] = {}
    for _ in range(150):
        answer = await http.get(f"/v1/leads/{lead}/timeline", headers=AUTH)
        body = answer.json()
        if answer.status_code == 200 and predicate(body):
            return body
        await asyncio.sleep(0.1)
    raise AssertionError(f"the timeline of {lead} never matched; last answer: {body}")


def clicks(timeline: dict[str, Any]) -> list[dict[str, Any]]:
    return [t for t in timeline["touchpoints"] if t["type"] == "email_click"]


def path_of(url: str) -> str:
    return urlsplit(html.unescape(url)).path


async def test_a_tracked_click_resumes_the_journey_waiting_for_it(
    monkeypatch: pytest.MonkeyPatch,
    stack: httpx.AsyncClient,  # noqa: F811
    smtp: tuple[Inbox, int],
    settings: Settings,
) -> None:
    http, (inbox, _) = stack, smtp
    await publish(http, monkeypatch, click_journey_playbook())
    created = await http.post("/v1/leads", json={"email": "kim@example.com", "first_name": "Kim"}, headers=AUTH)
    lead = created.json()["lead_id"]
    (msg,) = await inbox.wait_for(lambda m: "kim@example.com" in m["X-Envelope-To"])
    body = html_part(msg)
    pricing = next(h for h in hrefs(body) if "/t/c/" in h)
    await eventually(http, f"/v1/leads/{lead}", lambda v: v["journeys"] and v["journeys"][0]["waiting_for"])

    # A link scanner's HEAD learns the target but records nothing.
    head = await http.head(path_of(pricing))
    assert (head.status_code, head.headers["location"]) == (302, "https://example.com/pricing?plan=team&ref=mail")
    clicked = await http.get(path_of(pricing))
    assert clicked.status_code == 302
    assert clicked.headers["location"] == "https://example.com/pricing?plan=team&ref=mail"
    assert clicked.headers["referrer-policy"] == "no-referrer" and "no-store" in clicked.headers["cache-control"]
    assert clicked.text == ""  # nothing about the lead or the send

    view = await eventually(http, f"/v1/leads/{lead}", lambda v: v["attributes"].get("clicked_offer"))
    assert view["attributes"]["clicked_offer"] == "yes"
    assert view["journeys"][0]["status"] == "exited" and view["journeys"][0]["waiting_for"] is None
    click = next(c for c in view["recent_score_changes"] if c["rule_id"] == "email_click")
    assert click["points"] == 5
    (touch,) = clicks(await timeline_when(http, lead, clicks))
    assert touch["properties"]["template"] == "offer" and touch["properties"]["send_key"] == f"{lead}:nurture:1"
    assert touch["url"] == "https://example.com/pricing?plan=team&ref=mail"


async def test_an_altered_or_unsigned_redirect_is_refused_and_reveals_nothing(
    stack: httpx.AsyncClient,  # noqa: F811
    smtp: tuple[Inbox, int],
    settings: Settings,
) -> None:
    http = stack
    created = await http.post("/v1/leads", json={"email": "lou@example.com"}, headers=AUTH)
    assert created.status_code == 202
    key = tracking_key(settings.secret("id_key"))
    good = sign_for(key, created.json()["lead_id"], "https://example.com/pricing")
    payload, mac = good.split(".")
    evil = sign_for(tracking_key("not-our-key"), created.json()["lead_id"], "https://evil.example/login")
    refused = [
        f"/t/c/{evil}",  # signed by someone else
        f"/t/c/{evil.split('.')[0]}.{mac}",  # another target under our signature
        f"/t/c/{payload}",  # unsigned
        f"/t/c/{payload}.{mac[:-1]}{'A' if mac[-1] != 'A' else 'B'}",  # altered signature
        "/t/c/https%3A%2F%2Fevil.example",
        f"/t/o/{good}.gif",  # a link token is not a pixel
        "/t/o/nothing.gif",
    ]
    for path in refused:
        answer = await http.get(path)
        assert answer.status_code == 404, (path, answer.status_code)
        assert "location" not in answer.headers and "evil" not in answer.text and "lead" not in answer.text
    assert (await http.get(f"/t/c/{good}")).status_code == 302


def sign_for(key: str, lead: str, target: str) -> str:
    token = sign(TrackedSend(f"{lead}:nurture:1", "welcome"), key, target)
    assert verify(token, key) is not None
    return token


async def test_prefetched_and_repeated_opens_count_once(
    monkeypatch: pytest.MonkeyPatch,
    stack: httpx.AsyncClient,  # noqa: F811
    smtp: tuple[Inbox, int],
) -> None:
    http, (inbox, _) = stack, smtp
    await publish(http, monkeypatch, click_journey_playbook())
    created = await http.post("/v1/leads", json={"email": "mo@example.com"}, headers=AUTH)
    lead = created.json()["lead_id"]
    (msg,) = await inbox.wait_for(lambda m: "mo@example.com" in m["X-Envelope-To"])
    pixel = pixel_src(html_part(msg))
    assert pixel is not None
    for _ in range(4):  # Apple Mail Privacy Protection, then the person, then a forward preview...
        answer = await http.get(path_of(pixel))
        assert (answer.status_code, answer.headers["content-type"]) == (200, "image/gif")
        assert answer.content.startswith(b"GIF89a") and len(answer.content) < 64
    view = await eventually(
        http, f"/v1/leads/{lead}", lambda v: any(c["rule_id"] == "email_open" for c in v["recent_score_changes"])
    )
    timeline = await timeline_when(http, lead, lambda t: any(p["type"] == "email_open" for p in t["touchpoints"]))
    assert [t["type"] for t in timeline["touchpoints"]].count("email_open") == 1
    opens = [c for c in view["recent_score_changes"] if c["rule_id"] == "email_open"]
    assert len(opens) == 1  # the playbook allows 3 a day: the dedupe, not the cap, made it one
    # The wait_for_event step waits for a click: an open does not end it.
    assert view["journeys"][0]["waiting_for"] == "wait_click"


async def test_a_click_is_stored_once_by_the_workflow_with_the_campaign_of_its_link(
    stack: httpx.AsyncClient,  # noqa: F811
    smtp: tuple[Inbox, int],
    settings: Settings,
) -> None:
    """The workflow is the one writer of touchpoints: the API wrote a click on the side first, without the
    link's campaign, and the workflow's own row (with it) was then ignored as a repeat."""
    http = stack
    created = await http.post("/v1/leads", json={"email": "nia@example.com"}, headers=AUTH)
    lead = created.json()["lead_id"]
    await eventually(http, f"/v1/leads/{lead}", lambda v: v["exists"])
    target = "https://example.com/pricing?utm_source=newsletter&utm_medium=email&utm_campaign=spring"
    token = sign_for(tracking_key(settings.secret("id_key")), lead, target)
    assert (await http.get(f"/t/c/{token}")).status_code == 302

    (touch,) = clicks(await timeline_when(http, lead, lambda t: any(c["campaign"] for c in clicks(t))))
    assert (touch["medium"], touch["campaign"]) == ("email", "spring")
