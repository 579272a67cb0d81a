"""Form posts: ``POST /v1/forms/{form_id}`` from a web page (JSON or ``application/x-www-form-urlencoded``).

Each form has a field mapping (configured with ``PUT /v1/admin/forms/{form_id}``), so a page keeps its
own field names; a consent checkbox becomes an opt-in record with the form id and the wording shown.
Public like any web form (no key: a browser posts it), so nothing but the configured fields gets in.
The post upserts the lead (validated like ``POST /v1/leads``) and adds a ``form_submit`` event.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, HTTPException, Path, Request, status
from fastapi.responses import JSONResponse, RedirectResponse
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from api import ingest_doors as intake
from api.deps import AppState, State
from api.errors import ErrorOut, documented
from api.intake import signal_events
from api.lead_ids import lead_id_for
from api.roles import public
from api.schemas import EventType, LeadIn
from rules.model import ConsentRecord, EventsReceived, TrackedEvent
from store import ingest

SourceId = Annotated[str, Path(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$", description="lower-case id, e.g. whitepaper")]
MAX_FORM_BYTES = 64 * 1024
CHECKED = {"on", "true", "yes", "1", "checked", "agree", "y"}
# Where a mapping may put a value: POST /v1/leads's fields, utm_* (the utm unit) or fields.<custom>.
TARGETS = tuple(
    sorted(
        (set(LeadIn.model_fields) - {"utm", "fields", "consent"})
        | {f"utm_{f}" for f in ("source", "medium", "campaign", "term", "content")}
    )
)
# Lead fields typed as integers: a form sends text, so "250" there means 250 (as a browser posts it).
INTEGER_TARGETS = frozenset(
    name
    for name, schema in LeadIn.model_json_schema()["properties"].items()
    if "integer" in {schema.get("type"), *(option.get("type") for option in schema.get("anyOf", []))}
)
Target = Annotated[
    str,
    StringConstraints(pattern="^(" + "|".join(TARGETS) + r"|fields\.[a-z][a-z0-9_]{0,63})$"),
    Field(description="a lead field, utm_*, or fields.<custom>"),
]
router = APIRouter(
    prefix="/v1/forms",
    tags=["forms"],
    dependencies=[public("a web form: only its configured fields get in")],
    responses=documented(400, 404, 410, 413, 422, 429, 503)
    | {303: {"description": "a browser's urlencoded post, sent on to the form's redirect_url"}}
    | {415: {"model": ErrorOut, "description": "neither application/x-www-form-urlencoded nor JSON"}},
)


class ConsentField(BaseModel):
    model_config = ConfigDict(extra="forbid")
    field: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    wording: Annotated[str, StringConstraints(min_length=1, max_length=2000)] = Field(
        description="the consent text the checkbox showed, kept with the opt-in as evidence"
    )


class InboundConfig(BaseModel):
    """How a form's (or a webhook sender's) posts become a lead. ``fields``: incoming name -> lead field
    (``email``, ``first_name``, ..., ``utm_source``, or ``fields.<custom>``); webhooks may use dotted paths
    (``data.email``) into nested JSON."""

    model_config = ConfigDict(extra="forbid")
    fields: dict[Annotated[str, StringConstraints(min_length=1, max_length=200)], Target] = Field(
        min_length=1, max_length=100
    )
    consent: ConsentField | None = None
    source: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = Field(
        default=None, description="the lead source these posts declare, e.g. whitepaper"
    )
    event_type: EventType = "form_submit"
    event_name: Annotated[str, StringConstraints(max_length=200)] | None = Field(
        default=None, description="the event's name for scoring rules (default: the form or sender id)"
    )
    redirect_url: Annotated[str, StringConstraints(pattern=r"^https?://", max_length=2000)] | None = Field(
        default=None, description="forms only: answer a browser's urlencoded post with a 303 to this page"
    )

    @model_validator(mode="after")
    def _email_mapped(self) -> InboundConfig:
        if "email" not in self.fields.values():
            raise ValueError("map one incoming field to email: leads are found by email")
        return self


def _lookup(data: dict[str, Any], path: str) -> Any:
    if path in data:
        return data[path]
    node: Any = data
    for part in path.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


def map_post(config: InboundConfig, data: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """The post as a ``LeadIn`` body, and whether its consent box was checked."""
    body: dict[str, Any] = {"source": config.source} if config.source else {}
    custom: dict[str, Any] = {}
    utm: dict[str, Any] = {}
    for incoming, target in config.fields.items():
        value = _lookup(data, incoming)
        if isinstance(value, list):  # a repeated urlencoded field: the last one, as browsers mean it
            value = value[-1] if value else None
        if value is None or value == "" or isinstance(value, dict):
            continue
        if target.startswith("fields."):
            custom[target[7:]] = value
        elif target.startswith("utm_"):
            utm[target[4:]] = value
        elif target in INTEGER_TARGETS and isinstance(value, str) and value.strip().isdigit():
            body[target] = int(value.strip())
        else:
            body[target] = value
    if custom:
        body["fields"] = custom
    if utm:
        body["utm"] = utm
    checked = False
    if config.consent is not None:
        box = _lookup(data, config.consent.field)
        box = box[-1] if isinstance(box, list) and box else box
        checked = box is True or (isinstance(box, str) and box.strip().lower() in CHECKED)
    return body, checked


def submission_id(prefix: str, source_id: str, data: dict[str, Any], at: datetime) -> str:
    """Derived from the content and the minute: a double-click or a blind retry counts once."""
    content = json.dumps([source_id, data, at.strftime("%Y-%m-%dT%H:%M")], sort_keys=True, default=str)
    return f"{prefix}-{hashlib.sha256(content.encode()).hexdigest()[:40]}"


async def take_post(
    state: AppState, kind: str, source_id: str, config: InboundConfig, data: dict[str, Any], event_id: str
) -> str:
    """Validate, upsert the lead (with consent), add the event; returns the lead id (422 naming the problem)."""
    body, checked = map_post(config, data)
    lead, problems = intake.lead_body(body, state)
    if lead is None:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT, f"the {kind} post cannot make a lead: {'; '.join(problems)}"
        )
    now = datetime.now(UTC)
    consent = None
    if checked and config.consent is not None:
        consent = ConsentRecord("opted_in", "form", now, wording=config.consent.wording, form_id=f"{kind}:{source_id}")
    lead_id = lead_id_for(lead.email, state.id_key)
    event = TrackedEvent(event_id, config.event_type, now, None, config.event_name or source_id, {kind: source_id})
    origin = f"{kind}:{source_id}"  # the form or webhook sender whose post set these attributes
    failed = await intake.deliver_each(
        {lead_id: lambda: intake.upsert(state, lead_id, lead.attributes(), consent, origin=origin)}
    )
    if not failed:
        failed = await intake.deliver_each(
            {lead_id: lambda: signal_events(state, lead_id, EventsReceived([event]), create=False)}
        )
    if failed:
        raise HTTPException(status.HTTP_410_GONE, failed[lead_id])
    return lead_id


async def _form_data(request: Request) -> tuple[dict[str, Any], bool]:
    raw = await request.body()
    if len(raw) > MAX_FORM_BYTES:
        raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, f"a form post is at most {MAX_FORM_BYTES} bytes")
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind == "application/x-www-form-urlencoded":
        data: dict[str, Any] = {}
        for name, value in parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True):
            data.setdefault(name, []).append(value)
        return {k: v[0] if len(v) == 1 else v for k, v in data.items()}, True
    if kind in ("application/json", ""):
        try:
            parsed = json.loads(raw or b"null")
        except ValueError as exc:
            raise HTTPException(status.HTTP_400_BAD_REQUEST, f"the body is not JSON: {exc}") from None
        if not isinstance(parsed, dict):
            raise HTTPException(status.HTTP_400_BAD_REQUEST, "a JSON form post is one object of field: value")
        return parsed, False
    raise HTTPException(
        status.HTTP_415_UNSUPPORTED_MEDIA_TYPE, "send application/x-www-form-urlencoded or application/json"
    )


class FormAccepted(BaseModel):
    lead_id: str
    consent: str | None


@router.post("/{form_id}", status_code=status.HTTP_202_ACCEPTED, response_model=FormAccepted)
async def submit_form(form_id: SourceId, request: Request, state: State) -> Any:
    """A form submission (no key: web pages post it). A configured redirect answers browsers with a 303."""
    async with state.sessions() as session:
        row = await ingest.get_source(session, "form", form_id)
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no form {form_id}: configure it with PUT /v1/admin/forms/")
    config = InboundConfig.model_validate(row.config)
    data, urlencoded = await _form_data(request)
    event_id = submission_id("form", form_id, data, datetime.now(UTC))
    lead_id = await take_post(state, "form", form_id, config, data, event_id)
    consented = map_post(config, data)[1]
    if urlencoded and config.redirect_url:
        return RedirectResponse(config.redirect_url, status_code=status.HTTP_303_SEE_OTHER)
    return JSONResponse(
        FormAccepted(lead_id=lead_id, consent="opted_in" if consented else None).model_dump(), status_code=202
    )
