"""Unsubscribe tokens and the RFC 8058 headers: signed per lead, never forged or moved to another lead,
valid after a key rotation; and a nurture template that drops the unsubscribe link is refused."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from activities.email import Mailer
from activities.rendering import EmailRenderer, TemplateProblem
from activities.unsubscribe import ONE_CLICK, Unsubscribe, lead_of_token, sending_gaps, unsubscribe_token
from rules.model import SendEmail
from settings import ROOT, Settings

ANN = "lead-" + "a" * 32
BEN = "lead-" + "b" * 32


def test_a_token_names_its_lead_only_under_an_accepted_key() -> None:
    token = unsubscribe_token(ANN, "key-1")
    assert lead_of_token(token, ["key-1"]) == ANN
    assert "@" not in token and token.startswith(ANN + ".")  # a keyed hash, no address in clear
    assert lead_of_token(token, ["another-key"]) is None  # forged: signed with a key we do not hold


def test_a_token_cannot_be_moved_to_another_lead_or_altered() -> None:
    token = unsubscribe_token(ANN, "key-1")
    mac = token.split(".", 1)[1]
    assert lead_of_token(f"{BEN}.{mac}", ["key-1"]) is None  # Ann's signature on Ben's id
    flipped = mac[:-1] + ("A" if mac[-1] != "A" else "B")
    for bad in (flipped, mac[:-1], mac + "A", ""):
        assert lead_of_token(f"{ANN}.{bad}", ["key-1"]) is None
    for junk in ("", ".", ANN, "x" * 5000, f"{ANN}.{mac}\n", f"{ANN.upper()}.{mac}"):
        assert lead_of_token(junk, ["key-1"]) is None


def test_links_in_old_mail_keep_working_after_a_key_rotation() -> None:
    old = unsubscribe_token(ANN, "old-key")
    settings = Settings(unsubscribe_key="new-key", unsubscribe_keys_previous="older-key, old-key")
    assert settings.unsubscribe_keys() == ["new-key", "older-key", "old-key"]
    assert lead_of_token(old, settings.unsubscribe_keys()) == ANN
    assert lead_of_token(old, ["new-key"]) is None  # once the old key is dropped, its links are gone
    new = Unsubscribe.for_lead(settings, ANN, None).url.rsplit("/", 1)[1]
    assert lead_of_token(new, ["new-key"]) == ANN  # new mail is signed with the new key


def test_the_headers_are_rfc_8058_shaped() -> None:
    settings = Settings(
        unsubscribe_key="k", public_base_url="https://mail.example.com/", unsubscribe_mailto="leave@example.com"
    )
    headers = Unsubscribe.for_lead(settings, ANN, "ja").headers()
    assert headers["List-Unsubscribe-Post"] == ONE_CLICK == "List-Unsubscribe=One-Click"
    https, mailto = headers["List-Unsubscribe"].split(", ")
    assert re.fullmatch(rf"<https://mail\.example\.com/unsubscribe/{ANN}\.[\w-]{{22}}\?lang=ja>", https)
    assert re.fullmatch(rf"<mailto:leave@example\.com\?subject=unsubscribe%20{ANN}\.[\w-]{{22}}>", mailto)
    assert "mailto" not in Unsubscribe.for_lead(Settings(unsubscribe_key="k"), ANN, None).headers()["List-Unsubscribe"]


def test_a_nurture_template_without_the_unsubscribe_link_is_refused(tmp_path: Path) -> None:
    """A marketer's template that does not extend the nurture layout would mail people with no way out."""
    bare = tmp_path / "email" / "bare"
    bare.mkdir(parents=True)
    for part, text in (("subject.txt", "Hi"), ("body.txt", "Buy now"), ("body.html", "<p>Buy now</p>")):
        (bare / part).write_text(text)
    settings = Settings(unsubscribe_key="k", templates_dir=tmp_path)
    mailer = Mailer(settings, None, EmailRenderer(tmp_path))  # type: ignore[arg-type]  # render needs no store
    mail = SendEmail(f"{ANN}:nurture:1", "nurture", "bare", "ann@example.com", {"lead": {}})
    with pytest.raises(TemplateProblem, match="no unsubscribe link in its text and html part"):
        mailer.render(mail, mailer.unsubscribe_for(mail, ANN))
    # The same template is fine as operational mail: no unsubscribe there.
    staff = SendEmail("k:rep_new_lead:1", "rep_new_lead", "bare", "rep@example.com", {"lead": {}})
    assert mailer.unsubscribe_for(staff, ANN) is None
    assert mailer.render(staff, None).text == "Buy now"


def test_every_shipped_nurture_variant_shows_sender_address_and_link_in_both_parts() -> None:
    settings = Settings(
        unsubscribe_key="k", sender_name="Acme KK", sender_postal_address="東京都千代田区丸の内1-1-1"
    ).model_copy(update={"templates_dir": ROOT / "templates"})
    mailer = Mailer(settings, None, EmailRenderer(settings.templates_dir))  # type: ignore[arg-type]
    for template in ("welcome", "case_study"):
        for locale in ("en", "ja"):
            mail = SendEmail(f"{ANN}:nurture:1", "nurture", template, "a@example.com", {"lead": {}}, None, locale)
            unsubscribe = mailer.unsubscribe_for(mail, ANN)
            assert unsubscribe is not None
            rendered = mailer.render(mail, unsubscribe)
            assert rendered.locale == locale
            for part in (rendered.text, rendered.html):
                assert unsubscribe.url in part and "Acme KK" in part and "東京都千代田区丸の内1-1-1" in part


def test_the_worker_is_told_what_makes_nurture_unlawful_or_its_one_click_ignored() -> None:
    bare = sending_gaps(Settings(unsubscribe_key="k", public_base_url="http://127.0.0.1:8000"))
    assert [gap.split(" ")[0] for gap in bare] == [
        "LEADFLOW_SENDER_NAME", "LEADFLOW_SENDER_POSTAL_ADDRESS", "LEADFLOW_PUBLIC_BASE_URL"]  # fmt: skip
    ready = Settings(
        unsubscribe_key="k", sender_name="Acme KK", sender_postal_address="東京都千代田区丸の内1-1-1",
        public_base_url="https://mail.example.com",
    )  # fmt: skip
    assert sending_gaps(ready) == []
