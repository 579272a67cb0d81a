"""Email templates: a sandboxed Jinja2 environment with bounded size and render time, layouts and locales.

A template is a folder under ``templates/email/<name>/`` with one sub-folder per locale (``en/``, ``ja/``),
each holding ``subject.txt``, ``body.txt`` and ``body.html``; a folder holding the three parts directly is
a template with a single variant (how templates were laid out before locales). Parts extend the layouts in
``templates/email/_layouts/`` and include partials from ``_partials/`` (folders starting with ``_`` are
not templates). The variant is the mail's locale, else the default locale, else ``en``, else the folder's
own parts. StrictUndefined turns a misspelt variable into an error instead of an empty string.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from jinja2 import FileSystemLoader, StrictUndefined, TemplateError, select_autoescape
from jinja2.sandbox import ImmutableSandboxedEnvironment

from rules.addresses import header_text

MAX_TEMPLATE_BYTES = 64 * 1024
MAX_OUTPUT_CHARS = 256 * 1024
PARTS = ("subject.txt", "body.txt", "body.html")
FALLBACK_LOCALE = "en"


class TemplateProblem(Exception):
    """A template is missing, too large, or fails to render: retrying will not help."""


@dataclass(frozen=True)
class RenderedEmail:
    subject: str
    text: str
    html: str
    # The variant rendered ("" for a template without locale folders).
    locale: str = ""


class _BoundedLoader(FileSystemLoader):
    def get_source(self, environment, template):  # type: ignore[no-untyped-def]
        source, filename, uptodate = super().get_source(environment, template)
        if len(source.encode()) > MAX_TEMPLATE_BYTES:
            raise TemplateProblem(f"template {template} is larger than {MAX_TEMPLATE_BYTES} bytes")
        return source, filename, uptodate


def _complete(folder: Path) -> bool:
    return all((folder / part).is_file() for part in PARTS)


class EmailRenderer:
    def __init__(self, templates_dir: Path, default_locale: str = FALLBACK_LOCALE) -> None:
        self.email_dir = templates_dir / "email"
        self.default_locale = default_locale
        self._locales: dict[str, list[str] | None] = {}
        self.env = ImmutableSandboxedEnvironment(
            loader=_BoundedLoader(str(self.email_dir)),
            undefined=StrictUndefined,
            autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=False),
            auto_reload=False,
        )
        self.env.filters["when"] = when

    def available(self) -> set[str]:
        """Template names: folders (not ``_layouts``/``_partials``) with a complete variant."""
        if not self.email_dir.is_dir():
            return set()
        return {
            p.name
            for p in self.email_dir.iterdir()
            if p.is_dir() and not p.name.startswith("_") and self.locales(p.name) is not None
        }

    def locales(self, name: str) -> list[str] | None:
        """The locales ``name`` is written in ([] when it has no locale folders), None when it is no template.

        Read once per name: like the compiled templates (auto_reload off), the layout on disk is taken as
        fixed for the life of the process.
        """
        if name not in self._locales:
            self._locales[name] = self._scan(name)
        return self._locales[name]

    def _scan(self, name: str) -> list[str] | None:
        folder = self.email_dir / name
        if name.startswith(("_", ".")) or "/" in name or not folder.is_dir():
            return None
        found = sorted(p.name for p in folder.iterdir() if p.is_dir() and _complete(p))
        if found:
            return found
        return [] if _complete(folder) else None

    def variant(self, name: str, locale: str | None) -> str:
        """The locale folder rendering ``name`` in ``locale`` uses ("" for the folder's own parts)."""
        written = self.locales(name)
        if written is None:
            raise TemplateProblem(f'no email template "{name}" in {self.email_dir}')
        for wanted in (locale, self.default_locale, FALLBACK_LOCALE):
            if wanted and wanted in written:
                return wanted
        if _complete(self.email_dir / name):
            return ""
        return written[0]

    def render(self, name: str, context: dict[str, Any], locale: str | None = None) -> RenderedEmail:
        variant = self.variant(name, locale)
        folder = f"{name}/{variant}" if variant else name
        # Layouts and partials see the locale actually rendered, whatever was asked for.
        values = {**context, "locale": variant or locale or self.default_locale}
        try:
            subject, text, html = (self.env.get_template(f"{folder}/{part}").render(values) for part in PARTS)
        except TemplateError as exc:
            raise TemplateProblem(f'template "{name}" ({variant or "default"}) failed to render: {exc}') from exc
        if max(len(text), len(html)) > MAX_OUTPUT_CHARS:
            raise TemplateProblem(f'template "{name}" rendered more than {MAX_OUTPUT_CHARS} characters')
        # A header never carries a line break or a control character (header injection).
        return RenderedEmail(header_text(subject), text, html, variant)


def when(value: object, suffix: str = " UTC") -> str:
    """A time as people read it, to the minute in UTC: ``2026-11-30 14:05 UTC`` (``suffix`` says UTC; the pages
    whose column headings say it pass ""). Takes a datetime or the ISO 8601 text the engine puts in a mail's
    context; a time without a zone is the store's UTC. Anything else, shown as it came."""
    if value is None:
        return ""
    moment = value
    if not isinstance(moment, datetime):
        try:
            moment = datetime.fromisoformat(str(value))
        except ValueError:
            return str(value)
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%d %H:%M") + suffix
