"""Email templates for marketers: which exist in which languages, and what one renders to for a lead.

A preview renders exactly what the Mailer would send (same context, layouts, footer, unsubscribe link and
headers), for a sample lead or a real one from the store, without sending anything.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, status
from pydantic import BaseModel, ConfigDict, Field

from activities.email import RENDER_TIMEOUT_SECONDS, Mailer
from activities.rendering import EmailRenderer, TemplateProblem
from api.deps import Session, State
from api.errors import BODY_ERRORS, V1_ERRORS, documented
from api.lead_ids import LEAD_ID_PATTERN
from api.roles import allow
from rules.access import Role
from rules.addresses import header_text
from rules.locale import LOCALE_PATTERN
from rules.preview import SAMPLE_LEAD_ID, PreviewKind, preview_email, sample_lead, template_kind
from store import repo

router = APIRouter(prefix="/v1/templates", tags=["templates"], dependencies=[allow(Role.marketer)], responses=V1_ERRORS)
TemplateName = Annotated[str, Path(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$", description="a template folder")]
# Lead columns the store keeps outside ``attributes``.
LEAD_COLUMNS = ("email", "first_name", "last_name", "company", "title", "company_size", "industry", "country")


class PreviewIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    lead_id: str | None = Field(default=None, pattern=LEAD_ID_PATTERN, description="render for this stored lead")
    lead: dict[str, Any] | None = Field(
        default=None, max_length=100, description="sample lead fields (over the stored lead's, if lead_id is given)"
    )
    locale: str | None = Field(default=None, pattern=LOCALE_PATTERN, description="force a variant (en, ja)")
    kind: PreviewKind | None = Field(default=None, description="default: nurture if a journey sends the template")


class PreviewOut(BaseModel):
    template: str
    kind: PreviewKind
    locale: str
    to: str
    subject: str
    text: str
    html: str
    headers: dict[str, str]


class TemplateOut(BaseModel):
    name: str
    locales: list[str]
    kind: PreviewKind


@router.get("", response_model=list[TemplateOut])
async def list_templates(state: State) -> list[TemplateOut]:
    renderer = EmailRenderer(state.settings.templates_dir, state.settings.default_locale)
    compiled = (await state.current_playbook()).compiled
    return [
        TemplateOut(name=name, locales=renderer.locales(name) or [], kind=template_kind(name, compiled))
        for name in sorted(renderer.available())
    ]


@router.post("/{name}:preview", response_model=PreviewOut, responses=BODY_ERRORS | documented(404))
async def preview_template(name: TemplateName, body: PreviewIn, state: State, session: Session) -> PreviewOut:
    """Render ``name`` for a sample lead (in ``locale``), or a real one (``lead_id``); nothing is sent."""
    settings = state.settings
    renderer = EmailRenderer(settings.templates_dir, settings.default_locale)
    if name not in renderer.available():
        known = ", ".join(sorted(renderer.available()))
        raise HTTPException(status.HTTP_404_NOT_FOUND, f'no email template "{name}" (templates: {known})')
    compiled = (await state.current_playbook()).compiled
    kind = body.kind or template_kind(name, compiled)
    stored: dict[str, Any] = {}
    if body.lead_id is not None:
        row = await repo.get_lead(session, body.lead_id)
        if row is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no lead {body.lead_id} in the store")
        attributes = {**(row.get("attributes") or {}), **{k: row[k] for k in LEAD_COLUMNS if row.get(k) is not None}}
        stored = {"lead_id": body.lead_id, "stage": row["stage"], "score": row["score"], "grade": row["grade"]}
    else:
        attributes = sample_lead(body.locale)
    attributes.update(body.lead or {})
    mail = preview_email(name, kind, attributes, compiled, datetime.now(UTC), locale=body.locale, **stored)
    mailer = Mailer(settings, state.sessions, renderer)
    unsubscribe = mailer.unsubscribe_for(mail, stored.get("lead_id", SAMPLE_LEAD_ID))
    try:
        rendered = await asyncio.wait_for(asyncio.to_thread(mailer.render, mail, unsubscribe), RENDER_TIMEOUT_SECONDS)
    except (TemplateProblem, TimeoutError) as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc) or "render timed out") from exc
    return PreviewOut(
        template=name,
        kind=kind,
        locale=rendered.locale or mail.locale or settings.default_locale,
        to=header_text(mail.to),
        subject=rendered.subject,
        text=rendered.text,
        html=rendered.html,
        headers=unsubscribe.headers() if unsubscribe else {},
    )
