"""From a CSV row to lead attributes: which column is which field, and what an imported lead carries.

Business rules of the import, kept pure so the CLI, the API and the bench share them: the header names
recognised in English and Japanese, how a full name is split, which attributes an import may set (its
source only on a lead it creates: an existing lead keeps the source it came from), and the email consent
a row's consent column records (source ``import``; rules/consent.py: it never undoes an opt-out).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from rules.addresses import address_problem, hostile_character, without_bidi_controls
from rules.cleaning import Cleaned, CleaningError, clean_attributes, nfkc
from rules.model import ConsentRecord, ConsentStatus

# Normalised header (NFKC, lower case, no spaces, dashes, underscores or dots) -> lead field.
HEADER_FIELDS: dict[str, tuple[str, ...]] = {
    "email": ("email", "emailaddress", "mail", "mailaddress", "メールアドレス", "メール", "eメール", "電子メール"),
    "first_name": ("firstname", "first", "givenname", "名", "下の名前"),
    "last_name": ("lastname", "last", "surname", "familyname", "姓", "苗字", "名字"),
    "full_name": ("name", "fullname", "contactname", "氏名", "名前", "お名前", "担当者名", "フルネーム"),
    "company": ("company", "companyname", "organization", "organisation", "account", "accountname",
                "会社名", "企業名", "会社", "法人名", "社名", "所属"),
    "title": ("title", "jobtitle", "position", "role", "役職", "役職名", "肩書", "肩書き"),
    "department": ("department", "dept", "部署", "部署名", "部門"),
    "phone": ("phone", "phonenumber", "tel", "telephone", "mobile", "電話番号", "電話", "tel番号", "携帯電話"),
    "country": ("country", "countrycode", "countryname", "国", "国名", "国地域", "国・地域"),
    "company_size": ("companysize", "employees", "numberofemployees", "employeecount", "headcount",
                     "従業員数", "社員数", "従業員規模"),
    "industry": ("industry", "業種", "業界"),
    "website": ("website", "url", "web", "homepage", "ホームページ", "ウェブサイト", "会社url"),
    # Not an attribute: the row's email consent (import_consent below).
    "consent": ("consent", "emailconsent", "optin", "emailoptin", "marketingconsent", "newsletter",
                "メール配信", "メール配信希望", "配信希望", "配信同意", "メール配信同意", "メルマガ", "メルマガ希望",
                "メルマガ配信", "メルマガ配信希望"),
}  # fmt: skip
CONSENT_FIELD = "consent"
# A consent cell, normalised like a header (NFKC, lower case, no spaces or dashes) -> the status it records.
# Japanese forms tick yes and no with circle and cross marks.
CONSENT_VALUES: dict[str, ConsentStatus] = {
    **dict.fromkeys(("yes", "y", "true", "1", "on", "x", "optin", "optedin", "subscribed", "subscribe", "agree",
                     "agreed", "granted", "はい", "希望", "希望する", "同意", "同意する", "同意済", "同意済み", "許可",
                     "○", "〇", "◯", "✓", "✔"), "opted_in"),  # noqa: RUF001  (a tick mark, not a letter O)
    **dict.fromkeys(("no", "n", "false", "0", "off", "optout", "optedout", "unsubscribed", "unsubscribe",
                     "declined", "refused", "いいえ", "不要", "希望しない", "同意しない", "拒否", "配信停止", "×", "✕"),  # noqa: RUF001  (a cross mark)
                    "opted_out"),
}  # fmt: skip
_BY_HEADER = {alias: name for name, aliases in HEADER_FIELDS.items() for alias in aliases}
_HEADER_NOISE = re.compile(r"[\s\-_.・/()]+")
FIELD_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u9fff]")
_NUMBER = re.compile(r"\d+")


def header_key(header: str) -> str:
    return _HEADER_NOISE.sub("", nfkc(header).lower())


def map_columns(headers: Sequence[str], overrides: Mapping[str, str] | None = None) -> dict[int, str]:
    """Column index -> field: overrides (`--map 'Column name=field'`) first, then the known header names.

    An override naming a column that is not in the file, or a field that is not a plain name, is an error
    (the user asked for something that would silently do nothing)."""
    overrides = dict(overrides or {})
    by_name = {header.strip(): index for index, header in enumerate(headers)}
    mapping: dict[int, str] = {}
    for column, field in overrides.items():
        if column.strip() not in by_name:
            raise CleaningError(f"--map {column}={field}: the file has no column {column!r} (it has {list(by_name)})")
        if not FIELD_PATTERN.match(field):
            raise CleaningError(f"--map {column}={field}: a field name is lower-case letters, digits and _")
        mapping[by_name[column.strip()]] = field
    taken = set(mapping.values())
    for index, header in enumerate(headers):
        known = _BY_HEADER.get(header_key(header))
        if index not in mapping and known and known not in taken:
            mapping[index] = known
            taken.add(known)
    if "email" not in mapping.values():
        raise CleaningError(f"no email column among {list(headers)}: map one with --map 'your column=email'")
    return mapping


def _split_name(full: str) -> dict[str, str]:
    parts = nfkc(full).split(" ")
    if len(parts) < 2:
        return {"last_name": parts[0]} if _CJK.search(full) else {"first_name": parts[0]}
    if _CJK.search(full):  # 山田 太郎: family name first
        return {"last_name": parts[0], "first_name": " ".join(parts[1:])}
    return {"first_name": " ".join(parts[:-1]), "last_name": parts[-1]}


# Fields that reach the To and Subject headers: held to the API's rule (README "Hostile input in lead fields").
HEADER_FIELDS_OF_A_LEAD = ("first_name", "last_name", "company")


def row_attributes(values: Mapping[str, str], *, default_country: str | None = None, smtputf8: bool = False) -> Cleaned:
    """One row's mapped values, cleaned (CleaningError when the row cannot become a lead). As at the API, an
    address leadflow could never send to (a Unicode local part unless ``smtputf8``: LEADFLOW_SMTP_UTF8) and a
    control character in a name or company refuse the row; line breaks became spaces with the cleaning."""
    raw: dict[str, Any] = {k: v for k, v in values.items() if k != "full_name"}
    full = nfkc(values.get("full_name") or "")
    if full:
        for key, value in _split_name(full).items():
            if not raw.get(key):  # a separate 姓/名 column wins over the split
                raw[key] = value
    size_warning = None
    size = nfkc(str(raw.get("company_size") or "")).replace(",", "")
    if size:
        number = _NUMBER.search(size)
        if number:
            raw["company_size"] = int(number.group())
        else:
            raw.pop("company_size")
            size_warning = f"company size {size!r} has no number; dropped"
    cleaned = clean_attributes(raw, default_country=default_country)
    _refuse_unsendable(cleaned.attributes, smtputf8=smtputf8)
    if size_warning:
        cleaned.warnings.append(size_warning)
    return cleaned


def import_consent(
    value: str | None, *, basis: str | None, import_id: str, at: datetime
) -> tuple[ConsentRecord | None, str | None]:
    """The consent record a row's consent cell makes, or a warning when the cell cannot be read (no record:
    an unreadable cell must not opt anyone in). An empty cell records nothing. ``at`` is when the import was
    created (the moment this evidence reached leadflow, the same on every resumed run); ``basis`` (the
    import's consent basis) is kept as the wording, the import id as the form."""
    cell = header_key(value or "")
    if not cell:
        return None, None
    status = CONSENT_VALUES.get(cell)
    if status is None:
        return None, f"consent {nfkc(value or '').strip()!r} is neither yes nor no; no consent recorded"
    return ConsentRecord(status, "import", at, wording=basis, form_id=f"import:{import_id}"), None


def _refuse_unsendable(attributes: dict[str, Any], *, smtputf8: bool) -> None:
    for name in HEADER_FIELDS_OF_A_LEAD:
        value = attributes.get(name)
        if isinstance(value, str):
            found = hostile_character(value)
            if found:
                raise CleaningError(f"{name} contains {found}: names and company may not hold control characters")
            kept = without_bidi_controls(value).strip()
            if kept:
                attributes[name] = kept
            else:
                del attributes[name]
    email = attributes["email"]
    problem = None if email.isascii() else address_problem(email, smtputf8=smtputf8)
    if problem:
        raise CleaningError(f"email {email!r} cannot be sent to: {problem}")


def import_attributes(
    cleaned: Mapping[str, Any], *, source: str, consent_basis: str | None, import_id: str, creates_lead: bool
) -> dict[str, Any]:
    """What an imported row sets on its lead. `consent_basis` is a plain attribute for now (consent
    records are built from it later); the import's source is set only on a lead the import creates."""
    attributes = dict(cleaned) | {"last_import": import_id}
    if creates_lead:
        attributes["source"] = source
    if consent_basis:
        attributes["consent_basis"] = consent_basis
    return attributes
