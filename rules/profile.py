"""Progressive profiling: how a form, an import or an API call adds to what a lead already is.

A later post adds fields and never blanks known ones; each attribute remembers when and from where it
was last set; UTM fields are one unit replaced whole (a second visit never mixes with the first); the
lead's source fields follow its touches (first touch kept, latest updated); BANT budget is numeric where
it is numeric. Pure: the caller passes ``now``.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import datetime
from typing import Any

from rules.model import AttributeOrigin, LeadState, SourceTouch
from rules.sources import TRACKING_SOURCE, UTM_FIELDS, CompiledSources, build_touch, tracking_touch

UTM_ATTRIBUTES = tuple(f"utm_{f}" for f in UTM_FIELDS)
# Kept by the rules from the lead's touches: a post cannot set them directly.
DERIVED_SOURCE_ATTRIBUTES = ("source_category", "original_source", "latest_source", "latest_source_category")
CURRENCY_MARKS = {
    "¥": "JPY",
    "円": "JPY",
    "jpy": "JPY",
    "$": "USD",
    "usd": "USD",
    "€": "EUR",
    "eur": "EUR",
    "£": "GBP",
    "gbp": "GBP",
}
MULTIPLIERS = {"": 1, "k": 1_000, "m": 1_000_000, "千": 1_000, "万": 10_000, "億": 100_000_000}
_AMOUNT = re.compile(
    r"^(?P<pre>[¥$€£]|jpy|usd|eur|gbp)?\s*(?P<num>\d{1,3}(?:,\d{3})+|\d+)(?P<frac>\.\d+)?\s*"
    r"(?P<mult>k|m|千|万|億)?\s*(?P<post>円|jpy|usd|eur|gbp)?$"
)


def parse_amount(value: Any) -> tuple[Any, str | None]:
    """``(number, currency)`` when ``value`` is an amount as people write it (50000, "50000", "¥50,000",
    "$50k", "5万円"); otherwise ``(value, None)`` unchanged: a range like "50k-100k" stays text."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return value, None
    if not isinstance(value, str):
        return value, None
    text = unicodedata.normalize("NFKC", value).strip().casefold()
    found = _AMOUNT.match(text)
    if not found or (found["pre"] and found["post"]):
        return value, None
    number = float(found["num"].replace(",", "") + (found["frac"] or "")) * MULTIPLIERS[found["mult"] or ""]
    mark = found["pre"] or found["post"]
    return (int(number) if number.is_integer() else number), (CURRENCY_MARKS[mark] if mark else None)


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, bool):
        return None
    text = str(value).strip()
    return text or None


def merge_attributes(
    state: LeadState, attributes: dict[str, Any], now: datetime, origin: str, sources: CompiledSources
) -> None:
    """Merge one post's attributes into the lead (see the module docstring)."""
    incoming = {k: v for k, v in attributes.items() if v is not None and v != ""}
    for derived in DERIVED_SOURCE_ATTRIBUTES:
        incoming.pop(derived, None)
    declared = _text(incoming.pop("source", None))
    utm = {f: _text(incoming.pop(f"utm_{f}", None)) for f in UTM_FIELDS}
    if "budget" in incoming:
        incoming["budget"], currency = parse_amount(incoming["budget"])
        if currency:
            incoming["budget_currency"] = currency
    stamp = AttributeOrigin(now, origin)
    for key, value in incoming.items():
        state.attributes[key] = value
        state.attribute_origins[key] = stamp
    if any(utm.values()):
        for key in UTM_ATTRIBUTES:  # one unit: the new visit's fields only
            state.attributes.pop(key, None)
        for name, value in utm.items():
            if value is not None:
                state.attributes[f"utm_{name}"] = value
                state.attribute_origins[f"utm_{name}"] = stamp
    if declared is not None and declared.casefold() == TRACKING_SOURCE:
        # Tracking is no marketing touch: it names the source only of a lead that has none.
        give_tracking_source(state, now, origin, sources)
        return
    touch = build_touch(sources, now, origin, utm=utm, declared_source=declared)
    if touch is not None:
        note_touch(state, touch, sources)


def keeping_email(state: LeadState, attributes: dict[str, Any]) -> dict[str, Any]:
    """``attributes`` without an email other than the lead's own: a lead keeps its address unless it is
    changed explicitly (``LeadUpserted.email_change``); a post under an address that resolves to this lead
    (an old one, a merged duplicate's) adds what it knows but does not replace the address."""
    current = state.attributes.get("email")
    if not current or attributes.get("email") in (None, "", current):
        return attributes
    return {k: v for k, v in attributes.items() if k != "email"}


def give_tracking_source(state: LeadState, now: datetime, origin: str, sources: CompiledSources) -> None:
    """A lead created by tracking gets the source ``tracking`` as its original source, only when it had none."""
    _adopt_legacy_source(state, sources)
    if state.original_source is None:
        note_touch(state, tracking_touch(now, origin), sources)


def _adopt_legacy_source(state: LeadState, sources: CompiledSources) -> None:
    # Leads from before sources were data hold a plain `source` attribute: it is their original source.
    legacy = _text(state.attributes.get("source"))
    if state.original_source is None and legacy is not None:
        source, category = sources.canonical(legacy)
        at = state.created_at
        state.original_source = SourceTouch(
            category or sources.unmapped_category, source, at=at, origin="legacy", raw_source=legacy
        )
        state.latest_source = state.latest_source or state.original_source


def note_touch(state: LeadState, touch: SourceTouch, sources: CompiledSources) -> None:
    """Keep the first touch (by the touches' own times) as the original source and the newest as the latest
    source, and mirror both into the attributes rules read."""
    _adopt_legacy_source(state, sources)
    at = touch.at
    original, latest = state.original_source, state.latest_source
    # A later touch never overwrites the original; one from before it that arrives later (a stitched anonymous
    # visit, an event sent with its own older time) is the first touch and takes its place. A legacy source
    # (a lead stored before sources were tracked) has no touch time to compare.
    earlier = (
        original is not None
        and original.origin != "legacy"
        and at is not None
        and original.at is not None
        and at < original.at
    )
    if original is None or earlier:
        state.original_source = original = touch
    if latest is None or at is None or latest.at is None or at >= latest.at:
        state.latest_source = latest = touch
    mirrored = {
        "source": original.source,
        "source_category": original.channel,
        "latest_source": latest.source,
        "latest_source_category": latest.channel,
    }
    for key, value in mirrored.items():
        if state.attributes.get(key) != value:
            state.attributes[key] = value
            if at is not None:
                state.attribute_origins[key] = AttributeOrigin(at, touch.origin or "touch")


def note_set(state: LeadState, key: str, now: datetime, origin: str) -> None:
    state.attribute_origins[key] = AttributeOrigin(now, origin)
