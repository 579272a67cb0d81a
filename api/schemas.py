"""Request and response bodies. Strict: an unknown or malformed field is a 422 that names it.

Every bound here is also in the OpenAPI schema, so a client (or schemathesis) that follows the schema is
never refused: times are ISO 8601 strings with a zone in the years 2000-2099 (the store and every timer
stay representable), and no string can grow past what one Temporal signal carries (see api/limits.py).
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi.exceptions import RequestValidationError
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    EmailStr,
    Field,
    ModelWrapValidatorHandler,
    PrivateAttr,
    StrictBool,
    StringConstraints,
    ValidationError,
    ValidatorFunctionWrapHandler,
    WithJsonSchema,
    WrapValidator,
    field_validator,
    model_validator,
)

from rules.addresses import HEADER_SAFE_PATTERN, address_problem, hostile_character, without_bidi_controls
from rules.cleaning import CleaningError, clean_attributes, country_code, normalize_email_text
from rules.model import ConsentRecord, ConsentStatus, TouchKind

FIRST_YEAR, LAST_YEAR = 2000, 2099
MAX_VALUE_CHARS = 2000


TIME_PATTERN = r"^20[0-9]{2}-"
TIME_RANGE = f"an ISO 8601 time with a time zone in the years {FIRST_YEAR}-{LAST_YEAR}"


def _time_text(value: object) -> object:
    # Only a string in the range: pydantic would otherwise take 2180 or "1700000000" as seconds since 1970.
    # The year is checked as written (local time), as the schema's pattern says; either way UTC and every
    # timer derived from it stay representable.
    if not isinstance(value, str) or not re.match(TIME_PATTERN, value):
        raise ValueError(f"must be {TIME_RANGE}")
    return value


Time = Annotated[
    AwareDatetime,
    BeforeValidator(_time_text),
    Field(json_schema_extra={"pattern": TIME_PATTERN}, description=f"{TIME_RANGE}"),
]


def _json_integer(value: object) -> object:
    # JSON Schema's integer: 79 and 79.0, never true or "79" (which pydantic's lax int would take).
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("must be an integer")
    return value


Integer = Annotated[int, BeforeValidator(_json_integer)]


def _json_number(value: object) -> object:
    # JSON Schema's number: never true or "79".
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("must be a number")
    return value


Number = Annotated[float, BeforeValidator(_json_number)]
Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
LongText = Annotated[str, StringConstraints(strip_whitespace=True, max_length=2000)]
SCALAR_RULE = f"must be text of at most {MAX_VALUE_CHARS} characters, a number, true, false or null"


def _one_scalar_error(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
    # One message naming the field, instead of one error per member of the union.
    try:
        return handler(value)
    except ValidationError:
        raise ValueError(SCALAR_RULE) from None


Scalar = Annotated[
    Annotated[str, StringConstraints(max_length=MAX_VALUE_CHARS)] | int | float | bool | None,
    WrapValidator(_one_scalar_error),
]
EventType = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_.:-]{0,63}$")]
FieldName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,63}$")]


def _any_case(word: str) -> str:
    return "".join(f"[{c}{c.upper()}]" for c in word)


# What email-validator refuses beyond JSON Schema's "email" format, said in the schema: a dotted domain
# whose last label is a name (not a number) and not a special-use one (.test, .local, ...).
SPECIAL_USE = "|".join(_any_case(name) for name in ("arpa", "invalid", "local", "localhost", "onion", "test"))
EMAIL_PATTERN = rf"^[^@]+@[^@]+\.(?!(?:{SPECIAL_USE})$)[A-Za-z][A-Za-z0-9-]*$"
Email = Annotated[EmailStr, WithJsonSchema({"type": "string", "format": "email", "pattern": EMAIL_PATTERN})]


# A person's address as forms and imports send it: full-width letters and at sign (U+FF20) are
# folded by NFKC before validation, so they reach the same lead as the ASCII spelling.
def _folded_email(value: Any) -> Any:
    return normalize_email_text(value) if isinstance(value, str) else value


PersonEmail = Annotated[Email, BeforeValidator(_folded_email)]
# patternProperties alone would let any other key through in JSON Schema: say that the API refuses them.
Fields = dict[FieldName, Scalar]
CLOSED_KEYS: dict[str, Any] = {"additionalProperties": False}


def _header_safe(value: str) -> str:
    # Names and company reach the To and Subject headers: a line break or control there is refused (it
    # only ever comes from a bug or an attack); bidi overrides are stripped (harmless, spoof-only).
    found = hostile_character(value)
    if found:
        raise ValueError(f"contains {found}: names and company may not hold control or line-break characters")
    return without_bidi_controls(value)


# What _header_safe refuses, said in the schema for clients and generators.
HeaderText = Annotated[Text, AfterValidator(_header_safe), Field(json_schema_extra={"pattern": HEADER_SAFE_PATTERN})]


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
    at: Time | None = Field(default=None, description=f"when it was given ({TIME_RANGE}); default now")
    wording: LongText | None = Field(default=None, description="the consent text the person saw")
    form_id: Text | None = None

    def record(self, default_source: Literal["form", "import", "api"], now: datetime) -> ConsentRecord:
        at = min(self.at or now, now)
        return ConsentRecord(self.status, self.source or default_source, at, wording=self.wording, form_id=self.form_id)


class LeadIn(_In):
    email: PersonEmail
    first_name: HeaderText | None = None
    last_name: HeaderText | None = None
    company: HeaderText | None = None
    title: Text | None = None
    company_size: Integer | None = Field(default=None, ge=0, le=10_000_000)
    industry: Text | None = None
    country: Text | None = Field(
        default=None, description="ISO 3166 alpha-2 code or an English or Japanese name (JP, Japan, 日本): kept as JP"
    )
    phone: Text | None = None
    website: Text | None = None
    source: Text | None = Field(default=None, description="lead source, e.g. whitepaper, webinar, referral")
    utm: Utm | None = None
    product_interest: Text | None = None
    budget: Annotated[Integer, Field(ge=0)] | Annotated[Number, Field(ge=0)] | Text | None = Field(
        default=None, description='a number (50000) or text as sent ("¥50,000", "50k-100k"); numeric where numeric'
    )
    authority: Text | Integer | Number | None = None
    need: Text | Integer | Number | None = None
    timeline: Text | Integer | Number | None = None
    fields: Fields = Field(
        default_factory=dict,
        max_length=50,
        description=f"custom fields the playbook declares (text values up to {MAX_VALUE_CHARS} characters)",
        json_schema_extra=CLOSED_KEYS,
    )
    consent: ConsentIn | None = Field(default=None, description="email consent given with this form or import")

    @field_validator("country")
    @classmethod
    def _iso_country(cls, value: str | None) -> str | None:
        # The import's cleaning (rules/cleaning.py): a code or a name becomes the ISO code; one nobody can read
        # is kept as given, as the import keeps it (any text is schema-valid, so it is not refused).
        if not value:
            return value
        try:
            return country_code(value)
        except CleaningError:
            return value.upper() if len(value) == 2 else value

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
    at: Time | None = Field(
        default=None, description=f"when it happened ({TIME_RANGE}); a time after now counts as now; default now"
    )
    url: LongText | None = None
    name: Text | None = None
    properties: Fields = Field(default_factory=dict, max_length=50, json_schema_extra=CLOSED_KEYS)


MAX_EVENTS_PER_REQUEST = 500


def _problem_text(error: ValidationError) -> str:
    parts = []
    for item in error.errors(include_url=False):
        where = ".".join(str(p) for p in item["loc"])
        parts.append(f"{where}: {item['msg']}" if where else item["msg"])
    return "; ".join(parts)[:500]


class _Batch(_In):
    """A batch whose events are checked one by one: a bad event is rejected with its reason and the others
    go on (``rejected``: position -> reason). A batch with no good event at all is a 422 as usual."""

    _rejected: dict[int, str] = PrivateAttr(default_factory=dict)
    _positions: list[int] = PrivateAttr(default_factory=list)

    @model_validator(mode="wrap")
    @classmethod
    def _event_by_event(cls, data: Any, handler: ModelWrapValidatorHandler[Any]) -> Any:
        events = data.get("events") if isinstance(data, dict) else None
        if not isinstance(events, list) or not 1 <= len(events) <= MAX_EVENTS_PER_REQUEST:
            return handler(data)
        item_type = cls.model_fields["events"].annotation.__args__[0]  # type: ignore[union-attr]  # list[X] -> X
        good, positions, rejected = [], [], {}
        for position, raw in enumerate(events):
            try:
                good.append(item_type.model_validate(raw))
                positions.append(position)
            except ValidationError as exc:
                rejected[position] = _problem_text(exc)
        if not good:
            return handler(data)
        batch = handler({**data, "events": good})
        batch._rejected, batch._positions = rejected, positions
        return batch

    @property
    def rejected(self) -> dict[int, str]:
        return self._rejected

    @property
    def positions(self) -> list[int]:
        """Each kept event's position in the request as sent."""
        return self._positions or list(range(len(self.events)))  # type: ignore[attr-defined]


class EventsIn(_Batch):
    events: list[EventIn] = Field(min_length=1, max_length=MAX_EVENTS_PER_REQUEST)


class IdentifiedEventIn(EventIn):
    email: PersonEmail


class IdentifiedEventsIn(_Batch):
    events: list[IdentifiedEventIn] = Field(min_length=1, max_length=MAX_EVENTS_PER_REQUEST)


def unsendable_problems(addresses: set[str], *, smtp_utf8: bool) -> dict[str, str]:
    """address -> why leadflow could never send to it. EmailStr has validated every address already: only
    non-ASCII ones can still be unsendable (a Unicode local part), each distinct one checked once (~0.3-1 ms)."""
    problems = {a: address_problem(a, smtputf8=smtp_utf8) for a in addresses if not a.isascii()}
    return {a: p for a, p in problems.items() if p}


def refuse_unsendable(addresses: dict[tuple[str | int, ...], str], *, smtp_utf8: bool) -> None:
    """422 naming each body field whose address leadflow could never send to (``addresses``: location ->
    address). Here rather than in the models because it depends on LEADFLOW_SMTP_UTF8."""
    problems = unsendable_problems(set(addresses.values()), smtp_utf8=smtp_utf8)
    errors = [
        {"loc": ("body", *loc), "msg": problem, "type": "value_error", "input": address}
        for loc, address in addresses.items()
        if (problem := problems.get(address))
    ]
    if errors:
        raise RequestValidationError(errors)


class TouchIn(_In):
    kind: TouchKind
    at: Time | None = Field(
        default=None, description=f"when it happened ({TIME_RANGE}), not before the lead; default now"
    )
    rep_id: Text | None = None
    note: LongText | None = None


class RepBody(_In):
    id: Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$")]
    name: Text
    email: Email
    active: StrictBool = True
    capacity: Integer | None = Field(default=None, ge=0, le=100_000)
    weight: Integer = Field(default=1, ge=1, le=100)
    away_until: Time | None = None


class TeamBody(_In):
    name: Text
    manager_name: Text | None = None
    manager_email: Email | None = None
    reps: list[RepBody] = Field(default_factory=list, max_length=500)


class LeadAccepted(BaseModel):
    lead_id: str
    status_url: str


class EventResult(BaseModel):
    """What became of one event of a batch (``index``: its position in the request)."""

    index: int
    status: Literal["accepted", "duplicate", "rejected"] = Field(
        description="accepted: durable, it will reach the lead; duplicate: its id was seen already (in this "
        "request, or accepted lately); rejected: not taken, see reason"
    )
    id: str | None = Field(default=None, description="the event id: yours, or one derived from the content and time")
    lead_id: str | None = None
    reason: str | None = None


class EventsAccepted(BaseModel):
    accepted: int
    duplicates: int
    rejected: int = 0
    leads: list[str]
    results: list[EventResult] = Field(default_factory=list, description="one entry per event, in request order")
