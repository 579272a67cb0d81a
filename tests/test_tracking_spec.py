"""rules/tracking_spec.py: Segment Spec messages as leadflow events (pure, no server)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from rules.tracking_spec import (
    SpecError,
    attributes_from_traits,
    email_of,
    event_from_message,
    event_id,
    event_time,
    event_type_for,
    visitor_keys,
)

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Viewed Pricing", "pricing_view"),
        ("pricing_viewed", "pricing_view"),
        ("Email Link Clicked", "email_click"),
        ("Whitepaper Downloaded", "download"),
        ("Demo Requested", "demo_request"),
        ("Quote Requested", "quote_requested"),  # unmapped: its snake_case form
        ("\uff57\uff45\uff42\uff49\uff4e\uff41\uff52\u3000\uff21ttended", "webinar_attended"),  # full-width folds
        ("資料請求", "track"),  # nothing ASCII to keep: the generic type, the name stays on the event
        ("42 Things", "track"),
    ],
)
def test_event_names_map_to_types(name: str, expected: str) -> None:
    assert event_type_for(name) == expected


def test_times_timestamp_first_then_skew_corrected_original_never_future() -> None:
    assert event_time({"timestamp": "2026-11-20T10:00:00Z"}, NOW) == datetime(2026, 11, 20, 10, tzinfo=UTC)
    # A device clock 1 h fast: sentAt - originalTimestamp (5 min) is what elapsed on the device.
    skewed = {"originalTimestamp": "2026-11-30T12:55:00+00:00", "sentAt": "2026-11-30T13:00:00+00:00"}
    assert event_time(skewed, NOW) == NOW - timedelta(minutes=5)
    assert event_time({"timestamp": "2026-12-30T00:00:00Z"}, NOW) == NOW
    assert event_time({}, NOW) == NOW
    with pytest.raises(SpecError, match="timestamp"):
        event_time({"timestamp": "last tuesday"}, NOW)
    with pytest.raises(SpecError, match="2000 and 2099"):
        event_time({"timestamp": "1970-01-01T00:00:00Z"}, NOW)


def test_a_skew_correction_cannot_take_the_time_out_of_the_range() -> None:
    # Each time is in range, but a device that sent a century after it recorded puts the event in 1926.
    century = {"originalTimestamp": "2000-01-01T00:00:00Z", "sentAt": "2099-12-31T00:00:00Z"}
    with pytest.raises(SpecError, match="2000 and 2099"):
        event_time(century, NOW)


def test_page_message_url_campaign_referrer_and_properties() -> None:
    msg = {
        "type": "page",
        "messageId": "m-1",
        "name": "Pricing",
        "properties": {"path": "/pricing", "pageTitle": "Plans", "nested": {"x": 1}},
        "context": {
            "page": {"url": "https://example.com/pricing", "referrer": "https://www.google.com/"},
            "campaign": {"source": "google", "medium": "cpc", "name": "q4"},
        },
        "timestamp": "2026-11-29T12:00:00Z",
    }
    event = event_from_message(msg, NOW)
    assert (event.id, event.type, event.name, event.url) == (
        "m-1",
        "page_view",
        "Pricing",
        "https://example.com/pricing",
    )
    assert event.at == NOW - timedelta(days=1)
    assert event.properties == {
        "path": "/pricing",
        "page_title": "Plans",
        "utm_source": "google",
        "utm_medium": "cpc",
        "utm_campaign": "q4",
        "referrer": "https://www.google.com/",
    }


def test_campaign_is_one_unit_never_mixed_with_utm_properties() -> None:
    msg = {"type": "track", "event": "Signed Up", "properties": {"utm_source": "newsletter"},
           "context": {"campaign": {"source": "google", "medium": "cpc"}}}  # fmt: skip
    assert event_from_message(msg, NOW).properties == {"utm_source": "newsletter"}


def test_messages_without_an_id_get_one_from_content_and_time() -> None:
    msg = {"type": "track", "event": "Signed Up", "userId": "u1", "timestamp": "2026-11-29T12:00:00Z"}
    assert event_id(msg) == event_id(msg | {"sentAt": "2026-11-30T00:00:00Z"})  # a retry: same event
    assert event_id(msg) != event_id(msg | {"timestamp": "2026-11-29T12:00:01Z"})
    assert event_id({"messageId": "x" * 300}).startswith("seg-")


def test_unusable_messages_say_what_to_fix() -> None:
    with pytest.raises(SpecError, match="event name"):
        event_from_message({"type": "track"}, NOW)
    with pytest.raises(SpecError, match="carries no event"):
        event_from_message({"type": "identify"}, NOW)


def test_email_comes_from_the_places_the_setting_allows() -> None:
    msg = {"userId": "Ken@Example.com", "context": {"traits": {"email": "ken@work.example"}}}
    assert email_of(msg, ("traits", "user_id")) == "ken@work.example"
    assert email_of(msg, ("user_id",)) == "Ken@Example.com"
    assert email_of({"userId": "crm-42"}, ("traits", "user_id")) is None
    assert email_of(msg, ()) is None


def test_visitor_handles_user_id_first_email_user_ids_excluded() -> None:
    assert visitor_keys({"userId": "crm-42", "anonymousId": "a-1"}) == ["user:crm-42", "anon:a-1"]
    assert visitor_keys({"userId": "ken@example.com", "anonymousId": "a-1"}) == ["anon:a-1"]
    assert visitor_keys({}) == []


def test_traits_become_a_lead_post() -> None:
    traits = {"email": "ken@example.com", "firstName": "Ken", "last_name": "Sato", "title": "CTO",
              "company": {"name": "Acme", "employee_count": 500, "industry": "saas"}, "address": {"country": "JP"},
              "planTier": "pro", "createdAt": "2020-01-01", "avatar": {"x": 1}}  # fmt: skip
    assert attributes_from_traits(traits) == {
        "email": "ken@example.com",
        "first_name": "Ken",
        "last_name": "Sato",
        "title": "CTO",
        "company": "Acme",
        "company_size": 500,
        "industry": "saas",
        "country": "JP",
        "fields": {"plan_tier": "pro"},
    }
    assert attributes_from_traits({"company": "Acme KK", "employees": "many"}) == {"company": "Acme KK"}
    # A country by name reaches the lead post, which cleans it as every door does (Japan -> JP).
    assert attributes_from_traits({"address": {"country": "Japan"}}) == {"country": "Japan"}


def test_cli_creates_lists_and_revokes_write_keys(tmp_path, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    import asyncio

    from cli.__main__ import main
    from settings import get_settings
    from store import ingest
    from store.db import make_engine, make_sessionmaker

    url = f"sqlite:///{tmp_path / 'store.db'}"
    monkeypatch.setenv("DATABASE_URL", url)
    get_settings.cache_clear()
    try:
        assert main(["write-key", "create", "website"]) == 0
        key_id, key = capsys.readouterr().out.splitlines()[:2]
        key_id = key_id.split()[0]
        assert key.startswith("lfw_")

        async def valid() -> bool:
            engine = make_engine(url)
            async with make_sessionmaker(engine)() as session:
                found = await ingest.write_key_valid(session, key)
            await engine.dispose()
            return found

        assert asyncio.run(valid())
        assert main(["write-key", "list"]) == 0 and "active" in capsys.readouterr().out
        assert main(["write-key", "revoke", key_id]) == 0
        assert not asyncio.run(valid())
        assert main(["write-key", "revoke", key_id]) == 1
    finally:
        get_settings.cache_clear()
