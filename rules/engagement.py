"""Engagement tracking decisions: which nurture mail is tracked, and which opens and clicks count once.

Pure: times are given. The event id of an open or click is derived from the send, the kind (and the
link) and a time bucket, so the lead workflow's event-id dedupe drops the repeats that mail-client
prefetchers (Apple Mail Privacy Protection, Gmail's image proxy) and link scanners make within a window.
"""

from __future__ import annotations

import hashlib
from datetime import datetime

from rules.playbook import EmailPolicy

OPEN, CLICK = "email_open", "email_click"


def tracking_for(policy: EmailPolicy, template: str) -> tuple[bool, bool]:
    """(track opens, track clicks) for nurture mail from ``template``: the template's own switch wins."""
    tracking = policy.tracking
    own = tracking.templates.get(template)
    opens = own.opens if own is not None and own.opens is not None else tracking.opens
    clicks = own.clicks if own is not None and own.clicks is not None else tracking.clicks
    return opens, clicks


def engagement_event_id(kind: str, send_key: str, at: datetime, window_seconds: int, link: str | None = None) -> str:
    """The same id for every open (or click on the same link) of one send within one window."""
    bucket = int(at.timestamp()) // max(window_seconds, 1)
    target = f":{hashlib.sha256(link.encode()).hexdigest()[:16]}" if link is not None else ""
    return f"{kind}:{send_key}{target}:{bucket}"


def variant_label(variants: dict[str, str]) -> str | None:
    """The A/B variants a journey's lead is in, as reports group them: "split=variant", comma-joined."""
    return ",".join(f"{split}={goto}" for split, goto in sorted(variants.items())) or None


REPORT_COUNTS = ("sends", "unique_opens", "unique_clicks", "unsubscribes", "hard_bounces", "soft_bounces", "complaints")


def report_rows(counts: dict[tuple[str, str | None], dict[str, int]]) -> list[dict[str, object]]:
    """The email report: counts per template and variant, with rates over sends (opens include the mail
    clients that fetch every image, Apple Mail Privacy Protection among them: clicks are the firmer sign)."""
    rows: list[dict[str, object]] = []
    for (template, variant), found in sorted(counts.items(), key=lambda item: (item[0][0], item[0][1] or "")):
        row: dict[str, object] = {"template": template, "variant": variant}
        row |= {name: found.get(name, 0) for name in REPORT_COUNTS}
        sends = found.get("sends", 0)
        for name in ("unique_opens", "unique_clicks", "unsubscribes", "hard_bounces", "complaints"):
            row[f"{name.removeprefix('unique_').rstrip('s')}_rate"] = (
                round(found.get(name, 0) / sends, 4) if sends else None
            )
        rows.append(row)
    return rows
