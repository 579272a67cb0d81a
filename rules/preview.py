"""The email a template would become for a lead, built as the engine builds it (for previews). Pure.

A marketer previewing ``case_study`` sees the context a journey's send really carries, in the locale the
lead would get; a notification preview gets a sample owner and SLA. Digests are built outside the engine
(jobs/digest.py), so their preview uses a sample of the same shape.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Literal

from rules.engine import _email_lead, _staff_email
from rules.model import FollowUp, LeadState, Owner, Rep, SendEmail
from rules.playbook import CompiledPlaybook

PreviewKind = Literal["nurture", "notification", "digest"]
DIGEST_TEMPLATE = "manager_digest"
SAMPLE_LEADS: dict[str, dict[str, Any]] = {
    "en": {"email": "ann.lee@example.com", "first_name": "Ann", "last_name": "Lee", "company": "Acme Corp",
           "title": "VP Marketing", "country": "US"},
    "ja": {"email": "taro.yamada@example.co.jp", "first_name": "太郎", "last_name": "山田",
           "company": "株式会社サンプル", "title": "営業部長", "country": "JP"},
}  # fmt: skip
SAMPLE_LEAD_ID = "lead-" + "0" * 32


def template_kind(template: str, pb: CompiledPlaybook) -> PreviewKind:
    """How ``template`` is sent under this playbook: by a journey (nurture), as a notification, or a digest."""
    if any(step.template == template and step.type == "send_email" for j in pb.model.journeys for step in j.steps):
        return "nurture"
    return "digest" if template == DIGEST_TEMPLATE else "notification"


def sample_lead(locale: str | None) -> dict[str, Any]:
    return dict(SAMPLE_LEADS.get(locale or "en", SAMPLE_LEADS["en"]))


def preview_email(
    template: str,
    kind: PreviewKind,
    attributes: dict[str, Any],
    pb: CompiledPlaybook,
    now: datetime,
    *,
    lead_id: str = SAMPLE_LEAD_ID,
    stage: str = "mql",
    score: float = 42,
    grade: str | None = "B",
    locale: str | None = None,
) -> SendEmail:
    """The SendEmail the engine would emit; ``locale`` forces a variant (else the lead's, as in production)."""
    state = LeadState(lead_id=lead_id, attributes=dict(attributes), stage=stage, score=score, grade=grade)
    state.attributes.setdefault("email", SAMPLE_LEADS["en"]["email"])
    if kind == "nurture":
        out: list[Any] = []
        _email_lead(state, template, "preview", pb.model.email.locale, out)
        mail: SendEmail = out[0]
    elif kind == "digest":
        mail = _sample_digest(template, now)
    else:
        sample = Rep(
            "rep-sample", "Aiko Sato", "aiko@example.com", "inside-sales", "Mina Manager", "mina.manager@example.com"
        )
        state.owner = Owner(sample, now, "preview")
        state.followup = FollowUp(
            f"{lead_id}:followup:1", "first_touch", "default", "rep-sample", "inside-sales", now, now + timedelta(1)
        )
        mail = _staff_email(state, "rep_notify", template, state.owner.rep.email, state.owner.rep.name, pb)
    if locale:
        mail.locale = locale
    return mail


def _sample_digest(template: str, now: datetime) -> SendEmail:
    item = {"lead_id": SAMPLE_LEAD_ID, "company": "Acme Corp", "email": SAMPLE_LEADS["en"]["email"],
            "rep_name": "Aiko Sato", "rep_id": "rep-sample", "due_at": (now - timedelta(hours=3)).isoformat(),
            "escalated_at": None}  # fmt: skip
    context = {"team": {"key": "inside-sales", "name": "Inside Sales"}, "manager_name": "Mina Manager",
               "day": now.date().isoformat(), "items": [item]}  # fmt: skip
    # The digest job writes in the sender's default locale (LEADFLOW_DEFAULT_LOCALE), as here.
    return SendEmail("preview:digest", "manager_digest", template, "mina.manager@example.com", context, "Mina Manager")
