"""Templates marketers work with: the locale a lead's mail is written in, Japanese variants of every shipped
template, and POST /v1/templates/{name}:preview for a sample or a stored lead (no header injection)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from activities.rendering import EmailRenderer
from api.main import create_app
from rules import compiled_from_document, decide
from rules.locale import lead_locale
from rules.model import LeadSnapshot, LeadState, LeadUpserted, SendEmail
from rules.playbook import parse_yaml
from rules.preview import preview_email
from settings import ROOT
from store import repo
from store.db import make_engine, make_sessionmaker
from tests.test_robustness import AUTH, offline_settings

NOW = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)  # a Monday, 10:00 in Tokyo
SHIPPED = ("welcome", "case_study", "rep_new_lead", "sla_reminder", "sla_escalation", "manager_digest")
STORED = "lead-" + "5" * 32


def default_playbook(locale: str | None = None):  # type: ignore[no-untyped-def]
    document = parse_yaml((ROOT / "playbooks" / "default.yaml").read_text(encoding="utf-8")).document
    if locale:
        document["email"] = {**document.get("email", {}), "locale": locale}
    return compiled_from_document(document, "test")


@pytest.mark.parametrize(
    ("attributes", "default", "expected"),
    [
        ({"locale": "ja-JP", "country": "US"}, "en", "ja"),  # the lead's own locale wins
        ({"locale": "en_GB", "country": "JP"}, "ja", "en"),
        ({"country": "JP"}, "en", "ja"),
        ({"country": "jp"}, None, "ja"),
        ({"country": "日本"}, "en", "ja"),
        ({"country": "US"}, "ja", "en"),
        ({"country": "FR"}, "ja", "ja"),  # no shipped language for France: the playbook's
        ({"locale": "not a tag", "country": "DE"}, None, None),  # None: the sender's LEADFLOW_DEFAULT_LOCALE
        ({}, "en", "en"),
    ],
)
def test_the_locale_comes_from_the_lead_then_its_country_then_the_playbook(
    attributes: dict[str, str], default: str | None, expected: str | None
) -> None:
    assert lead_locale(attributes, default) == expected


def test_a_japanese_lead_is_sent_the_japanese_welcome_and_reps_get_the_playbooks_language() -> None:
    pb = default_playbook()
    state = LeadState(lead_id=STORED)
    lead = {"email": "taro@example.co.jp", "last_name": "山田", "first_name": "太郎", "country": "JP"}
    commands = decide(state, LeadUpserted(lead), NOW, pb).commands
    welcome = next(c for c in commands if isinstance(c, SendEmail))
    assert (welcome.template, welcome.kind, welcome.locale) == ("welcome", "nurture", "ja")
    rendered = EmailRenderer(ROOT / "templates").render(
        welcome.template, {**welcome.context, "sender": {"name": "Acme", "postal_address": "", "contact": ""},
                           "unsubscribe_url": "https://x/u"}, welcome.locale,
    )  # fmt: skip
    assert rendered.locale == "ja" and "山田 太郎 様" in rendered.text and "ご関心をお寄せいただき" in rendered.subject
    # Rep notifications are operational mail in the team's (the playbook's) language, whatever the lead's.
    assert preview_email("rep_new_lead", "notification", lead, pb, NOW).locale is None
    assert preview_email("rep_new_lead", "notification", lead, default_playbook("ja"), NOW).locale == "ja"


def test_every_shipped_template_has_an_english_and_a_japanese_variant() -> None:
    renderer = EmailRenderer(ROOT / "templates")
    assert set(SHIPPED) <= renderer.available()
    assert "_layouts" not in renderer.available() and "_partials" not in renderer.available()
    for name in SHIPPED:
        assert renderer.locales(name) == ["en", "ja"], name


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    settings = offline_settings(
        tmp_path, sender_name="株式会社リードフロー", sender_postal_address="東京都渋谷区道玄坂1-2-3"
    )

    async def store_a_lead() -> None:
        engine = make_engine(settings.resolved_database_url())
        async with make_sessionmaker(engine)() as session:
            attributes = {"email": "hanako@example.co.jp", "first_name": "花子", "last_name": "佐藤",
                          "company": "佐藤商事株式会社", "country": "JP"}  # fmt: skip
            snap = LeadSnapshot(STORED, attributes, "mql", 55, "A", None, None, NOW, NOW, "v1", None)
            await repo.project_lead(session, snap)
        await engine.dispose()

    asyncio.run(store_a_lead())
    with TestClient(create_app(settings), raise_server_exceptions=False) as test_client:
        yield test_client


def test_preview_renders_a_stored_lead_in_its_language_with_the_unsubscribe_headers(client: TestClient) -> None:
    answer = client.post("/v1/templates/case_study:preview", json={"lead_id": STORED}, headers=AUTH)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["kind"], body["locale"], body["to"]) == ("nurture", "ja", "hanako@example.co.jp")
    assert body["subject"] == "【導入事例】佐藤商事株式会社様と同規模の営業チームが、有望商談を2倍に伸ばした方法"
    assert "佐藤商事株式会社\n佐藤 花子 様" in body["text"] and "いつもお世話になっております" in body["text"]
    url = body["headers"]["List-Unsubscribe"].strip("<>")
    assert f"/unsubscribe/{STORED}." in url and body["headers"]["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    for part in (body["text"], body["html"]):
        assert url in part and "東京都渋谷区道玄坂1-2-3" in part and "株式会社リードフロー" in part

    # The same template in English for a sample lead; a notification carries no unsubscribe.
    english = client.post("/v1/templates/case_study:preview", json={"locale": "en"}, headers=AUTH).json()
    assert english["locale"] == "en" and english["subject"] == "How a team like Acme Corp doubled qualified pipeline"
    rep = client.post("/v1/templates/rep_new_lead:preview", json={"lead_id": STORED, "locale": "ja"}, headers=AUTH)
    assert rep.status_code == 200, rep.text
    assert rep.json()["kind"] == "notification" and rep.json()["headers"] == {}
    assert "unsubscribe" not in rep.json()["text"] and "お疲れさまです" in rep.json()["text"]
    digest = client.post("/v1/templates/manager_digest:preview", json={"locale": "ja"}, headers=AUTH).json()
    assert digest["subject"].startswith("【期限超過フォローアップ】Inside Sales")
    assert "1件" in digest["subject"]


def test_preview_keeps_subject_and_to_on_one_line_whatever_the_lead_fields_hold(client: TestClient) -> None:
    hostile = {"company": "Evil Corp\r\nBcc: victim@example.com", "first_name": "Ann\nX-Injected: yes"}
    for locale in ("en", "ja"):
        answer = client.post("/v1/templates/case_study:preview", json={"lead": hostile, "locale": locale}, headers=AUTH)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert "\n" not in body["subject"] and "\r" not in body["subject"] and "\n" not in body["to"]
        assert "Evil Corp Bcc: victim@example.com" in body["subject"]


def test_preview_answers_4xx_that_say_what_to_fix(client: TestClient) -> None:
    cases = [
        ("nope", {}, 404, 'no email template "nope"'),
        ("_layouts", {}, 422, "name"),  # layouts and partials are not templates
        ("welcome", {"lead_id": "lead-" + "1" * 32}, 404, "no lead"),
        ("welcome", {"locale": "japanese"}, 422, "locale"),
        ("welcome", {"kind": "newsletter"}, 422, "kind"),
    ]
    for name, body, code, detail in cases:
        answer = client.post(f"/v1/templates/{name}:preview", json=body, headers=AUTH)
        assert (answer.status_code, detail in answer.json()["detail"]) == (code, True), answer.text
    assert client.post("/v1/templates/welcome:preview", json={}).status_code == 401
    listed = client.get("/v1/templates", headers=AUTH).json()
    assert {"name": "welcome", "locales": ["en", "ja"], "kind": "nurture"} in listed


@pytest.mark.parametrize("locale", ["en", "ja"])
def test_staff_mail_shows_times_as_people_read_them(locale: str) -> None:
    """The engine puts ISO times in a mail's context; reps read "2026-03-03 01:00 UTC", not microseconds."""
    pb = default_playbook(locale)
    for template in ("rep_new_lead", "sla_reminder", "sla_escalation"):
        mail = preview_email(template, "notification", {"email": "taro@example.co.jp"}, pb, NOW)
        due = mail.context["due_at"]
        assert isinstance(due, str) and "T" in due  # what the engine hands over
        rendered = EmailRenderer(ROOT / "templates").render(mail.template, mail.context, mail.locale)
        shown = datetime.fromisoformat(due).astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
        assert shown in rendered.text and shown in rendered.html, (template, rendered.text)
        assert due not in rendered.text and due not in rendered.subject


def test_the_when_filter_leaves_what_is_no_time_as_it_came() -> None:
    from activities.rendering import when

    assert when("2026-03-03T01:00:00.123456+00:00") == "2026-03-03 01:00 UTC"
    assert when("2026-03-03T10:00:00+09:00") == "2026-03-03 01:00 UTC"
    assert (when(None), when("soon")) == ("", "soon")
