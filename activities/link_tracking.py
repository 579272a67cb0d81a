"""The post-render tracking transform: tracked links and an open pixel in a nurture email's HTML part.

Called by the send activity after rendering and before the message is built, so templates stay plain
HTML and the same template renders untracked in previews. Only absolute http(s) links are rewritten; links
to leadflow itself (``LEADFLOW_PUBLIC_BASE_URL``: unsubscribe and the like), ``mailto:``/``tel:``/anchors
and any ``<a data-leadflow-notrack>`` keep their target. The text part is left alone: plain-text links
are read by people, and a long redirect there looks like phishing.
"""

from __future__ import annotations

import html
import re
from dataclasses import replace

from activities.rendering import RenderedEmail
from activities.tracking_tokens import MAX_TARGET_CHARS, TrackedSend, sign, tracking_key
from rules.model import SendEmail
from settings import Settings

CLICK_PATH = "/t/c/"
OPEN_PATH = "/t/o/"
_ANCHOR = re.compile(r"<a\b[^>]*>", re.IGNORECASE)
_HREF = re.compile(r"""(\shref\s*=\s*)(?:"([^"]*)"|'([^']*)')""", re.IGNORECASE)
_BODY_END = re.compile(r"</body\s*>", re.IGNORECASE)


def tracked_email(rendered: RenderedEmail, mail: SendEmail, settings: Settings) -> RenderedEmail:
    """``rendered`` with tracking as the command and the global switches allow (unchanged otherwise)."""
    opens, clicks = mail.track_opens and settings.track_opens, mail.track_clicks and settings.track_clicks
    if not (opens or clicks):
        return rendered
    key = tracking_key(settings.secret("id_key"))
    base = settings.public_base_url.rstrip("/")
    send = TrackedSend(mail.key, mail.template, mail.variant)
    body = rendered.html
    if clicks:
        body = rewrite_links(body, send, key, base)
    if opens:
        body = add_open_pixel(body, send, key, base)
    return replace(rendered, html=body)


def _trackable(target: str, base: str) -> bool:
    lowered = target.lower()
    return (
        lowered.startswith(("http://", "https://"))
        and not target.startswith(base + "/")
        and len(target) <= MAX_TARGET_CHARS
        and not any(c.isspace() or ord(c) < 32 for c in target)
    )


def rewrite_links(body: str, send: TrackedSend, key: str, base: str) -> str:
    def anchor(match: re.Match[str]) -> str:
        tag = match.group(0)
        if "data-leadflow-notrack" in tag.lower():
            return tag

        def href(attr: re.Match[str]) -> str:
            raw = attr.group(2) if attr.group(2) is not None else attr.group(3)
            target = html.unescape(raw)
            if not _trackable(target, base):
                return attr.group(0)
            return f'{attr.group(1)}"{html.escape(base + CLICK_PATH + sign(send, key, target))}"'

        return _HREF.sub(href, tag, count=1)

    return _ANCHOR.sub(anchor, body)


def add_open_pixel(body: str, send: TrackedSend, key: str, base: str) -> str:
    src = html.escape(f"{base}{OPEN_PATH}{sign(send, key)}.gif")
    pixel = f'<img src="{src}" width="1" height="1" alt="" style="display:block;border:0;width:1px;height:1px">'
    ends = list(_BODY_END.finditer(body))
    if not ends:
        return body + pixel
    at = ends[-1].start()
    return body[:at] + pixel + body[at:]
