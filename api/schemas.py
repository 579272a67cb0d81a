"""Request and response bodies. Strict: an unknown or malformed field is a 422 that names it."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi.exceptions import RequestValidationError
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    StringConstraints,
    field_validator,
)

from rules.addresses import address_problem, hostile_character, without_bidi_controls
from rules.cleaning import clean_attributes
from rules.model import ConsentRecord, ConsentStatus, TouchKind

Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
LongText = Annotated[str, StringConstraints(strip_whitespace=True, max_length=2000)]
Scalar = str | int | float | bool | None
EventType = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_.:-]{0,63}$")]
FieldName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,63}$")]


def _header_safe(value: str) -> str:
    # Names and company reach the To and Subject headers: a line break or control there is refused (it
    # only ever comes from a bug or an attack); bidi overrides are stripped (harmless, spoof-only).
    found = hostile_character(value)
    if found:
        raise ValueError(f"contains {found}: names and company may not hold control or line-break characters")
    return without_bidi_controls(value)


HeaderText = Annotated[Text, AfterValidator(_header_safe)]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class Utm(_In):
    source: Text | None = None
    medium: Text | None = None
    campaign: Text | None = None
    term: Text | None = None
    content: Text | None = None


class ConsentIn(_In):
    """Consent the person gave (or withdrew) for email; unsubscribe links and complaints arrive on their own."""

    status: ConsentStatus
    source: Literal["form", "import", "api"] | None = Field(
        default=None, description="where it was given: form (default with a lead), import, api (default here)"
    )
    at: AwareDatetime | None = Field(default=None, description="when it was given; default now")
    wording: LongText | None = Field(default=None, description="the consent text the person saw")
    form_id: Text | None = None

    def record(self, default_source: Literal["form", "import", "api"], now: datetime) -> ConsentRecord:
        at = min(self.at or now, now)
        return ConsentRecord(self.status, self.source or default_source, at, wording=self.wording, form_id=self.form_id)


class LeadIn(_In):
    email: EmailStr
    first_name: HeaderText | None = None
    last_name: HeaderText | None = None
    company: HeaderText | None = None
    title: Text | None = None
    company_size: int | None = Field(default=None, ge=0, le=10_000_000)
    industry: Text | None = None
    country: str | None = Field(default=None, pattern=r"^[A-Za-z]{2}$", description="ISO 3166 alpha-2 code")
    phone: Text | None = None
    website: Text | None = None
    source: Text | None = Field(default=None, description="lead source, e.g. whitepaper, webinar, referral")
    utm: Utm | None = None
    product_interest: Text | None = None
    budget: Text | None = None
    authority: Text | None = None
    need: Text | None = None
    timeline: Text | None = None
    fields: dict[FieldName, Scalar] = Field(
        default_factory=dict, max_length=50, description="custom fields the playbook declares"
    )
    consent: ConsentIn | None = Field(default=None, description="email consent given with this form or import")

    @field_validator("country")
    @classmethod
    def _upper(cls, value: str | None) -> str | None:
        return value.upper() if value else value

    def attributes(self) -> dict[str, Any]:
        data = self.model_dump(exclude={"utm", "fields", "consent"}, exclude_none=True)
        if self.utm:
            data |= {f"utm_{k}": v for k, v in self.utm.model_dump(exclude_none=True).items()}
        # The normalisation every door shares (NFKC, email, company key, country, E.164 phone).
        return clean_attributes(self.fields | data).attributes


class EventIn(_In):
    id: Annotated[str, StringConstraints(min_length=1, max_length=100)] | None = Field(
        default=None, description="your event id; a repeated id is counted once (send one to make retries safe)"
    )
    type: EventType = Field(
        description="page_view, download, email_open, email_click, form_submit, webinar_attended, ..."
    )
    at: AwareDatetime | None = Field(
        default=None, description="when it happened (ISO 8601 with time zone); default now"
    )
    url: LongText | None = None
    name: Text | None = None
    properties: dict[FieldName, Scalar] = Field(default_factory=dict, max_length=50)


class EventsIn(_In):
    events: list[EventIn] = Field(min_length=1, max_length=500)


class IdentifiedEventIn(EventIn):
    email: EmailStr


class IdentifiedEventsIn(_In):
    events: list[IdentifiedEventIn] = Field(min_length=1, max_length=500)


def refuse_unsendable(addresses: dict[tuple[str | int, ...], str], *, smtp_utf8: bool) -> None:
    """422 naming each body field whose address leadflow could never send to (``addresses``: location ->
    address). Here rather than in the models because it depends on LEADFLOW_SMTP_UTF8."""
    # EmailStr has validated every address already: only non-ASCII ones can still be unsendable (a Unicode
    # local part), and a batch repeats the same few, so each distinct one is checked once (~0.3-1 ms each).
    problems = {a: address_problem(a, smtputf8=smtp_utf8) for a in set(addresses.values()) if not a.isascii()}
    errors = [
        {"loc": ("body", *loc), "msg": problem, "type": "value_error", "input": address}
        for loc, address in addresses.items()
        if (problem := problems.get(address))
    ]
    if errors:
        raise RequestValidationError(errors)


class TouchIn(_In):
    kind: TouchKind
    at: AwareDatetime | None = None
    rep_id: Text | None = None
    note: LongText | None = None


class RepBody(_In):
    id: Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$")]
    name: Text
    email: EmailStr
    active: bool = True
    capacity: int | None = Field(default=None, ge=0)
    weight: int = Field(default=1, ge=1, le=100)
    away_until: AwareDatetime | None = None


class TeamBody(_In):
    name: Text
    manager_name: Text | None = None
    manager_email: EmailStr | None = None
    reps: list[RepBody] = Field(default_factory=list, max_length=500)


class LeadAccepted(BaseModel):
    lead_id: str
    status_url: str


class EventsAccepted(BaseModel):
    accepted: int
    duplicates: int
    leads: list[str]
