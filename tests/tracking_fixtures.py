"""Shared pieces of the tracking and bounce tests: a template with real links, and a playbook whose journey
sends it and waits for a click on it."""

from __future__ import annotations

import re
import shutil
from email.message import Message
from pathlib import Path
from typing import Any

import yaml

from settings import ROOT

OFFER_HTML = """<html><body>
<p>Hello {{ lead.first_name | default("there") }},</p>
<p><a href="https://example.com/pricing?plan=team&amp;ref=mail">See pricing</a> or
<a class="cta" href='https://example.com/demo'>book a demo</a>.</p>
<p><a href="mailto:sales@example.com">Write to us</a> <a href="#top">top</a>
<a data-leadflow-notrack href="https://example.com/private">untracked</a></p>
<p><a href="{{ unsubscribe_url }}">Unsubscribe</a></p>
</body></html>
"""


def templates_with_offer(tmp: Path) -> Path:
    """The shipped templates plus ``offer``, whose HTML part holds links of every kind."""
    target = tmp / "templates"
    shutil.copytree(ROOT / "templates", target)
    offer = target / "email" / "offer"
    offer.mkdir()
    (offer / "subject.txt").write_text("Our offer")
    (offer / "body.txt").write_text("Hello, see https://example.com/pricing\nUnsubscribe: {{ unsubscribe_url }}\n")
    (offer / "body.html").write_text(OFFER_HTML)
    return target


def click_journey_playbook(**email: Any) -> str:
    """The default playbook whose journey sends ``offer`` and waits three days for a click on it."""
    doc = yaml.safe_load((ROOT / "playbooks" / "default.yaml").read_text(encoding="utf-8"))
    doc["journeys"] = [
        {
            "id": "offer_nurture",
            "enroll_when": 'stage == "new" or stage == "mql"',
            "steps": [
                {"id": "offer", "type": "send_email", "template": "offer"},
                {
                    "id": "wait_click",
                    "type": "wait_for_event",
                    "condition": 'event.type == "email_click" and event.properties["template"] == "offer"',
                    "timeout": "3d",
                    "on_event": "clicked",
                    "on_timeout": "no_click",
                },
                {"id": "clicked", "type": "set_field", "field": "clicked_offer", "value": "yes", "next": "done"},
                {"id": "no_click", "type": "set_field", "field": "clicked_offer", "value": "no"},
                {"id": "done", "type": "exit"},
            ],
        }
    ]
    if email:
        doc["email"] = {"require_opt_in": False, **email}
    return yaml.safe_dump(doc, allow_unicode=True)


def html_part(msg: Message) -> str:
    part = msg.get_body(preferencelist=("html",))  # type: ignore[attr-defined]
    assert part is not None, "no HTML part"
    return str(part.get_content())


def hrefs(html: str) -> list[str]:
    return [m[0] or m[1] for m in re.findall(r"""href=(?:"([^"]*)"|'([^']*)')""", html)]


def pixel_src(html: str) -> str | None:
    found = re.search(r'<img src="([^"]*/t/o/[^"]*)"', html)
    return found.group(1) if found else None


async def suppression_of(sessions: Any, settings: Any, address: str) -> str | None:
    """Why the suppression list holds ``address`` (None: it may be mailed)."""
    from store import suppressions

    async with sessions() as session:
        entry = await suppressions.matching(session, suppressions.hashes_for(address, settings.secret("id_key")))
    return entry.reason if entry is not None else None
