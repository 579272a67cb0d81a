"""One-click unsubscribe end to end (dev server + worker + API over HTTP + a real SMTP server): the welcome
carries RFC 8058 headers; a GET changes nothing; forged and cross-lead tokens are refused; a real one-click
POST records the opt-out and the journey's next send is skipped, while rep notifications still flow."""

from __future__ import annotations

import asyncio
import re
from email.message import Message
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import yaml

from settings import ROOT
from tests.conftest import Inbox
from tests.test_integration import AUTH, dev_server, eventually, stack  # noqa: F401  (fixtures)

pytestmark = pytest.mark.integration
WAIT_SECONDS = 4


def unsubscribe_path(mail: Message) -> str:
    """The https link of List-Unsubscribe, as a path on the API under test."""
    header = str(mail["List-Unsubscribe"])
    url = re.match(r"<([^>]+)>", header)
    assert url, header
    parts = urlsplit(url.group(1))
    return f"{parts.path}?{parts.query}"


def unsubscribe_points(view: dict[str, Any]) -> int | None:
    return next((c["points"] for c in view["recent_score_changes"] if c["rule_id"] == "unsubscribe"), None)


async def publish_short_journey(http: httpx.AsyncClient) -> None:
    doc = yaml.safe_load((ROOT / "playbooks" / "default.yaml").read_text(encoding="utf-8"))
    doc["journeys"][0]["steps"][1]["duration"] = f"{WAIT_SECONDS}s"
    published = await http.post(
        "/v1/playbooks", json={"playbook": yaml.safe_dump(doc, allow_unicode=True), "author": "test"}, headers=AUTH
    )
    assert published.status_code == 201, published.text


async def test_one_click_unsubscribe_stops_nurture_and_rep_mail_still_flows(
    monkeypatch: pytest.MonkeyPatch,
    stack: httpx.AsyncClient,  # noqa: F811
    smtp: tuple[Inbox, int],
) -> None:
    http, (inbox, _) = stack, smtp
    monkeypatch.setattr("api.deps.PLAYBOOK_CHECK_SECONDS", 0.0)
    await publish_short_journey(http)
    ann_fields = {"email": "ann@example.com", "first_name": "Ann", "title": "VP Sales", "company_size": 500}
    ann = (await http.post("/v1/leads", json=ann_fields, headers=AUTH)).json()
    bo = (await http.post("/v1/leads", json={"email": "bo@example.com", "first_name": "Bo"}, headers=AUTH)).json()

    # The welcome is nurture: RFC 8058-shaped headers, and the link in both parts.
    welcome = (await inbox.wait_for(lambda m: "ann@example.com" in m["X-Envelope-To"]))[0]
    assert welcome["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert re.fullmatch(
        r"<https?://[^>]+/unsubscribe/lead-[0-9a-f]{32}\.[\w-]{22}\?lang=en>", welcome["List-Unsubscribe"]
    )
    path = unsubscribe_path(welcome)
    assert ann["lead_id"] in path
    text, html = (welcome.get_body(("plain",)).get_content(), welcome.get_body(("html",)).get_content())
    assert path in text and path in html

    # A link scanner's GET shows the page and unsubscribes nobody.
    page = await http.get(path)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert 'method="post"' in page.text and page.headers["cache-control"] == "no-store"
    assert "配信を停止する" in (await http.get(path.replace("lang=en", "lang=ja"))).text

    # Forged and cross-lead tokens, and a POST without RFC 8058's body, change nothing.
    mac = path.split(".")[-1].split("?")[0]
    forged = path.replace(mac, mac[::-1])
    cross = path.replace(ann["lead_id"], bo["lead_id"])  # Ann's signature on Bo's id
    for bad in (forged, cross):
        answer = await http.post(bad, data={"List-Unsubscribe": "One-Click"})
        assert answer.status_code == 404 and "not valid" in answer.text
    assert (await http.post(path, data={"something": "else"})).status_code == 400
    view = await eventually(http, f"/v1/leads/{ann['lead_id']}", lambda v: v["journeys"])
    assert view["consent"] == "unknown"
    assert (await eventually(http, f"/v1/leads/{bo['lead_id']}", lambda v: v["journeys"]))["consent"] == "unknown"

    # Ann attended a webinar (20 points) before she had enough.
    webinar = {"events": [{"type": "webinar_attended"}]}
    assert (await http.post(f"/v1/leads/{ann['lead_id']}/events", json=webinar, headers=AUTH)).is_success
    await eventually(http, f"/v1/leads/{ann['lead_id']}", lambda v: v["score"] == 20)

    # The mail client's one-click: a real POST with the RFC 8058 body, no login.
    clicked = await http.post(path, content=b"List-Unsubscribe=One-Click",
                              headers={"content-type": "application/x-www-form-urlencoded"})  # fmt: skip
    assert clicked.status_code == 200, clicked.text
    view = await eventually(http, f"/v1/leads/{ann['lead_id']}", lambda v: v["consent"] == "opted_out")
    record = view["consents"][-1]
    assert (record["source"], record["status"]) == ("unsubscribe_link", "opted_out") and "RFC 8058" in record["wording"]
    # The lead's own workflow takes the unsubscribe as an event too: the playbook's scoring reacts (-20 in the
    # default playbook), and the workflow, the one writer of touchpoints, stores it once (the email report
    # counts it against the last mail).
    view = await eventually(http, f"/v1/leads/{ann['lead_id']}", lambda v: unsubscribe_points(v) is not None)
    assert unsubscribe_points(view) == -20
    timeline = await eventually(http, f"/v1/leads/{ann['lead_id']}/timeline",
                                lambda t: "unsubscribe" in [p["type"] for p in t["touchpoints"]])  # fmt: skip
    assert [p["type"] for p in timeline["touchpoints"]].count("unsubscribe") == 1
    # The address is on the suppression list too, readable for operators; Bo's is not.
    listed = (await http.get("/v1/suppressions?reason=unsubscribed", headers=AUTH)).json()
    assert [(e["address"], e["lead_id"]) for e in listed["items"]] == [("ann@example.com", ann["lead_id"])]

    # The journey's case study comes due: skipped for Ann, sent to Bo.
    await inbox.wait_for(lambda m: "bo@example.com" in m["X-Envelope-To"] and "pipeline" in m["Subject"], 30)
    view = await eventually(http, f"/v1/leads/{ann['lead_id']}", lambda v: v["nurture_holds"])
    hold = view["nurture_holds"][0]
    assert (hold["template"], hold["action"]) == ("case_study", "skipped") and "unsubscribe_link" in hold["reason"]

    # Operational mail still flows: Ann (grade A) reaches SQL, her rep is notified (no unsubscribe there).
    events = [{"type": "download"}, {"type": "page_view", "url": "https://example.com/pricing"},
              {"type": "form_submit", "name": "demo request"}]  # fmt: skip
    assert (await http.post(f"/v1/leads/{ann['lead_id']}/events", json={"events": events}, headers=AUTH)).is_success
    rep_mail = (await inbox.wait_for(lambda m: m["X-Leadflow-Kind"] == "rep_new_lead"))[0]
    assert rep_mail["List-Unsubscribe"] is None and rep_mail["List-Unsubscribe-Post"] is None
    assert "/unsubscribe/" not in rep_mail.get_body(("plain",)).get_content()  # (its score reasons may name it)
    await asyncio.sleep(1)
    assert [m["Subject"] for m in inbox.to("ann@example.com")] == [welcome["Subject"]]  # one nurture mail, ever
