# ruff: noqa: RUF002  (full-width and Japanese text is what this module handles)
"""Cleaning lead data before it reaches a lead (seed 003: clean before you import).

One set of rules for every door: the CSV import, POST /v1/leads and forms all call `clean_attributes`, so
`ｋｅｎ＠ｅｘａｍｐｌｅ．ｃｏｍ` and `ken@example.com` are one lead whichever way they came in. Pure: no I/O
beyond the lookup tables the phonenumbers package ships as Python modules.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import phonenumbers
from email_validator import EmailNotValidError, validate_email
from phonenumbers.geodata.locale import LOCALE_DATA

_SPACES = re.compile(r"\s+")


class CleaningError(ValueError):
    """A value that cannot be cleaned into something usable (the row or request is refused)."""


@dataclass
class Cleaned:
    """Attributes ready for a lead, and what was changed or dropped on the way (for the import report)."""

    attributes: dict[str, Any]
    warnings: list[str] = field(default_factory=list)


def nfkc(text: str) -> str:
    """Unicode NFKC (full-width letters, digits, `＠` and half-width katakana folded), spaces collapsed."""
    return _SPACES.sub(" ", unicodedata.normalize("NFKC", text)).strip()


def normalize_email_text(email: str) -> str:
    """The form every lead id is computed from: NFKC, trimmed, lower-cased (ASCII input is unchanged)."""
    return unicodedata.normalize("NFKC", email).strip().lower()


# An unquoted ASCII local part (RFC 5322 dot-atom): the common case, checked without the full validator.
_PLAIN_LOCAL = re.compile(r"^[a-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[a-z0-9!#$%&'*+/=?^_`{|}~-]+)*$")


def clean_email(raw: str) -> str:
    """A normalised, syntactically valid email (no DNS lookup), or CleaningError saying what is wrong."""
    email = normalize_email_text(raw).replace(" ", "")
    if not email:
        raise CleaningError("email is missing")
    local, at, domain = email.rpartition("@")
    if at and len(local) <= 64 and _PLAIN_LOCAL.match(local):
        # The validator's domain checks (IDNA, special-use names) are the costly part: once per domain.
        problem = _email_problem(f"x@{domain}")
    else:  # quoted, internationalised or malformed: the full validator says why
        problem = _email_problem(email)
    if problem:
        raise CleaningError(f"email {email!r} is not valid: {problem}")
    return email


@lru_cache(maxsize=4096)
def _email_problem(email: str) -> str | None:
    try:
        validate_email(email, check_deliverability=False)
    except EmailNotValidError as exc:
        return str(exc)
    return None


# Legal-form words removed for matching only (the display name keeps them). Longest first.
_LEGAL_FORMS_JA = ("株式会社", "有限会社", "合同会社", "合資会社", "合名会社", "一般社団法人", "(株)", "(有)", "(同)")
_LEGAL_FORMS_EN = re.compile(
    r"(?:^|[\s,.])(?:co\.?,?\s*ltd|company\s+limited|incorporated|corporation|limited|inc|corp|ltd|llc|l\.l\.c|"
    r"gmbh|k\.?k|plc|co|s\.a|ag)\.?(?=$|[\s,.])",
    re.IGNORECASE,
)
_NOT_WORD = re.compile(r"[\W_]+")


def company_display(raw: str) -> str:
    return nfkc(raw)


@lru_cache(maxsize=16384)
def company_key(raw: str) -> str:
    """The name used to match companies: 株式会社リードフロー, リードフロー(株) and ﾘｰﾄﾞﾌﾛｰ 株式会社 give one key;
    so do "Acme Co., Ltd.", "ACME Inc." and "acme"."""
    name = nfkc(raw).lower()
    for form in _LEGAL_FORMS_JA:
        name = name.replace(form, " ")
    previous = None
    while previous != name:  # "Acme Co., Ltd. Inc" loses every trailing form, not just the last
        previous, name = name, _LEGAL_FORMS_EN.sub(" ", f" {name} ").strip()
    return _NOT_WORD.sub("", name)


def clean_phone(raw: str, country: str | None) -> str:
    """E.164 (`+81312345678`) from a national number and the lead's country, or an international one."""
    text = nfkc(raw)
    try:
        number = phonenumbers.parse(text, country)
    except phonenumbers.NumberParseException as exc:
        if exc.error_type == phonenumbers.NumberParseException.INVALID_COUNTRY_CODE:
            raise CleaningError(f"phone {text!r} has no +country code and no known country to read it by") from None
        raise CleaningError(f"phone {text!r} is not a phone number ({exc._msg})") from None
    if not phonenumbers.is_valid_number(number):
        where = f" for {country}" if country else " (no country to read it by)"
        raise CleaningError(f"phone {text!r} is not a valid number{where}")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


# Common names the locale tables do not hold (alpha-3 codes and everyday short names).
_COUNTRY_ALIASES = {
    "usa": "US", "us": "US", "u.s.": "US", "u.s.a.": "US", "america": "US", "united states of america": "US",
    "uk": "GB", "u.k.": "GB", "great britain": "GB", "england": "GB", "britain": "GB",
    "jpn": "JP", "nippon": "JP", "nihon": "JP", "kor": "KR", "korea": "KR", "south korea": "KR", "chn": "CN",
    "deu": "DE", "fra": "FR", "gbr": "GB", "twn": "TW", "sgp": "SG", "ind": "IN", "aus": "AU", "can": "CA",
    "米国": "US", "アメリカ": "US", "英国": "GB", "イギリス": "GB", "韓国": "KR", "中国": "CN", "日本国": "JP",
    "台湾": "TW", "ドイツ": "DE", "フランス": "FR", "シンガポール": "SG", "インド": "IN", "オーストラリア": "AU",
}  # fmt: skip


@lru_cache(maxsize=1)
def _country_names() -> dict[str, str]:
    names: dict[str, str] = {}
    for code, by_language in LOCALE_DATA.items():
        names[code.lower()] = code
        for language in ("aa", "ja"):  # "aa" holds the English name in phonenumbers' tables
            name = by_language.get(language)
            if name and not name.startswith("*"):
                names[nfkc(name).lower()] = code
    return names | {nfkc(alias).lower(): code for alias, code in _COUNTRY_ALIASES.items()}


@lru_cache(maxsize=1024)
def country_code(raw: str) -> str:
    """ISO 3166 alpha-2 from a code or an English or Japanese name: 日本, Japan, jp and ＪＰ give JP."""
    text = nfkc(raw).lower().rstrip(".")
    code = _country_names().get(text)
    if code is None:
        raise CleaningError(f"country {nfkc(raw)!r} is not a country name or ISO code this import knows")
    return code


def clean_attributes(raw: Mapping[str, Any], *, default_country: str | None = None) -> Cleaned:
    """Every door's lead attributes, cleaned: the one function API, forms and the CSV import share.

    Text is NFKC-folded and trimmed, empty values dropped (they never erase what a lead knows), the email
    normalised and validated (CleaningError when it is not usable), the company kept for display beside
    `company_key` for matching, the country as ISO alpha-2 and the phone as E.164. A country or phone that
    cannot be read is kept as given, with a warning, rather than losing the row.
    """
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if isinstance(value, str):
            value = nfkc(value)
            if not value:
                continue
        if value is not None:
            out[key] = value
    warnings: list[str] = []
    out["email"] = clean_email(str(raw.get("email") or ""))
    if "company" in out:
        out["company"] = company_display(str(out["company"]))
        out["company_key"] = company_key(str(out["company"]))
    if "country" in out:
        try:
            out["country"] = country_code(str(out["country"]))
        except CleaningError as exc:
            warnings.append(f"{exc}; kept as given")
    if "phone" in out:
        region = out.get("country") if isinstance(out.get("country"), str) else None
        region = region if region and len(region) == 2 and region.isupper() else default_country
        try:
            out["phone"] = clean_phone(str(out["phone"]), region)
        except CleaningError as exc:
            warnings.append(f"{exc}; kept as given")
    return Cleaned(out, warnings)
