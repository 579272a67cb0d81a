"""Email templates: a sandboxed Jinja2 environment with bounded size and render time.

Each template is a folder under ``templates/email/<name>/`` holding ``subject.txt``, ``body.txt`` and
``body.html``. StrictUndefined turns a misspelt variable into an error instead of an empty string.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import FileSystemLoader, StrictUndefined, TemplateError, select_autoescape
from jinja2.sandbox import ImmutableSandboxedEnvironment

from rules.addresses import header_text

MAX_TEMPLATE_BYTES = 64 * 1024
MAX_OUTPUT_CHARS = 256 * 1024
PARTS = ("subject.txt", "body.txt", "body.html")


class TemplateProblem(Exception):
    """A template is missing, too large, or fails to render: retrying will not help."""


@dataclass(frozen=True)
class RenderedEmail:
    subject: str
    text: str
    html: str


class _BoundedLoader(FileSystemLoader):
    def get_source(self, environment, template):  # type: ignore[no-untyped-def]
        source, filename, uptodate = super().get_source(environment, template)
        if len(source.encode()) > MAX_TEMPLATE_BYTES:
            raise TemplateProblem(f"template {template} is larger than {MAX_TEMPLATE_BYTES} bytes")
        return source, filename, uptodate


class EmailRenderer:
    def __init__(self, templates_dir: Path) -> None:
        self.email_dir = templates_dir / "email"
        self.env = ImmutableSandboxedEnvironment(
            loader=_BoundedLoader(str(self.email_dir)),
            undefined=StrictUndefined,
            autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=False),
            auto_reload=False,
        )

    def available(self) -> set[str]:
        if not self.email_dir.is_dir():
            return set()
        return {p.name for p in self.email_dir.iterdir() if p.is_dir() and all((p / part).exists() for part in PARTS)}

    def render(self, name: str, context: dict[str, Any]) -> RenderedEmail:
        if name not in self.available():
            raise TemplateProblem(f'no email template "{name}" in {self.email_dir}')
        try:
            subject, text, html = (self.env.get_template(f"{name}/{part}").render(context) for part in PARTS)
        except TemplateError as exc:
            raise TemplateProblem(f'template "{name}" failed to render: {exc}') from exc
        if max(len(text), len(html)) > MAX_OUTPUT_CHARS:
            raise TemplateProblem(f'template "{name}" rendered more than {MAX_OUTPUT_CHARS} characters')
        # A header never carries a line break or a control character (header injection).
        return RenderedEmail(header_text(subject), text, html)
