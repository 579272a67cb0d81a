"""The post-render tracking transform and its signed tokens (unit), the playbook's switches (rules), and the
send activity applying them to a real SMTP server."""

from __future__ import annotations

import html
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from activities.email import Mailer
from activities.link_tracking import add_open_pixel, rewrite_links
from activities.rendering import EmailRenderer
from activities.tracking_tokens import TrackedSend, sign, tracking_key, verify
from rules import compiled_from_document, decide
from rules.engagement import engagement_event_id, tracking_for
from rules.model import LeadState, LeadUpserted, SendEmail
from rules.playbook import parse_yaml
from settings import Settings
from tests.conftest import Inbox
from tests.tracking_fixtures import (
    OFFER_HTML,
    click_journey_playbook,
    hrefs,
    html_part,
    pixel_src,
    templates_with_offer,
)

KEY = tracking_key("an-id-key")
BASE = "https://leads.example.com"
SEND = TrackedSend("lead-" + "a" * 32 + ":nurture:1", "offer", "split=b")


def test_links_are_signed_redirects_and_the_rest_is_left_alone() -> None:
    body = rewrite_links(OFFER_HTML.replace("{{ unsubscribe_url }}", BASE + "/unsubscribe/t"), SEND, KEY, BASE)
    links = [html.unescape(h) for h in hrefs(body)]
    tracked = [h for h in links if h.startswith(BASE + "/t/c/")]
    assert len(tracked) == 2
    targets = [verify(h.removeprefix(BASE + "/t/c/"), KEY) for h in tracked]
    assert [t[1] for t in targets if t] == [
        "https://example.com/pricing?plan=team&ref=mail",
        "https://example.com/demo",
    ]
    assert all(t is not None and t[0] == SEND for t in targets)
    # mailto, anchors, opted-out links and leadflow's own links keep their target.
    assert {"mailto:sales@example.com", "#top", "https://example.com/private", BASE + "/unsubscribe/t"} <= set(links)
    own = f'<a href="{BASE}/unsubscribe/x">stop</a>'
    assert rewrite_links(own, SEND, KEY, BASE) == own


def test_the_pixel_goes_before_the_end_of_the_body() -> None:
    body = add_open_pixel(OFFER_HTML, SEND, KEY, BASE)
    src = pixel_src(body)
    assert src is not None and body.index(src) < body.lower().index("</body>")
    token = html.unescape(src).removeprefix(BASE + "/t/o/").removesuffix(".gif")
    assert verify(token, KEY) == (SEND, None)
    assert pixel_src(add_open_pixel("<p>no body tag</p>", SEND, KEY, BASE)) is not None


def test_a_token_altered_in_any_way_or_signed_with_another_key_is_refused() -> None:
    token = sign(SEND, KEY, "https://example.com/pricing")
    payload, mac = token.split(".")
    forged = sign(SEND, tracking_key("another-key"), "https://evil.example")
    assert verify(token, KEY) is not None
    assert verify(forged, KEY) is None
    assert verify(forged.split(".")[0] + "." + mac, KEY) is None  # another target under our MAC
    assert verify(payload[:-1] + ("A" if payload[-1] != "A" else "B") + "." + mac, KEY) is None
    assert verify(payload, KEY) is None and verify("", KEY) is None and verify("x" * 10_000, KEY) is None


def test_open_and_click_ids_repeat_within_the_window_only() -> None:
    at = datetime(2026, 5, 1, 10, 0, 5, tzinfo=UTC)
    key = SEND.send_key
    assert engagement_event_id("email_open", key, at, 3600) == engagement_event_id(
        "email_open", key, at + timedelta(minutes=50), 3600
    )
    assert engagement_event_id("email_open", key, at, 3600) != engagement_event_id(
        "email_open", key, at + timedelta(hours=1), 3600
    )
    one = engagement_event_id("email_click", key, at, 3600, "https://a.example")
    assert one != engagement_event_id("email_click", key, at, 3600, "https://b.example")


def _first_send(playbook_text: str) -> SendEmail:
    pb = compiled_from_document(parse_yaml(playbook_text).document, "v")
    state = LeadState("lead-" + "b" * 32)
    now = datetime(2026, 5, 4, 10, tzinfo=UTC)
    decision = decide(state, LeadUpserted({"email": "ann@example.com"}), now, pb)
    (mail,) = [c for c in decision.commands if isinstance(c, SendEmail)]
    return mail


def test_the_playbook_switches_tracking_per_template_and_for_all_nurture() -> None:
    assert (_first_send(click_journey_playbook()).track_opens, _first_send(click_journey_playbook()).track_clicks) == (
        True,
        True,
    )
    per_template = _first_send(click_journey_playbook(tracking={"templates": {"offer": {"opens": False}}}))
    assert (per_template.track_opens, per_template.track_clicks) == (False, True)
    off = _first_send(click_journey_playbook(tracking={"opens": False, "clicks": False}))
    assert (off.track_opens, off.track_clicks) == (False, False)
    pb = parse_yaml(click_journey_playbook(tracking={"clicks": False, "templates": {"offer": {"clicks": True}}}))
    policy = compiled_from_document(pb.document, "v").model.email
    assert tracking_for(policy, "offer") == (True, True) and tracking_for(policy, "welcome") == (True, False)


@pytest.mark.parametrize(("opens", "clicks"), [(True, True), (False, True), (True, False)])
async def test_the_send_activity_tracks_what_the_command_and_the_settings_allow(
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    smtp: tuple[Inbox, int],
    tmp_path: Path,
    opens: bool,
    clicks: bool,
) -> None:
    inbox, _ = smtp
    settings = settings.model_copy(
        update={"templates_dir": templates_with_offer(tmp_path), "public_base_url": BASE, "track_opens": opens}
    )
    mailer = Mailer(settings, sessions, EmailRenderer(settings.templates_dir))
    lead = "lead-" + "c" * 32
    mail = SendEmail(
        f"{lead}:nurture:1",
        "nurture",
        "offer",
        "cy@example.com",
        {"lead": {}},
        variant="s=a",
        track_opens=True,
        track_clicks=clicks,
    )
    assert await mailer.send(mail, lead) == "sent"
    staff = SendEmail(f"{lead}:rep_notify:2", "rep_notify", "offer", "rep@example.com", {"lead": {}})
    assert await mailer.send(staff, lead) == "sent"
    nurture, rep = (html_part(m) for m in inbox.messages)
    key = tracking_key(settings.secret("id_key"))
    tracked = [h for h in map(html.unescape, hrefs(nurture)) if h.startswith(BASE + "/t/c/")]
    assert len(tracked) == (2 if clicks else 0)
    for link in tracked:
        assert verify(link.removeprefix(BASE + "/t/c/"), key) is not None
    assert (pixel_src(nurture) is not None) == opens
    # Operational mail is never tracked; the text part never is.
    assert pixel_src(rep) is None and "/t/c/" not in rep
    assert "/t/" not in str(inbox.messages[0].get_body(preferencelist=("plain",)).get_content())
