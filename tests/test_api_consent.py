"""Consent over HTTP (dev server + worker + API + real SMTP): a form's opt-in on POST /v1/leads, and
POST /v1/leads/{id}/consent, under a playbook that requires opt-in."""

from __future__ import annotations

import httpx
import pytest
import yaml

from settings import ROOT
from tests.conftest import Inbox
from tests.test_integration import AUTH, dev_server, eventually, stack  # noqa: F401  (fixtures)

pytestmark = pytest.mark.integration


async def test_consent_recorded_through_the_api_decides_nurture(
    monkeypatch: pytest.MonkeyPatch,
    stack: httpx.AsyncClient,  # noqa: F811
    smtp: tuple[Inbox, int],
) -> None:
    http, (inbox, _) = stack, smtp
    monkeypatch.setattr("api.deps.PLAYBOOK_CHECK_SECONDS", 0.0)  # new leads pin the publication at once
    doc = yaml.safe_load((ROOT / "playbooks" / "default.yaml").read_text(encoding="utf-8"))
    doc["email"] = {"require_opt_in": True}
    published = await http.post(
        "/v1/playbooks", json={"playbook": yaml.safe_dump(doc, allow_unicode=True), "author": "test"}, headers=AUTH
    )
    assert published.status_code == 201, published.text

    # Opted in on the form: the welcome goes out, and the evidence is on the lead.
    form_consent = {"status": "opted_in", "wording": "Send me product news", "form_id": "wp-2026"}
    created = await http.post(
        "/v1/leads", json={"email": "ida@example.com", "first_name": "Ida", "consent": form_consent}, headers=AUTH
    )
    assert created.status_code == 202, created.text
    ida = created.json()["lead_id"]
    await inbox.wait_for(lambda m: "ida@example.com" in m["X-Envelope-To"])
    view = await eventually(http, f"/v1/leads/{ida}", lambda v: v["consents"])
    assert view["consent"] == "opted_in" and "consent" not in view["attributes"]
    assert {k: view["consents"][0][k] for k in ("status", "source", "channel", "wording", "form_id")} == {
        "status": "opted_in",
        "source": "form",
        "channel": "email",
        "wording": "Send me product news",
        "form_id": "wp-2026",
    }

    # No consent: still a lead (scored, routed), but the welcome is skipped and the live view says why.
    created = await http.post("/v1/leads", json={"email": "jo@example.com"}, headers=AUTH)
    jo = created.json()["lead_id"]
    view = await eventually(http, f"/v1/leads/{jo}", lambda v: v["nurture_holds"])
    assert (view["consent"], view["nurture_holds"][0]["action"]) == ("unknown", "skipped")
    assert "no email opt-in" in view["nurture_holds"][0]["reason"]
    assert inbox.to("jo@example.com") == []

    # The person withdraws by phone; the answer shows the consent that now decides.
    withdrawn = await http.post(
        f"/v1/leads/{ida}/consent", json={"status": "opted_out", "wording": "asked by phone"}, headers=AUTH
    )
    assert withdrawn.status_code == 200, withdrawn.text
    body = withdrawn.json()
    assert body["consent"] == "opted_out" and [c["source"] for c in body["consents"]] == ["form", "api"]

    # Bad input is a 4xx that says what to fix; an unknown lead is a 404.
    for bad in ({"status": "maybe"}, {"status": "opted_in", "source": "unsubscribe_link"}, {}):
        answer = await http.post(f"/v1/leads/{ida}/consent", json=bad, headers=AUTH)
        assert answer.status_code == 422, answer.text
    assert "status" in (await http.post(f"/v1/leads/{ida}/consent", json={}, headers=AUTH)).text
    missing = await http.post(f"/v1/leads/lead-{'0' * 32}/consent", json={"status": "opted_in"}, headers=AUTH)
    assert missing.status_code == 404
    assert (await http.post(f"/v1/leads/{ida}/consent", json={"status": "opted_in"})).status_code == 401
