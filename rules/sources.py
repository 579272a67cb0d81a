"""Sources as data: the playbook's source map and the marketing touch an input carries.

Marketers type the same source many ways ("LinkedIn", "linkedin", "LinkedIn Ads"); reports, scoring and
routing need one name per source and one category per touch (seed 004: organic, paid, social, email,
referral, event, direct). The map is data in the playbook (``sources:``), laid over a built-in seed, so a
marketer folds a new variant without a code change. Pure: no I/O, no clock.

A touch is one unit (channel, source, medium, campaign, content, term): it is read from one place only
(the event URL's UTM query, else the event's or form's fields, else a click id, else the referrer), so two
visits never mix.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from typing import Any, Literal, get_args
from urllib.parse import parse_qs, urlsplit

from pydantic import BaseModel, ConfigDict, Field

from rules.model import SourceTouch, TrackedEvent

Category = Literal["organic", "paid", "social", "email", "referral", "event", "direct", "other"]
CATEGORIES: tuple[str, ...] = get_args(Category)
UTM_FIELDS = ("source", "medium", "campaign", "content", "term")
# Ad click ids the ad networks append to landing URLs: a click with one is a paid touch from that network.
CLICK_IDS = {
    "gclid": "google",
    "gbraid": "google",
    "wbraid": "google",
    "fbclid": "facebook",
    "msclkid": "bing",
    "yclid": "yandex",
    "li_fat_id": "linkedin",
    "ttclid": "tiktok",
}
# The source a lead created by tracking alone gets as its original source (rules, not the API, say so).
TRACKING_SOURCE = "tracking"
MAX_SOURCE_TEXT = 200


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SourceEntry(_Strict):
    source: str = Field(description="the canonical name reports and rules see, e.g. linkedin")
    category: Category
    match: list[str] = Field(default=[], description="variants folded into it: names, utm_source values, domains")


class SourceMap(_Strict):
    """The playbook's ``sources:`` section; entries and mediums extend the built-in seed (later wins)."""

    map: list[SourceEntry] = []
    # utm_medium values -> category (cpc -> paid); a medium decides the channel before the source does.
    mediums: dict[Category, list[str]] = {}
    # The site's own domains: a referrer from them is navigation, not a touch.
    own_domains: list[str] = []
    # Category of a source nobody mapped and no medium explains.
    unmapped_category: Category = "other"


SEED = SourceMap(
    map=[
        SourceEntry(source="google", category="organic", match=["google", "google.com", "google.co.jp"]),
        SourceEntry(source="bing", category="organic", match=["bing", "bing.com", "microsoft"]),
        SourceEntry(
            source="yahoo", category="organic", match=["yahoo", "yahoo.com", "yahoo.co.jp", "search.yahoo.co.jp"]
        ),
        SourceEntry(source="duckduckgo", category="organic", match=["duckduckgo", "duckduckgo.com"]),
        SourceEntry(source="yandex", category="organic", match=["yandex", "yandex.ru", "yandex.com"]),
        SourceEntry(source="linkedin", category="social", match=["linkedin", "linkedin.com", "lnkd.in"]),
        SourceEntry(source="linkedin", category="paid", match=["linkedin ads", "linkedin_ads", "linkedinads"]),
        SourceEntry(source="facebook", category="social", match=["facebook", "fb", "facebook.com", "m.facebook.com"]),
        SourceEntry(source="facebook", category="paid", match=["facebook ads", "meta ads"]),
        SourceEntry(source="instagram", category="social", match=["instagram", "ig", "instagram.com"]),
        SourceEntry(source="x", category="social", match=["x", "twitter", "twitter.com", "x.com", "t.co"]),
        SourceEntry(source="youtube", category="social", match=["youtube", "youtube.com", "youtu.be"]),
        SourceEntry(source="tiktok", category="social", match=["tiktok", "tiktok.com"]),
        SourceEntry(source="google_ads", category="paid", match=["google ads", "adwords", "google_ads"]),
        SourceEntry(source="newsletter", category="email", match=["newsletter", "email", "mailchimp", "hubspot email"]),
        SourceEntry(source="webinar", category="event", match=["webinar", "seminar"]),
        SourceEntry(source="trade_show", category="event", match=["trade show", "tradeshow", "exhibition", "expo"]),
        SourceEntry(source="referral", category="referral", match=["referral", "partner", "word of mouth"]),
        SourceEntry(source="whitepaper", category="organic", match=["whitepaper", "white paper", "ebook"]),
        SourceEntry(source="direct", category="direct", match=["direct", "(direct)", "none"]),
        SourceEntry(source=TRACKING_SOURCE, category="direct", match=[TRACKING_SOURCE]),
    ],
    mediums={
        "paid": [
            "cpc",
            "ppc",
            "paid",
            "paidsearch",
            "paid search",
            "paid social",
            "paidsocial",
            "display",
            "cpm",
            "cpv",
            "retargeting",
            "banner",
            "ads",
        ],
        "email": ["email", "e-mail", "newsletter", "mail"],
        "social": ["social", "social media", "sns", "organic social"],
        "organic": ["organic", "seo"],
        "referral": ["referral", "affiliate", "partner"],
        "event": ["event", "webinar", "conference", "trade show", "tradeshow", "booth", "seminar", "offline"],
    },
)


_SEPARATORS = re.compile(r"[\s_\-]+")


@lru_cache(maxsize=4096)  # a pure function of its text: the same few sources and mediums come again and again
def match_key(text: str) -> str:
    """Variants compare equal: NFKC (full-width), any case, and runs of spaces, `_`, `-` as one `_`."""
    folded = text if text.isascii() else unicodedata.normalize("NFKC", text)
    return _SEPARATORS.sub("_", folded.strip().casefold())


@dataclass(frozen=True)
class CompiledSources:
    """A source map ready for lookups: match key -> (canonical source, category)."""

    names: dict[str, tuple[str, str]]
    mediums: dict[str, str]
    own_domains: frozenset[str]
    unmapped_category: str
    categories: dict[str, str] = field(default_factory=dict)  # canonical source -> its first category

    def canonical(self, raw: str) -> tuple[str, str | None]:
        """The canonical name of ``raw`` and its mapped category (None when the map does not know it)."""
        key = match_key(raw)[:MAX_SOURCE_TEXT]
        found = self.names.get(key) or self.names.get(_bare_domain(key))
        if found:
            return found
        # Unmapped: kept as written, only width, case and spaces evened out ("Expo-2026" -> "expo-2026").
        return " ".join(unicodedata.normalize("NFKC", raw).casefold().split())[:MAX_SOURCE_TEXT], None

    def category_of(self, source: str) -> str | None:
        return self.categories.get(source)


def compile_sources(custom: SourceMap | None) -> CompiledSources:
    names: dict[str, tuple[str, str]] = {}
    mediums: dict[str, str] = {}
    categories: dict[str, str] = {}
    for layer in (SEED, custom or SourceMap()):
        for entry in layer.map:
            source = match_key(entry.source)
            categories.setdefault(source, entry.category)
            # The canonical name keeps its first category; listed variants (later layers too) win.
            names.setdefault(source, (source, categories[source]))
            for variant in entry.match:
                names[match_key(variant)] = (source, entry.category)
        for category, values in layer.mediums.items():
            for value in values:
                mediums[match_key(value)] = category
    own = frozenset(_bare_domain(match_key(d)) for d in (custom or SourceMap()).own_domains)
    unmapped = (custom or SourceMap()).unmapped_category
    return CompiledSources(names, mediums, own, unmapped, categories)


def _bare_domain(key: str) -> str:
    return key[4:] if key.startswith("www.") else key


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, bool):
        return None
    text = str(value).strip()
    return text[:MAX_SOURCE_TEXT] if text else None


def _first(query: dict[str, list[str]], key: str) -> str | None:
    values = query.get(key)
    return _text(values[0]) if values else None


def _query(url: str | None) -> dict[str, list[str]]:
    if not url or "?" not in url:
        return {}
    if "utm_" not in url and not any(click in url for click in CLICK_IDS):
        return {}  # most page views: nothing here for the source
    try:
        return parse_qs(urlsplit(url).query)
    except ValueError:
        return {}


def _referrer_host(referrer: Any) -> str | None:
    text = _text(referrer)
    if not text:
        return None
    try:
        host = urlsplit(text if "//" in text else f"//{text}").hostname
    except ValueError:
        return None
    return _bare_domain(host.lower()) if host else None


def build_touch(
    sources: CompiledSources,
    at: datetime,
    origin: str,
    *,
    utm: dict[str, str | None],
    declared_source: str | None = None,
    click_id: str | None = None,
    referrer: Any = None,
) -> SourceTouch | None:
    """One touch from one place's fields; None when nothing says where the person came from.

    A declared source (a form's ``source`` field) names the source over utm_source; the medium, a click id
    or the source's mapped category decide the channel, in that order."""
    host = None
    raw = declared_source or utm.get("source") or (CLICK_IDS[click_id] if click_id else None)
    if raw is None:
        host = _referrer_host(referrer)
        if host is None or host in sources.own_domains:
            return None
        raw = host
    source, mapped = sources.canonical(raw)
    medium = utm.get("medium")
    if click_id:
        channel = "paid"
    elif medium and match_key(medium) in sources.mediums:
        channel = sources.mediums[match_key(medium)]
    elif mapped:
        channel = mapped
    elif host is not None:
        channel = "referral"
    else:
        channel = sources.unmapped_category
    return SourceTouch(
        channel=channel,
        source=source,
        medium=medium,
        campaign=utm.get("campaign"),
        content=utm.get("content"),
        term=utm.get("term"),
        at=at,
        origin=origin,
        raw_source=raw,
        click_id=click_id,
        referrer=_text(referrer),
    )


def touch_from_event(sources: CompiledSources, event: TrackedEvent, at: datetime) -> SourceTouch | None:
    """The URL's UTM query as a unit, else the event's utm_* properties as a unit; click ids from either."""
    query, props = _query(event.url), event.properties or {}
    if not query and not props:
        return None  # most events: nothing says where the person came from
    url_utm = {f: _first(query, f"utm_{f}") for f in UTM_FIELDS}
    utm = url_utm if any(url_utm.values()) else {f: _text(props.get(f"utm_{f}")) for f in UTM_FIELDS}
    click_id = next((c for c in CLICK_IDS if query.get(c) or props.get(c)), None)
    declared = _text(props.get("source")) if not any(utm.values()) else None
    return build_touch(
        sources, at, event.id, utm=utm, declared_source=declared, click_id=click_id, referrer=props.get("referrer")
    )


def tracking_touch(at: datetime, origin: str) -> SourceTouch:
    """What a lead created by tracking alone came from, when nothing better is known."""
    return SourceTouch(channel="direct", source=TRACKING_SOURCE, at=at, origin=origin, raw_source=TRACKING_SOURCE)
