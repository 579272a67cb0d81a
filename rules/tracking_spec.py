"""The Segment Spec (also RudderStack's) read as leadflow inputs: event types, times, URLs, UTM, identity.

A site instrumented for Segment sends ``track``/``page``/``screen``/``identify`` messages; leadflow scores
``TrackedEvent``s with a small vocabulary of types (``page_view``, ``download``, ``form_submit``, ...).
How one becomes the other is a business rule, so it lives here, pure (no I/O, no clock: ``now`` is given).

Event names map through ``EVENT_TYPES`` (names compared case- and punctuation-insensitively); a name
not in it becomes its snake_case form ("Quote Requested" -> ``quote_requested``), so a playbook can
score any event without a code change. ``page`` is ``page_view``, ``screen`` is ``screen_view``.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from datetime import UTC, datetime
from typing import Any

from rules.model import TrackedEvent

# Spec event names (Segment's semantic events and common B2B names) -> leadflow event types.
EVENT_TYPES: dict[str, str] = {
    "viewed pricing": "pricing_view",
    "pricing viewed": "pricing_view",
    "pricing page viewed": "pricing_view",
    "form submitted": "form_submit",
    "lead captured": "form_submit",
    "signed up": "signup",
    "account created": "signup",
    "demo requested": "demo_request",
    "requested demo": "demo_request",
    "trial started": "trial_start",
    "file downloaded": "download",
    "content downloaded": "download",
    "whitepaper downloaded": "download",
    "ebook downloaded": "download",
    "email opened": "email_open",
    "email link clicked": "email_click",
    "email bounced": "email_bounce",
    "email marked as spam": "email_complaint",
    "unsubscribed": "unsubscribe",
    "webinar registered": "webinar_registered",
    "webinar attended": "webinar_attended",
    "video playback started": "video_play",
    "product viewed": "product_view",
    "order completed": "purchase",
}
EVENT_TYPE = re.compile(r"^[a-z][a-z0-9_.:-]{0,63}$")
PAGE_TYPE, SCREEN_TYPE, FALLBACK_TYPE = "page_view", "screen_view", "track"
MAX_ID = 100
MAX_TEXT = 2000
MAX_PROPERTIES = 50
# context.campaign (Segment's parsed UTM) -> the utm_* properties rules/sources read as one unit.
CAMPAIGN_FIELDS = {"source": "utm_source", "medium": "utm_medium", "name": "utm_campaign", "term": "utm_term",
                   "content": "utm_content"}  # fmt: skip
# Identify traits (Segment reserved names, camelCase or snake_case) -> lead attributes.
TRAITS = {
    "email": "email",
    "firstname": "first_name",
    "lastname": "last_name",
    "title": "title",
    "phone": "phone",
    "website": "website",
    "industry": "industry",
    "employees": "company_size",
    "companysize": "company_size",
    "source": "source",
}
EMAIL_FROM_CHOICES = ("traits", "user_id")


class SpecError(ValueError):
    """A message leadflow cannot use; the text says what to fix."""


def _key(name: str) -> str:
    return re.sub(r"[^0-9a-z]+", " ", unicodedata.normalize("NFKC", name).casefold()).strip()


def event_type_for(name: str) -> str:
    """The leadflow type of a track event name (see the module docstring)."""
    key = _key(name)
    if key in EVENT_TYPES:
        return EVENT_TYPES[key]
    snake = key.replace(" ", "_")[:64]
    return snake if EVENT_TYPE.match(snake) else FALLBACK_TYPE


def parse_time(value: Any, field: str) -> datetime | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise SpecError(f"{field} must be an ISO 8601 string")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise SpecError(f"{field} is not an ISO 8601 time: {value[:40]!r}") from None
    if not 2000 <= parsed.year <= 2099:
        raise SpecError(f"{field} must be between the years 2000 and 2099")
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def event_time(msg: dict[str, Any], now: datetime) -> datetime:
    """``timestamp``, else ``originalTimestamp`` corrected for the device clock by ``sentAt`` (as Segment
    does), else now; never in the future."""
    stamp = parse_time(msg.get("timestamp"), "timestamp")
    if stamp is None:
        original = parse_time(msg.get("originalTimestamp"), "originalTimestamp")
        sent = parse_time(msg.get("sentAt"), "sentAt")
        stamp = original if sent is None or original is None else now - (sent - original)
        if stamp is not None and stamp.year < 2000:  # each in range, but sent a lifetime after it was recorded
            raise SpecError("originalTimestamp corrected by sentAt must be between the years 2000 and 2099")
    return min(stamp or now, now)


def _dict(msg: dict[str, Any], *path: str) -> dict[str, Any]:
    node: Any = msg
    for part in path:
        node = node.get(part) if isinstance(node, dict) else None
    return node if isinstance(node, dict) else {}


def _text(value: Any, limit: int = MAX_TEXT) -> str | None:
    if value is None or isinstance(value, dict | list) or value == "":
        return None
    return str(value).strip()[:limit] or None


def snake(name: str) -> str:
    """camelCase / spaced / dashed names as snake_case property names (``utm_source`` stays)."""
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", unicodedata.normalize("NFKC", name))
    return re.sub(r"[^0-9a-z]+", "_", spaced.casefold()).strip("_")[:64]


def _scalars(values: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in values.items():
        key = snake(str(name))
        if not key or not key[0].isalpha() or len(out) >= MAX_PROPERTIES:
            continue
        if isinstance(value, bool | int | float) or value is None:
            out[key] = value
        elif isinstance(value, str):
            out[key] = value[:MAX_TEXT]
    return out


def event_id(msg: dict[str, Any]) -> str:
    """``messageId``; without one, a hash of the message's content and time (a blind retry is the same
    event, never a new one)."""
    given = msg.get("messageId")
    if isinstance(given, str) and given.strip():
        given = given.strip()
        return given if len(given) <= MAX_ID else "seg-" + hashlib.sha256(given.encode()).hexdigest()[:40]
    content = {k: v for k, v in msg.items() if k not in ("sentAt", "receivedAt", "writeKey")}
    digest = hashlib.sha256(json.dumps(content, sort_keys=True, default=str).encode()).hexdigest()
    return f"seg-{digest[:40]}"


def event_from_message(msg: dict[str, Any], now: datetime) -> TrackedEvent:
    """A ``track``, ``page`` or ``screen`` message as a scored event (SpecError when it cannot be one)."""
    kind = msg.get("type")
    properties = _dict(msg, "properties")
    page = _dict(msg, "context", "page")
    if kind == "track":
        name = _text(msg.get("event"), 200)
        if name is None:
            raise SpecError("a track message needs an event name in `event`")
        event_type = event_type_for(name)
    elif kind in ("page", "screen"):
        name = _text(msg.get("name"), 200) or _text(properties.get("name"), 200)
        event_type = PAGE_TYPE if kind == "page" else SCREEN_TYPE
    else:
        raise SpecError(f"type {kind!r} carries no event")
    props = _scalars(properties)
    campaign = {p: _text(_dict(msg, "context", "campaign").get(f), 200) for f, p in CAMPAIGN_FIELDS.items()}
    if any(campaign.values()) and not any(props.get(p) for p in CAMPAIGN_FIELDS.values()):
        props |= {p: v for p, v in campaign.items() if v is not None}  # one unit, never mixed with props'
    referrer = _text(properties.get("referrer")) or _text(page.get("referrer"))
    if referrer and "referrer" not in props:
        props["referrer"] = referrer
    url = _text(properties.get("url")) or _text(page.get("url"))
    return TrackedEvent(event_id(msg), event_type, event_time(msg, now), url, name, props)


def email_of(msg: dict[str, Any], email_from: tuple[str, ...]) -> str | None:
    """The person's email, from the places ``email_from`` allows (``traits``: traits.email or
    context.traits.email; ``user_id``: a userId that is an email), in that order."""
    for place in email_from:
        if place == "traits":
            for traits in (_dict(msg, "traits"), _dict(msg, "context", "traits")):
                found = _text(traits.get("email"), 320)
                if found:
                    return found
        elif place == "user_id":
            user = _text(msg.get("userId"), 320)
            if user and "@" in user:
                return user
    return None


def visitor_keys(msg: dict[str, Any]) -> list[str]:
    """The anonymous handles of a message: ``user:<userId>`` (one that is not an email) and
    ``anon:<anonymousId>``, the first naming where its events collect before anyone is known."""
    keys = []
    user = _text(msg.get("userId"), 200)
    if user and "@" not in user:
        keys.append(f"user:{user}")
    anonymous = _text(msg.get("anonymousId"), 200)
    if anonymous:
        keys.append(f"anon:{anonymous}")
    return keys


def attributes_from_traits(traits: dict[str, Any]) -> dict[str, Any]:
    """Identify traits as the body of a lead post (``LeadIn``'s field names; others go to ``fields``)."""
    body: dict[str, Any] = {}
    fields: dict[str, Any] = {}
    for name, value in traits.items():
        compact = _key(str(name)).replace(" ", "")
        if compact == "company":
            company = value if isinstance(value, dict) else {"name": value}
            if _text(company.get("name"), 200):
                body["company"] = _text(company.get("name"), 200)
            size = company.get("employee_count") or company.get("employees")
            if isinstance(size, int) and not isinstance(size, bool):
                body["company_size"] = size
            if _text(company.get("industry"), 200):
                body["industry"] = _text(company.get("industry"), 200)
        elif compact == "address":
            country = _text(_dict({"a": value}, "a").get("country"), 200)
            if country:  # a code or a name: the lead post cleans it (JP, Japan, 日本 -> JP)
                body["country"] = country
        elif compact in TRAITS:
            target = TRAITS[compact]
            if target == "company_size":
                if isinstance(value, int) and not isinstance(value, bool):
                    body[target] = value
            elif _text(value, 200):
                body[target] = _text(value, 200)
        elif compact in ("name", "createdat", "id", "avatar", "description", "username"):
            continue
        elif isinstance(value, str | int | float | bool) and snake(str(name))[:1].isalpha():
            fields[snake(str(name))] = value[:MAX_TEXT] if isinstance(value, str) else value
    if fields:
        body["fields"] = dict(list(fields.items())[:MAX_PROPERTIES])
    return body
