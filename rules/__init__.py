"""The pure core: playbook, rule expressions and the lead state machine. No I/O, no clock."""

from rules.engine import Decision, decide, material_view, snapshot
from rules.playbook import CompiledPlaybook, PlaybookError, compiled_from_document, load_playbook_text

__all__ = [
    "CompiledPlaybook",
    "Decision",
    "PlaybookError",
    "compiled_from_document",
    "decide",
    "load_playbook_text",
    "material_view",
    "snapshot",
]
