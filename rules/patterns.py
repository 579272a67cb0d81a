"""Regular expressions for the rule language's ``matches()``: which patterns a playbook may use, and the
engine that runs them.

Patterns run on RE2, whose matching time is linear in the text, so a marketer's pattern applied to a title
typed by anyone can never hold a worker (issue 6). Lead workflows recorded before the switch ran patterns on
Python's backtracking ``re`` and must replay with it: ``ENGINES`` keeps both, and the workflow picks one
per run (``workflow.patched``). Validation always uses RE2's rules.
"""

from __future__ import annotations

import re
import re._constants as sre_constants
import re._parser as sre_parse
from collections.abc import Callable
from functools import lru_cache
from typing import Any

import re2

MAX_MATCH_TEXT = 1000  # characters of a field a pattern looks at
MAX_PATTERN_LENGTH = 500
PATTERN_MEMORY = 1 << 20  # bytes RE2 may use for one compiled pattern (bigger ones are refused)


def _re2_options() -> re2.Options:
    options = re2.Options()
    options.case_sensitive = False
    options.never_capture = True  # only "does it match" is asked
    options.log_errors = False
    options.max_mem = PATTERN_MEMORY
    return options


_RE2_OPTIONS = _re2_options()
# RE2's own words -> what a marketer can do about it
_RE2_REASONS = (
    ("invalid escape sequence: \\Z", "write \\z instead of \\Z for the end of the text"),
    ("invalid escape sequence: \\", "backreferences (\\1, \\2, ...) are not supported"),
    ("invalid perl operator: (?=", "lookahead (?=...) is not supported"),
    ("invalid perl operator: (?!", "negative lookahead (?!...) is not supported"),
    ("invalid perl operator: (?<", "lookbehind (?<=...) / (?<!...) is not supported"),
    ("invalid perl operator: (?P", "backreferences (?P=name) are not supported"),
    ("invalid repetition size", "a repetition count above 1000 is not supported"),
    ("pattern too large", "the pattern is too large once its repetitions are expanded"),
)


def pattern_problem(pattern: str) -> str | None:
    """Why a pattern cannot be used, in plain words (None when it can).

    Patterns run on RE2, whose matching time is linear in the text: no pattern can backtrack
    catastrophically (``(a+)+$`` is as fast as ``a+``), so none needs a wall-clock timeout, which workflow
    code could not use anyway. What RE2 cannot do (backreferences, lookaround) is refused here, with why.
    """
    if any(ord(c) < 32 for c in pattern):
        return (
            "it contains a control character; in YAML double quotes write \\\\b for a word boundary "
            "(or use single quotes: '\\b')"
        )
    if len(pattern) > MAX_PATTERN_LENGTH:
        return f"it is longer than {MAX_PATTERN_LENGTH} characters"
    try:
        re2.compile(pattern, _RE2_OPTIONS)
    except re2.error as exc:
        detail = exc.args[0].decode("utf-8", "replace") if exc.args and isinstance(exc.args[0], bytes) else str(exc)
        reason = next((why for prefix, why in _RE2_REASONS if detail.startswith(prefix)), None)
        if reason:
            return f"{reason} (patterns run on RE2, which matches in linear time; {detail})"
        return f"not a valid regular expression: {detail}"
    if _boundary_next_to_non_ascii(pattern):
        return (
            "on RE2 a word boundary \\b only knows ASCII letters, so next to Japanese or other non-ASCII text it "
            "never matches; leave \\b out there, e.g. \\b(vp|director)|部長"
        )
    return None


def _boundary_next_to_non_ascii(pattern: str) -> bool:
    """``\\b(vp|部長)``: Python's Unicode \\b matched before 部長, RE2's ASCII one never does. Refused rather
    than silently changing what a rule written for the old engine means."""
    try:
        parsed = sre_parse.parse(pattern)
    except re.error:
        return False  # syntax only RE2 knows (\\pL, ...): no Python meaning to compare with
    sequences: list[Any] = [list(parsed)]
    while sequences:
        items = sequences.pop()
        for position, (op, av) in enumerate(items):
            if op is sre_constants.AT and av in (sre_constants.AT_BOUNDARY, sre_constants.AT_NON_BOUNDARY):
                before = items[position - 1 : position] if position else []
                after = items[position + 1 : position + 2]
                if any(_edge_non_ascii(item, last=True) for item in before) or any(
                    _edge_non_ascii(item, last=False) for item in after
                ):
                    return True
            elif op is sre_constants.SUBPATTERN:
                sequences.append(list(av[-1]))
            elif op is sre_constants.BRANCH:
                sequences.extend(list(branch) for branch in av[1])
            elif op in (sre_constants.MAX_REPEAT, sre_constants.MIN_REPEAT):
                sequences.append(list(av[2]))
    return False


def _edge_non_ascii(item: Any, last: bool) -> bool:
    """Whether the first (or last) character this parse item matches can be non-ASCII."""
    op, av = item
    if op is sre_constants.LITERAL:
        return bool(av > 127)
    if op is sre_constants.IN:
        return any(
            (kind is sre_constants.LITERAL and value > 127) or (kind is sre_constants.RANGE and value[1] > 127)
            for kind, value in av
        )
    if op is sre_constants.SUBPATTERN:
        inner = list(av[-1])
        return bool(inner) and _edge_non_ascii(inner[-1 if last else 0], last)
    if op is sre_constants.BRANCH:
        return any(branch and _edge_non_ascii(list(branch)[-1 if last else 0], last) for branch in av[1])
    if op in (sre_constants.MAX_REPEAT, sre_constants.MIN_REPEAT):
        inner = list(av[2])
        return bool(inner) and _edge_non_ascii(inner[-1 if last else 0], last)
    return False


@lru_cache(maxsize=512)
def _re2_regex(pattern: str) -> Any:
    # Only what RE2 cannot run is None here: a stored version's pattern must mean the same on every worker.
    if any(ord(c) < 32 for c in pattern):
        return None
    try:
        return re2.compile(pattern, _RE2_OPTIONS)
    except re2.error:
        return None


def _matches_re2(text: Any, pattern: Any) -> bool:
    if not (isinstance(text, str) and isinstance(pattern, str)):
        return False
    compiled = _re2_regex(pattern)  # a pattern read from a field is checked here, not at compile time
    return compiled is not None and compiled.search(text[:MAX_MATCH_TEXT]) is not None


# ------------------------------------------------------------------ Python's re, for runs recorded before RE2


def legacy_pattern_problem(pattern: str) -> str | None:
    """Why a pattern cannot be used, in plain words (None when it can).

    Nested repetition such as ``(a+)+`` can take exponential time on some texts (catastrophic
    backtracking); a wall-clock timeout is no cure in workflow code, where results must not depend on
    machine speed, so such patterns are refused when the playbook is checked.
    """
    if any(ord(c) < 32 for c in pattern):
        return (
            "it contains a control character; in YAML double quotes write \\\\b for a word boundary "
            "(or use single quotes: '\\b')"
        )
    try:
        parsed = sre_parse.parse(pattern)
    except re.error as exc:
        return f"not a valid regular expression: {exc}"
    if _nested_repeat(parsed, inside_repeat=False):
        return (
            "it repeats a repetition or overlapping alternatives (like (a+)+ or (a|aa)+), which can take "
            "forever on some texts; simplify it"
        )
    return None


_REPEATS = {sre_constants.MAX_REPEAT, sre_constants.MIN_REPEAT, getattr(sre_constants, "POSSESSIVE_REPEAT", None)}


def _nested_repeat(items: Any, inside_repeat: bool) -> bool:
    for op, av in items:
        if op in _REPEATS:
            _low, high, sub = av
            unbounded = high == sre_constants.MAXREPEAT or high > 1
            if unbounded and inside_repeat:
                return True
            if _nested_repeat(sub, inside_repeat or unbounded):
                return True
        elif op is sre_constants.SUBPATTERN:
            if _nested_repeat(av[-1], inside_repeat):
                return True
        elif op is sre_constants.BRANCH:
            if inside_repeat and not _distinct_first_literals(av[1]):
                return True  # (a|aa)+: alternatives that can match the same text, repeated
            if any(_nested_repeat(branch, inside_repeat) for branch in av[1]):
                return True
        elif op in (sre_constants.ASSERT, sre_constants.ASSERT_NOT):
            if _nested_repeat(av[1], inside_repeat):
                return True
    return False


def _distinct_first_literals(branches: Any) -> bool:
    firsts = []
    for branch in branches:
        items = list(branch)
        if not items or items[0][0] is not sre_constants.LITERAL:
            return False
        firsts.append(items[0][1])
    return len(firsts) == len(set(firsts))


@lru_cache(maxsize=512)
def _python_regex(pattern: str) -> re.Pattern[str] | None:
    return None if legacy_pattern_problem(pattern) else re.compile(pattern, re.IGNORECASE)


def _matches_python(text: Any, pattern: Any) -> bool:
    if not (isinstance(text, str) and isinstance(pattern, str)):
        return False
    compiled = _python_regex(pattern)  # a pattern read from a field is checked here, not at compile time
    return compiled is not None and compiled.search(text[:MAX_MATCH_TEXT]) is not None


ENGINES: dict[str, Callable[[Any, Any], bool]] = {"re2": _matches_re2, "python": _matches_python}


# A lead's title or email meets the same patterns at every event: remember the latest answers (pure, so
# remembering changes no answer). Bounded: short texts only, and the memo starts over when full.
MATCH_MEMO_SIZE = 2048
MATCH_MEMO_TEXT = 200


def memoised_matcher(engine: str, pattern: str) -> Callable[[Any], bool]:
    """``matches(text, pattern)`` for one constant pattern, as ENGINES[engine] answers it."""
    match = ENGINES[engine]
    memo: dict[str, bool] = {}

    def matcher(text: Any) -> bool:
        if not isinstance(text, str):
            return False
        if len(text) > MATCH_MEMO_TEXT:
            return match(text, pattern)
        hit = memo.get(text)
        if hit is None:
            if len(memo) >= MATCH_MEMO_SIZE:
                memo.clear()
            hit = memo[text] = match(text, pattern)
        return hit

    return matcher
