"""The accept/reject links' tokens (activities/sal_tokens.py): signed, bound to lead, assignment and rep, with
no personal data in clear; and the rep's notification renders them."""

from __future__ import annotations

from activities.rendering import EmailRenderer
from activities.sal_tokens import links, sal_key, sign, verify
from settings import ROOT

KEY = sal_key("an id key")
LEAD = "lead-" + "ab" * 16
ASSIGNMENT = f"{LEAD}:assign:3"


def test_a_token_names_the_lead_and_assignment_and_binds_the_rep_without_naming_them() -> None:
    token = sign(ASSIGNMENT, "rep-aiko.sato", KEY)
    assert "aiko" not in token and "@" not in token
    ticket = verify(token, KEY)
    assert ticket is not None and (ticket.lead_id, ticket.assignment_key) == (LEAD, ASSIGNMENT)
    assert ticket.held_by("rep-aiko.sato", KEY) and not ticket.held_by("rep-ben", KEY)


def test_forged_altered_or_otherwise_keyed_tokens_are_refused() -> None:
    token = sign(ASSIGNMENT, "rep-aiko", KEY)
    lead, number, tag, mac = token.split(".")
    assert verify(f"{lead}.4.{tag}.{mac}", KEY) is None  # another assignment of the lead
    assert verify(f"{'lead-' + 'cd' * 16}.{number}.{tag}.{mac}", KEY) is None  # another lead
    assert verify(token, sal_key("another id key")) is None
    assert verify(token[:-1], KEY) is None and verify("", KEY) is None and verify("x" * 5000, KEY) is None


def test_the_reps_notification_carries_the_links_in_both_languages() -> None:
    urls = links("https://leads.example.com", ASSIGNMENT, "rep-aiko", KEY)
    assert urls["accept_url"].startswith("https://leads.example.com/sal/lead-") and urls["accept_url"].endswith(
        "accept"
    )
    context = {
        "owner": {"name": "Aiko", "email": "aiko@x.test", "team": "inside-sales"}, "lead_id": LEAD,
        "lead": {"email": "kim@x.test", "company": "Kim Co"}, "stage": "sql", "score": 60, "grade": "B",
        "reasons": [], "due_at": "2026-03-03T09:00:00+00:00", "policy": "default",
        "acceptance": {"assignment": ASSIGNMENT, "rep_id": "rep-aiko", "due_at": None, "reasons": ["other"]},
        "sender": {"name": "leadflow", "postal_address": "", "contact": ""}, "unsubscribe_url": None, **urls,
    }  # fmt: skip
    renderer = EmailRenderer(ROOT / "templates")
    for locale in ("en", "ja"):
        mail = renderer.render("rep_new_lead", context, locale)
        for url in urls.values():
            assert url in mail.text and url in mail.html
    without = {k: v for k, v in context.items() if k not in urls}
    assert "/sal/" not in renderer.render("rep_new_lead", without, "en").text  # older mail context: no links
