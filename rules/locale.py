"""Which language a lead's email is written in. Pure.

The lead's own ``locale`` field wins (``ja``, ``ja-JP``, ``en_US``), then its country (JP -> ja), then
the playbook's ``email.locale``; ``None`` leaves the choice to the sender's setting
(``LEADFLOW_DEFAULT_LOCALE``). Rep and manager notifications use the playbook's locale: they go to the
team, whose language is not the lead's.
"""

from __future__ import annotations

from typing import Any

LOCALE_PATTERN = r"^[a-z]{2}$"
# Countries whose business mail is written in a shipped language; others get the playbook's locale.
COUNTRY_LOCALES: dict[str, str] = {
    "JP": "ja",
    **dict.fromkeys(("US", "GB", "IE", "CA", "AU", "NZ", "SG", "IN", "ZA", "PH", "HK", "MY"), "en"),
}
# Country fields people actually type, beyond the ISO code.
COUNTRY_NAMES: dict[str, str] = {"japan": "JP", "日本": "JP", "nippon": "JP", "usa": "US", "united states": "US"}


def language_of(value: object) -> str | None:
    """``ja-JP`` / ``ja_jp`` / ``JA`` -> ``ja``; None when it is no language tag."""
    if not isinstance(value, str):
        return None
    language = value.strip().replace("_", "-").split("-", 1)[0].lower()
    return language if len(language) == 2 and language.isascii() and language.isalpha() else None


def country_code(value: object) -> str | None:
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip()
    return COUNTRY_NAMES.get(text.lower(), text.upper())


def lead_locale(attributes: dict[str, Any], default: str | None) -> str | None:
    """The locale a lead's nurture email is written in (see the module docstring for the order)."""
    own = language_of(attributes.get("locale"))
    if own is not None:
        return own
    country = country_code(attributes.get("country"))
    if country is not None and country in COUNTRY_LOCALES:
        return COUNTRY_LOCALES[country]
    return default
