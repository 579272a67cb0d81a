"""The email report's counts: sends from the ledger, opens/clicks/unsubscribes from touchpoints, bounces
and complaints from the relay's reports, per template and A/B variant of the send they concern."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime

from sqlalchemy import Select, and_, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from store.models import EmailFeedbackRow, EmailRow, Touchpoint

Group = tuple[str, str | None]  # (template, variant)
UNSUBSCRIBE_TYPES = ("unsubscribe", "email_unsubscribe")


def _sends(
    kind: str, since: datetime | None, until: datetime | None
) -> Select[str, str | None, str, str | None, datetime | None]:
    """The sent mail the report covers (one row per send key)."""
    stmt = select(EmailRow.key, EmailRow.lead_id, EmailRow.template, EmailRow.variant, EmailRow.sent_at).where(
        EmailRow.status == "sent", EmailRow.kind == kind
    )
    if since is not None:
        stmt = stmt.where(EmailRow.sent_at >= since)
    if until is not None:
        stmt = stmt.where(EmailRow.sent_at < until)
    return stmt


async def email_counts(
    session: AsyncSession, *, kind: str = "nurture", since: datetime | None = None, until: datetime | None = None
) -> dict[Group, dict[str, int]]:
    """Per (template, variant): sends, and how many of those sends were opened, clicked, bounced..."""
    counts: dict[Group, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    sends = _sends(kind, since, until).subquery()
    group = (sends.c.template, sends.c.variant)
    for template, variant, n in (await session.execute(select(*group, func.count()).group_by(*group))).all():
        counts[(template, variant)]["sends"] = n
    send_key = Touchpoint.properties["send_key"].as_string()
    for event_type, column in (("email_open", "unique_opens"), ("email_click", "unique_clicks")):
        stmt = (
            select(*group, func.count(func.distinct(sends.c.key)))
            .join(Touchpoint, and_(send_key == sends.c.key, Touchpoint.type == event_type))
            .group_by(*group)
        )
        for template, variant, n in (await session.execute(stmt)).all():
            counts[(template, variant)][column] = n
    for feedback, column in (
        ("hard_bounce", "hard_bounces"),
        ("soft_bounce", "soft_bounces"),
        ("complaint", "complaints"),
    ):
        stmt = (
            select(*group, func.count(func.distinct(sends.c.key)))
            .join(EmailFeedbackRow, and_(EmailFeedbackRow.email_key == sends.c.key, EmailFeedbackRow.type == feedback))
            .group_by(*group)
        )
        for template, variant, n in (await session.execute(stmt)).all():
            counts[(template, variant)][column] = n
    for group_key, n in (await _unsubscribes(session, kind, since, until)).items():
        counts[group_key]["unsubscribes"] = n
    return {key: dict(value) for key, value in counts.items()}


async def _unsubscribes(
    session: AsyncSession, kind: str, since: datetime | None, until: datetime | None
) -> dict[Group, int]:
    """Each lead's unsubscribe goes to the last mail it was sent before unsubscribing (the one that made it
    leave): the unsubscribe link names the lead, not the send."""
    sends = _sends(kind, since, until).subquery()
    stmt = (
        select(Touchpoint.lead_id, Touchpoint.occurred_at, sends.c.template, sends.c.variant, sends.c.sent_at)
        .join(sends, and_(sends.c.lead_id == Touchpoint.lead_id, sends.c.sent_at <= Touchpoint.occurred_at))
        .where(Touchpoint.type.in_(UNSUBSCRIBE_TYPES))
    )
    latest: dict[tuple[str, datetime], tuple[datetime, Group]] = {}
    for lead_id, at, template, variant, sent_at in (await session.execute(stmt)).all():
        seen = latest.get((lead_id, at))
        if seen is None or sent_at > seen[0]:
            latest[(lead_id, at)] = (sent_at, (template, variant))
    per_lead: dict[str, Group] = {}
    for (lead_id, _), (_, group_key) in sorted(latest.items(), key=lambda item: item[0][1]):
        per_lead.setdefault(lead_id, group_key)  # a person unsubscribes once: count their first
    result: dict[Group, int] = defaultdict(int)
    for group_key in per_lead.values():
        result[group_key] += 1
    return dict(result)
