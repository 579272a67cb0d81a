"""Sources as data: the source map, the touch unit, original/latest source, provenance and BANT budget."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from rules import PlaybookError, decide, load_playbook_text
from rules.model import AssignRep, EventsReceived, LeadState, LeadUpserted, Rep, RepAssigned, TouchLogged, TrackedEvent
from rules.profile import parse_amount
from rules.sources import SourceMap, compile_sources, match_key, touch_from_event

T0 = datetime(2026, 4, 1, 9, 0, tzinfo=UTC)
DEFAULT = load_playbook_text((Path(__file__).resolve().parent.parent / "playbooks" / "default.yaml").read_text())
SOURCES = DEFAULT.sources


def event(event_id: str, url: str | None = None, at: datetime = T0, **properties: object) -> TrackedEvent:
    return TrackedEvent(event_id, "page_view", at, url, None, dict(properties))


# ---------------------------------------------------------------- the source map


@pytest.mark.parametrize(
    "variant",
    [
        "LinkedIn",
        "linkedin",
        " LINKEDIN ",
        "\uff2c\uff49\uff4e\uff4b\uff45\uff44\uff29\uff4e",
        "linkedin.com",
        "lnkd.in",
    ],
)
def test_variants_fold_into_one_canonical_source(variant: str) -> None:
    assert SOURCES.canonical(variant) == ("linkedin", "social")


def test_linkedin_ads_is_linkedin_in_the_paid_category() -> None:
    assert SOURCES.canonical("LinkedIn Ads") == ("linkedin", "paid")
    assert SOURCES.canonical("linkedin_ads") == ("linkedin", "paid")


def test_an_unmapped_source_keeps_a_folded_name_and_no_category() -> None:
    assert SOURCES.canonical(" Spring  Campaign ") == ("spring campaign", None)
    assert SOURCES.canonical("Expo-2026") == ("expo-2026", None)
    assert match_key("Spring-Campaign") == match_key("spring  campaign") == "spring_campaign"


def test_the_playbook_map_extends_and_overrides_the_seed() -> None:
    custom = SourceMap.model_validate(
        {
            "map": [
                {"source": "nikkei", "category": "paid", "match": ["Nikkei XTECH", "nikkei.com"]},
                {"source": "linkedin", "category": "paid", "match": ["linkedin"]},
            ],
            "mediums": {"event": ["expo-booth"]},
            "own_domains": ["example.com"],
        }
    )
    compiled = compile_sources(custom)
    assert compiled.canonical("nikkei xtech") == ("nikkei", "paid")
    assert compiled.canonical("LinkedIn") == ("linkedin", "paid")
    assert compiled.mediums["expo_booth"] == "event"


def test_a_playbook_with_an_unknown_category_is_refused_with_its_line() -> None:
    text = DEFAULT_TEXT + "\nsources:\n  map:\n    - {source: foo, category: billboard}\n"
    with pytest.raises(PlaybookError) as err:
        load_playbook_text(text)
    assert "sources.map[0].category" in str(err.value)


DEFAULT_TEXT = (Path(__file__).resolve().parent.parent / "playbooks" / "default.yaml").read_text()


# ---------------------------------------------------------------- one touch, one unit


def test_utm_from_the_url_is_one_unit() -> None:
    url = "https://example.com/lp?utm_source=LinkedIn&utm_medium=cpc&utm_campaign=q4&utm_content=a&utm_term=crm"
    touch = touch_from_event(SOURCES, event("e1", url, utm_medium="email"), T0)
    assert touch is not None
    assert (touch.channel, touch.source, touch.medium, touch.campaign, touch.content, touch.term) == (
        "paid",
        "linkedin",
        "cpc",
        "q4",
        "a",
        "crm",
    )


def test_utm_from_fields_when_the_url_has_none() -> None:
    touch = touch_from_event(
        SOURCES, event("e1", "https://example.com/", utm_source="newsletter", utm_medium="email"), T0
    )
    assert touch is not None and (touch.channel, touch.source, touch.campaign) == ("email", "newsletter", None)


@pytest.mark.parametrize(
    ("click_id", "source"), [("gclid", "google"), ("fbclid", "facebook"), ("msclkid", "bing"), ("yclid", "yandex")]
)
def test_a_click_id_is_a_paid_touch_from_its_network(click_id: str, source: str) -> None:
    touch = touch_from_event(SOURCES, event("e1", f"https://example.com/?{click_id}=abc"), T0)
    assert touch is not None and (touch.channel, touch.source, touch.click_id) == ("paid", source, click_id)


def test_the_referrer_decides_when_nothing_else_does() -> None:
    search = touch_from_event(SOURCES, event("e1", "https://example.com/", referrer="https://www.google.com/"), T0)
    other = touch_from_event(SOURCES, event("e2", "https://example.com/", referrer="https://blog.partner.io/x"), T0)
    assert search is not None and (search.channel, search.source) == ("organic", "google")
    assert other is not None and (other.channel, other.source) == ("referral", "blog.partner.io")


def test_own_domain_referrers_and_plain_events_are_no_touch() -> None:
    own = compile_sources(SourceMap(own_domains=["example.com"]))
    assert touch_from_event(own, event("e1", "https://example.com/b", referrer="https://www.example.com/a"), T0) is None
    assert touch_from_event(SOURCES, event("e2", "https://example.com/pricing"), T0) is None


# ---------------------------------------------------------------- original and latest source on the lead


def form(state: LeadState, at: datetime, origin: str = "form", **attributes: object) -> None:
    decide(state, LeadUpserted({"email": "ann@example.com", **attributes}, origin=origin), at, DEFAULT)


def test_tracking_an_existing_whitepaper_lead_keeps_its_source() -> None:
    """The bug: POST /v1/events merged `source: tracking` into every lead it touched."""
    state = LeadState("lead-1")
    form(state, T0, source="whitepaper")
    tracked = EventsReceived([event("e1")], {"email": "ann@example.com", "source": "tracking"})
    decide(state, tracked, T0 + timedelta(hours=1), DEFAULT)
    assert state.attributes["source"] == "whitepaper"
    assert state.original_source is not None and state.original_source.source == "whitepaper"


def test_a_lead_created_by_tracking_gets_tracking_as_original_source_only() -> None:
    state = LeadState("lead-1")
    decide(state, EventsReceived([event("e1")], {"email": "ann@example.com"}), T0, DEFAULT)
    assert (state.attributes["source"], state.attributes["source_category"]) == ("tracking", "direct")
    form(state, T0 + timedelta(days=1), source="Webinar")
    assert state.attributes["source"] == "tracking"
    assert (state.attributes["latest_source"], state.attributes["latest_source_category"]) == ("webinar", "event")


def test_a_tracked_lead_whose_first_event_has_utm_takes_that_as_original_source() -> None:
    state = LeadState("lead-1")
    first = event("e1", "https://example.com/?utm_source=LinkedIn+Ads&utm_medium=paid_social&utm_campaign=q4")
    decide(state, EventsReceived([first], {"email": "ann@example.com"}), T0, DEFAULT)
    assert (state.attributes["source"], state.attributes["source_category"]) == ("linkedin", "paid")


def test_the_original_source_is_never_overwritten_and_the_latest_follows_touches() -> None:
    state = LeadState("lead-1")
    form(state, T0, source="whitepaper", utm_source="google", utm_medium="cpc")
    later = event(
        "e2", "https://example.com/?utm_source=newsletter&utm_medium=email&utm_campaign=may", at=T0 + timedelta(days=3)
    )
    decide(state, EventsReceived([later]), T0 + timedelta(days=3), DEFAULT)
    assert state.original_source is not None and state.latest_source is not None
    assert (state.original_source.source, state.original_source.channel) == ("whitepaper", "paid")
    assert (state.latest_source.source, state.latest_source.channel, state.latest_source.campaign) == (
        "newsletter",
        "email",
        "may",
    )
    assert state.attributes["source"] == "whitepaper" and state.attributes["latest_source"] == "newsletter"


def test_an_earlier_touch_found_later_is_the_original_source() -> None:
    """Issue 8 item 1: stitched anonymous visits count with their original times, and the original source is
    the first touch: a LinkedIn ad visit three days before the whitepaper form is where the lead came from."""
    state = LeadState("lead-1")
    form(state, T0, source="whitepaper")
    ad = "https://example.com/?utm_source=LinkedIn&utm_medium=paid_social"
    visit = event("anon-1", ad, at=T0 - timedelta(days=3))
    decide(state, EventsReceived([visit], origin="segment"), T0 + timedelta(hours=1), DEFAULT)
    assert state.original_source is not None and state.latest_source is not None
    assert (state.original_source.source, state.original_source.channel) == ("linkedin", "paid")
    assert state.latest_source.source == "whitepaper"  # the newest touch is still the form
    assert (state.attributes["source"], state.attributes["latest_source"]) == ("linkedin", "whitepaper")
    # A touch later than the first never replaces it.
    later = event("e-2", "https://example.com/?utm_source=newsletter&utm_medium=email", at=T0 + timedelta(days=1))
    decide(state, EventsReceived([later]), T0 + timedelta(days=1), DEFAULT)
    assert (state.attributes["source"], state.attributes["latest_source"]) == ("linkedin", "newsletter")


def test_a_second_visit_replaces_the_utm_unit_whole() -> None:
    state = LeadState("lead-1")
    form(state, T0, utm_source="google", utm_medium="cpc", utm_campaign="q4")
    form(state, T0 + timedelta(days=1), utm_source="linkedin")
    utm = {k: v for k, v in state.attributes.items() if k.startswith("utm_")}
    assert utm == {"utm_source": "linkedin"}


def test_a_later_form_adds_fields_and_never_blanks_known_ones_with_provenance() -> None:
    state = LeadState("lead-1")
    form(state, T0, origin="form:whitepaper", company="Acme", title="VP")
    form(state, T0 + timedelta(days=2), origin="import", company="", title=None, phone="+81 3 1234 5678")
    assert (state.attributes["company"], state.attributes["title"]) == ("Acme", "VP")
    origins = state.attribute_origins
    assert (origins["company"].origin, origins["company"].at) == ("form:whitepaper", T0)
    assert (origins["phone"].origin, origins["phone"].at) == ("import", T0 + timedelta(days=2))


def test_a_rep_touch_becomes_a_touchpoint_and_events_are_returned_once() -> None:
    state = LeadState("lead-1")
    form(state, T0)
    first = decide(state, EventsReceived([event("e1"), event("e1"), event("e2")]), T0, DEFAULT)
    again = decide(state, EventsReceived([event("e1")]), T0, DEFAULT)
    touch = decide(state, TouchLogged("t1", "call", T0, "rep-aiko", "left a message"), T0, DEFAULT)
    assert [t.event.id for t in first.touchpoints] == ["e1", "e2"] and again.touchpoints == []
    assert [(t.event.type, t.event.name, t.event.properties) for t in touch.touchpoints] == [
        ("touch.call", "rep-aiko", {"note": "left a message"})
    ]


# ---------------------------------------------------------------- source in rules


def playbook_with(section: str, rules: list[dict[str, object]]) -> str:
    doc = yaml.safe_load(DEFAULT_TEXT)
    doc[section]["rules"] = rules + doc[section]["rules"]
    return yaml.safe_dump(doc, allow_unicode=True)


RULES = playbook_with(
    "scoring",
    [
        {"id": "paid_touch", "when": 'event.channel == "paid" and event.source == "linkedin"', "points": 7},
        {"id": "from_event_marketing", "when": 'event.type == "x" and lead.source_category == "event"', "points": 3},
    ],
)


def test_source_and_category_are_usable_in_rules() -> None:
    pb = load_playbook_text(RULES)
    state = LeadState("lead-1")
    decide(state, LeadUpserted({"email": "a@example.com", "source": "Trade Show"}), T0, pb)
    click = event("e1", "https://example.com/?utm_source=linkedin&utm_medium=cpc")
    decide(state, EventsReceived([click, TrackedEvent("e2", "x", T0)]), T0, pb)
    assert [c.rule_id for c in state.score_changes] == ["paid_touch", "page_view", "from_event_marketing"]


# ---------------------------------------------------------------- BANT


@pytest.mark.parametrize(
    ("sent", "amount", "currency"),
    [
        (50000, 50000, None),
        ("50000", 50000, None),
        ("¥50,000", 50000, "JPY"),
        ("50,000円", 50000, "JPY"),
        ("$50k", 50000, "USD"),
        ("5万円", 50000, "JPY"),
        ("\uff11\uff10\uff10\uff10\uff10", 10000, None),
        ("12.5k", 12500, None),
    ],
)
def test_budget_is_numeric_where_numeric(sent: object, amount: int, currency: str | None) -> None:
    assert parse_amount(sent) == (amount, currency)


@pytest.mark.parametrize("sent", ["50k-100k", "unknown", "$50k USD", "1,00", True])
def test_budget_that_is_no_amount_stays_as_sent(sent: object) -> None:
    assert parse_amount(sent) == (sent, None)


def test_lead_budget_compares_as_a_number_when_sent_as_text() -> None:
    text = playbook_with("grading", [{"id": "budget", "when": "lead.budget >= 50000", "points": 1}])
    pb = load_playbook_text(text)
    state = LeadState("lead-1")
    decide(state, LeadUpserted({"email": "a@example.com", "budget": "¥50,000"}), T0, pb)
    assert state.attributes["budget"] == 50000 and state.attributes["budget_currency"] == "JPY"
    assert "budget" in state.grade_reasons


def test_source_category_routes_and_picks_the_sla_policy() -> None:
    doc = yaml.safe_load(DEFAULT_TEXT)
    doc["routing"]["rules"].insert(0, {"id": "events_desk", "when": 'lead.source_category == "event"', "team": "japan"})
    doc["sla"]["policies"].insert(0, {"id": "event_leads", "when": 'lead.source == "webinar"', "first_touch": "2h"})
    pb = load_playbook_text(yaml.safe_dump(doc, allow_unicode=True))
    state = LeadState("lead-1")
    decide(state, LeadUpserted({"email": "a@example.com", "source": "ウェビナー", "title": "CTO"}), T0, pb)
    events = [TrackedEvent("p", "page_view", T0, "https://example.com/pricing"), TrackedEvent("d", "download", T0),
              TrackedEvent("c", "email_click", T0)]  # fmt: skip
    decision = decide(state, EventsReceived(events), T0, pb)
    (assign,) = [c for c in decision.commands if isinstance(c, AssignRep)]
    assert (assign.team, assign.reason) == ("japan", "rule events_desk")
    decide(state, RepAssigned(assign.key, Rep("rep-yui", "Yui", "yui@example.com", "japan", None, None), "rr"), T0, pb)
    assert state.followup is not None and state.followup.policy_id == "event_leads"
