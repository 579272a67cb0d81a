"""The rule expressions marketers write, compiled once per playbook version.

Syntax is a small, Python-like language::

    event.type == "page_view" and "/pricing" in event.url
    matches(lead.title, "vp|director|head of") and lead.company_size >= 200
    count("page_view", days=7) >= 3 and score >= 50

The text is parsed with :mod:`ast`, checked against a strict allow-list (known roots and fields, named
safe functions, literals, boolean logic, comparisons, arithmetic), rewritten so a missing value makes a
comparison false instead of raising, and compiled to one Python function. Marketer text never reaches
``eval``/``exec`` as text: only the checked tree is compiled. Evaluating a compiled rule costs about a
microsecond (bench/rules_bench.py).
"""

from __future__ import annotations

import ast
import difflib
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, TypeGuard

from rules.patterns import ENGINES, pattern_problem

MAX_LENGTH = 2000
MAX_DURATION_SECONDS = 100 * 366 * 86400
MAX_NODES = 300

LEAD_FIELDS = frozenset(
    {
        "email",
        "first_name",
        "last_name",
        "name",
        "company",
        "title",
        "seniority",
        "company_size",
        "industry",
        "country",
        "region",
        "city",
        "phone",
        "website",
        "source",
        "source_category",
        "latest_source",
        "latest_source_category",
        "utm_source",
        "utm_medium",
        "utm_campaign",
        "utm_term",
        "utm_content",
        "product_interest",
        "budget",
        "budget_currency",
        "authority",
        "need",
        "timeline",
        "annual_revenue",
        "language",
        "timezone",
        "created_at",
        "lifecycle_status",
    }
)
EVENT_FIELDS = frozenset(
    {"id", "type", "at", "url", "name", "properties", "channel", "source", "medium", "campaign", "content", "term"}
)
SCALARS = ("score", "grade", "stage", "now")
# Parameters of every compiled rule, in order.
PARAMS = ("lead", "event", "score", "grade", "stage", "now", "history")


class ExpressionError(ValueError):
    """A rule a marketer wrote cannot be used; ``message`` says why in plain words."""

    def __init__(self, message: str, column: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.column = column


# ------------------------------------------------------------------ runtime helpers (None-safe)


def _get(obj: Any, key: str) -> Any:
    return obj.get(key) if isinstance(obj, Mapping) else None


def _order(op: Callable[[Any, Any], bool]) -> Callable[[Any, Any], bool]:
    def compare(a: Any, b: Any) -> bool:
        if a is None or b is None:
            return False
        try:
            return op(a, b)
        except TypeError:
            return False

    return compare


def _in(needle: Any, haystack: Any) -> bool:
    if needle is None or haystack is None:
        return False
    if isinstance(haystack, str):
        return isinstance(needle, str) and needle.lower() in haystack.lower()
    try:
        if isinstance(needle, str):
            return any(isinstance(x, str) and x.lower() == needle.lower() for x in haystack)
        return needle in haystack
    except TypeError:
        return False


def _eq(a: Any, b: Any) -> bool:
    if isinstance(a, str) and isinstance(b, str):
        return a.lower() == b.lower()
    return a == b


def _number(value: Any) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _arith(op: Callable[[Any, Any], Any], numbers_only: bool = False) -> Callable[[Any, Any], Any]:
    def apply(a: Any, b: Any) -> Any:
        if a is None or b is None or (numbers_only and not (_number(a) and _number(b))):
            return None
        try:
            return op(a, b)
        except (TypeError, ZeroDivisionError, OverflowError):
            return None

    return apply


def _neg(value: Any) -> Any:
    return -value if _number(value) else None


def _contains(haystack: Any, needle: Any) -> bool:
    return _in(needle, haystack)


def _starts_with(text: Any, prefix: Any) -> bool:
    return isinstance(text, str) and isinstance(prefix, str) and text.lower().startswith(prefix.lower())


def _ends_with(text: Any, suffix: Any) -> bool:
    return isinstance(text, str) and isinstance(suffix, str) and text.lower().endswith(suffix.lower())


def _lower(text: Any) -> Any:
    return text.lower() if isinstance(text, str) else None


def _length(value: Any) -> int:
    try:
        return len(value)
    except TypeError:
        return 0


def to_datetime(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return None


def _days_since(now: datetime, value: Any) -> float | None:
    when = to_datetime(value)
    return None if when is None else (now - when).total_seconds() / 86400


MAX_COUNT_DAYS = 36600  # count(..., days=N) written in a rule: a window of at most a hundred years


class RuleArgumentError(ValueError):
    """A value read at run time is outside what a function can compute (the rule is skipped and recorded)."""


def _count(
    history: Callable[[str, float | None, datetime], int], now: datetime, event_type: Any, days: Any = None
) -> int:
    if not isinstance(event_type, str):
        return 0
    # Values from fields are not range-checked here: what computed before must count the same on replay;
    # what cannot be computed (a window reaching before year 1) raises RuleArgumentError from the history.
    return history(event_type, float(days) if isinstance(days, int | float) else None, now)


RUNTIME: dict[str, Any] = {
    "_get": _get,
    "_lt": _order(lambda a, b: a < b),
    "_le": _order(lambda a, b: a <= b),
    "_gt": _order(lambda a, b: a > b),
    "_ge": _order(lambda a, b: a >= b),
    "_eq": _eq,
    "_in": _in,
    "_add": _arith(lambda a, b: a + b),
    "_sub": _arith(lambda a, b: a - b),
    # Numbers only: "a" * 10**9 would allocate without bound.
    "_mul": _arith(lambda a, b: a * b, numbers_only=True),
    "_div": _arith(lambda a, b: a / b, numbers_only=True),
    "_neg": _neg,
    "_matches": ENGINES["re2"],
    "_contains": _contains,
    "_starts_with": _starts_with,
    "_ends_with": _ends_with,
    "_lower": _lower,
    "_length": _length,
    "_days_since": _days_since,
    "_count": _count,
    "_date": to_datetime,
    "__builtins__": {},
}

# name marketers write -> (runtime helper, min args, max args, what it does)
FUNCTIONS: dict[str, tuple[str, int, int, str]] = {
    "matches": ("_matches", 2, 2, 'matches(lead.title, "vp|director") - regular expression, any case'),
    "contains": ("_contains", 2, 2, 'contains(event.url, "/pricing") - text or list contains, any case'),
    "starts_with": ("_starts_with", 2, 2, 'starts_with(event.url, "https://")'),
    "ends_with": ("_ends_with", 2, 2, 'ends_with(lead.email, ".jp")'),
    "lower": ("_lower", 1, 1, "lower(lead.title)"),
    "length": ("_length", 1, 1, "length(lead.company)"),
    "days_since": ("_days_since", 1, 1, "days_since(lead.created_at) > 30"),
    "count": ("_count", 1, 2, 'count("page_view", days=7) >= 3 - events of a type in a window'),
    "date": ("_date", 1, 1, 'date("2026-04-01")'),
}
NEEDS_NOW = {"days_since", "count"}
NEEDS_HISTORY = {"count"}
CONSTANT_NAMES = {"true": True, "false": False, "null": None, "none": None, "True": True, "False": False, "None": None}

_COMPARE = {ast.Lt: "_lt", ast.LtE: "_le", ast.Gt: "_gt", ast.GtE: "_ge"}
_ARITH = {ast.Add: "_add", ast.Sub: "_sub", ast.Mult: "_mul", ast.Div: "_div"}
_OP_WORDS = {ast.BitAnd: "&", ast.BitOr: "|", ast.Pow: "**", ast.Mod: "%", ast.FloorDiv: "//"}


@dataclass(frozen=True)
class Vocabulary:
    """What an expression may refer to: the lead's fields (built-in plus the playbook's own)."""

    lead_fields: frozenset[str] = LEAD_FIELDS
    allow_event: bool = True
    # Refuse constant arguments outside a function's range (off only to keep compiling versions published
    # before a limit existed: at run time such a rule is false or recorded as a rule error).
    check_arguments: bool = True
    # Which engine runs matches() (rules.patterns.ENGINES): "python" only to replay runs recorded before RE2.
    regex_engine: str = "re2"

    def with_fields(self, extra: Iterable[str]) -> Vocabulary:
        return Vocabulary(
            self.lead_fields | frozenset(extra), self.allow_event, self.check_arguments, self.regex_engine
        )


def _suggest(word: str, options: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, sorted(options), n=1, cutoff=0.6)
    return f' Did you mean "{close[0]}"?' if close else ""


def _call(name: str, *args: ast.expr) -> ast.Call:
    return ast.Call(func=ast.Name(id=name, ctx=ast.Load()), args=list(args), keywords=[])


class _Checker(ast.NodeTransformer):
    """Rejects everything not on the allow-list and rewrites the rest into None-safe helper calls."""

    def __init__(self, vocabulary: Vocabulary) -> None:
        self.vocabulary = vocabulary

    def fail(self, node: ast.AST, message: str) -> ExpressionError:
        return ExpressionError(message, getattr(node, "col_offset", None))

    def generic_visit(self, node: ast.AST) -> ast.AST:
        raise self.fail(node, f"{type(node).__name__.lower()} is not allowed in a rule.")

    def visit_Expression(self, node: ast.Expression) -> ast.AST:
        node.body = self.visit(node.body)
        return node

    def visit_Constant(self, node: ast.Constant) -> ast.AST:
        if node.value is None or isinstance(node.value, bool | int | float | str):
            return node
        raise self.fail(node, f"{node.value!r} is not a value a rule can use.")

    def visit_List(self, node: ast.List | ast.Tuple) -> ast.AST:
        return ast.Tuple(elts=[self.visit(e) for e in node.elts], ctx=ast.Load())

    visit_Tuple = visit_List

    def visit_BoolOp(self, node: ast.BoolOp) -> ast.AST:
        node.values = [self.visit(v) for v in node.values]
        return node

    def visit_UnaryOp(self, node: ast.UnaryOp) -> ast.AST:
        if not isinstance(node.op, ast.Not | ast.USub):
            raise self.fail(node, "only `not` and a minus sign may stand before a value.")
        operand = self.visit(node.operand)
        if isinstance(node.op, ast.USub):
            if isinstance(operand, ast.Constant) and _number(operand.value):
                return ast.Constant(value=-operand.value)
            return _call("_neg", operand)
        node.operand = operand
        return node

    def visit_BinOp(self, node: ast.BinOp) -> ast.AST:
        helper = _ARITH.get(type(node.op))
        if helper is None:
            word = _OP_WORDS.get(type(node.op), type(node.op).__name__)
            hint = " Use `and` / `or` to combine conditions." if word in ("&", "|") else ""
            raise self.fail(node, f"the operator {word} is not allowed.{hint}")
        return _call(helper, self.visit(node.left), self.visit(node.right))

    def visit_Compare(self, node: ast.Compare) -> ast.AST:
        operands = [self.visit(node.left), *(self.visit(c) for c in node.comparators)]
        parts: list[ast.expr] = []
        for op, left, right in zip(node.ops, operands, operands[1:], strict=False):
            if isinstance(op, ast.Eq | ast.NotEq):
                part: ast.expr = _call("_eq", left, right)
                if isinstance(op, ast.NotEq):
                    part = ast.UnaryOp(op=ast.Not(), operand=part)
            elif isinstance(op, ast.In | ast.NotIn):
                part = _call("_in", left, right)
                if isinstance(op, ast.NotIn):
                    part = ast.UnaryOp(op=ast.Not(), operand=part)
            elif type(op) in _COMPARE:
                self._check_numeric(node, left, right)
                part = _call(_COMPARE[type(op)], left, right)
            else:
                raise self.fail(node, "`is` is not allowed: compare with == or !=.")
            parts.append(part)
        return parts[0] if len(parts) == 1 else ast.BoolOp(op=ast.And(), values=parts)

    def _check_numeric(self, node: ast.AST, left: ast.expr, right: ast.expr) -> None:
        """``lead.company_size >= "200"`` is always false at run time: say so when the playbook is saved."""
        for field_side, other in ((left, right), (right, left)):
            if _numeric_field(field_side) and isinstance(other, ast.Constant) and isinstance(other.value, str):
                raise self.fail(node, f"compare numbers with numbers: write {other.value} without quotes.")

    def visit_Name(self, node: ast.Name) -> ast.AST:
        if node.id in CONSTANT_NAMES:
            return ast.Constant(value=CONSTANT_NAMES[node.id])
        if node.id in SCALARS:
            return node
        if node.id == "event" and not self.vocabulary.allow_event:
            raise self.fail(node, "this rule runs without an event: `event` cannot be used here.")
        if node.id in ("lead", "event"):
            raise self.fail(
                node, f"name a field of {node.id}, e.g. {node.id}.{'title' if node.id == 'lead' else 'type'}."
            )
        known = ["lead", "event", *SCALARS]
        raise self.fail(
            node,
            f'unknown name "{node.id}".{_suggest(node.id, known)} '
            f"A rule can use: {', '.join(known)}; text needs quotes.",
        )

    def visit_Attribute(self, node: ast.Attribute) -> ast.AST:
        if node.attr.startswith("_"):
            raise self.fail(node, f'"{node.attr}" is not a field.')
        root = node.value
        if isinstance(root, ast.Name) and root.id in ("lead", "event"):
            if root.id == "event" and not self.vocabulary.allow_event:
                raise self.fail(node, "this rule runs without an event: `event` cannot be used here.")
            fields = self.vocabulary.lead_fields if root.id == "lead" else EVENT_FIELDS
            if node.attr not in fields:
                extra = " Declare custom lead fields under `fields:` in the playbook." if root.id == "lead" else ""
                raise self.fail(node, f'{root.id} has no field "{node.attr}".{_suggest(node.attr, fields)}{extra}')
            getter = ast.Attribute(value=ast.Name(id=root.id, ctx=ast.Load()), attr="get", ctx=ast.Load())
            return ast.Call(func=getter, args=[ast.Constant(value=node.attr)], keywords=[])
        if isinstance(root, ast.Attribute | ast.Subscript):
            return _call("_get", self.visit(root), ast.Constant(value=node.attr))
        raise self.fail(node, "only fields of lead and event can be read with a dot.")

    def visit_Subscript(self, node: ast.Subscript) -> ast.AST:
        key = node.slice
        if not (isinstance(key, ast.Constant) and isinstance(key.value, str)):
            raise self.fail(node, 'use a quoted key, e.g. event.properties["plan"].')
        return _call("_get", self.visit(node.value), ast.Constant(value=key.value))

    def visit_Call(self, node: ast.Call) -> ast.AST:
        if not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS:
            name = node.func.id if isinstance(node.func, ast.Name) else ast.unparse(node.func)
            raise self.fail(
                node, f'unknown function "{name}".{_suggest(name, FUNCTIONS)} Functions: {", ".join(FUNCTIONS)}.'
            )
        name = node.func.id
        helper, low, high, example = FUNCTIONS[name]
        keywords = {k.arg: k.value for k in node.keywords}
        if name == "count":
            if set(keywords) - {"days"}:
                raise self.fail(node, f"count takes an event type and days=N, e.g. {example}.")
            args = list(node.args) + ([keywords["days"]] if "days" in keywords else [])
        else:
            if keywords:
                raise self.fail(node, f"{name} takes no named arguments, e.g. {example}.")
            args = list(node.args)
        if not low <= len(args) <= high:
            raise self.fail(
                node, f"{name} needs {low if low == high else f'{low} to {high}'} value(s), e.g. {example}."
            )
        for position, arg in enumerate(args if self.vocabulary.check_arguments else ()):
            problem = _argument_problem(ARGUMENT_KINDS[name][position], arg)
            if problem:
                raise self.fail(arg, f"{name}: {problem}, e.g. {example}.")
        checked = [self.visit(a) for a in args]
        prefix: list[ast.expr] = []
        if name in NEEDS_HISTORY:
            prefix.append(ast.Name(id="history", ctx=ast.Load()))
        if name in NEEDS_NOW:
            prefix.append(ast.Name(id="now", ctx=ast.Load()))
        return _call(helper, *prefix, *checked)

    def visit_IfExp(self, node: ast.IfExp) -> ast.AST:
        return ast.IfExp(test=self.visit(node.test), body=self.visit(node.body), orelse=self.visit(node.orelse))


# What each function accepts, position by position; a constant argument outside it is refused when the
# playbook is checked (a value read from a field is checked when the rule runs).
ARGUMENT_KINDS: dict[str, tuple[str, ...]] = {
    "matches": ("text", "pattern"),
    "contains": ("text_or_list", "value"),
    "starts_with": ("text", "text"),
    "ends_with": ("text", "text"),
    "lower": ("text",),
    "length": ("text_or_list",),
    "days_since": ("date",),
    "count": ("event_type", "days"),
    "date": ("date",),
}
EARLIEST_YEAR, LATEST_YEAR = 1900, 2200  # dates a rule may name
MAX_EVENT_TYPE = 100
_NOT_CONSTANT = object()


def _constant(node: ast.expr) -> Any:
    """The value of a literal argument (a negative number included), else ``_NOT_CONSTANT``."""
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub) and isinstance(node.operand, ast.Constant):
        value = node.operand.value
        return -value if _number(value) else _NOT_CONSTANT
    if isinstance(node, ast.List | ast.Tuple):
        return ()
    if isinstance(node, ast.Name) and node.id in CONSTANT_NAMES:
        return CONSTANT_NAMES[node.id]
    return _NOT_CONSTANT


def _argument_problem(kind: str, node: ast.expr) -> str | None:
    value = _constant(node)
    if value is _NOT_CONSTANT:
        return None
    shown = repr(value) if not isinstance(value, str) else f'"{value}"'
    if kind == "text" and not isinstance(value, str):
        return f"{shown} is not text (put text in quotes)"
    if kind == "text_or_list" and not isinstance(value, str | tuple):
        return f"{shown} is not text or a list"
    if kind == "value" and (value is None or isinstance(value, bool | tuple)):
        return f"look for text or a number, not {shown}"
    if kind == "pattern":
        if not isinstance(value, str):
            return f"the pattern {shown} is not text (put it in quotes)"
        problem = pattern_problem(value)
        if problem:
            visible = "".join(c if ord(c) >= 32 else repr(c)[1:-1] for c in value)
            return f'the pattern "{visible}" cannot be used: {problem}'
    if kind == "event_type" and not (isinstance(value, str) and 0 < len(value) <= MAX_EVENT_TYPE):
        return f"the event type must be text of 1 to {MAX_EVENT_TYPE} characters, not {shown}"
    if kind == "days" and not (
        _number(value) and math.isfinite(value) and 0 < value <= MAX_COUNT_DAYS  # type: ignore[operator]
    ):
        return f"days must be a number above 0 and at most {MAX_COUNT_DAYS} (a hundred years), not {shown}"
    if kind == "date":
        when = to_datetime(value) if isinstance(value, str) else None
        if when is None:
            return f'{shown} is not a date: write it like "2026-04-01" or "2026-04-01T09:00:00+09:00"'
        if not EARLIEST_YEAR <= when.year <= LATEST_YEAR:
            return f"{shown} is not a date between {EARLIEST_YEAR} and {LATEST_YEAR}"
    return None


NUMERIC_FIELDS = frozenset({"company_size", "annual_revenue", "budget"})


def _numeric_field(node: ast.expr) -> bool:
    """A checked tree's read of a numeric value: score, or lead.company_size / annual_revenue / budget."""
    if isinstance(node, ast.Name):
        return node.id == "score"
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and isinstance(node.func.value, ast.Name)
        and node.func.value.id == "lead"
        and bool(node.args)
        and isinstance(node.args[0], ast.Constant)
        and node.args[0].value in NUMERIC_FIELDS
    )


Compiled = Callable[..., Any]


def compile_expression(text: str, vocabulary: Vocabulary | None = None) -> Compiled:
    """Check ``text`` and compile it; raises :class:`ExpressionError` with a plain-words reason."""
    vocabulary = vocabulary or Vocabulary()
    func = ast.Expression(
        body=ast.Lambda(
            args=ast.arguments(
                posonlyargs=[], args=[ast.arg(arg=p) for p in PARAMS], kwonlyargs=[], kw_defaults=[], defaults=[]
            ),
            body=check_expression(text, vocabulary),
        )
    )
    ast.fix_missing_locations(func)
    code = compile(func, "<rule>", "eval")
    return eval(code, runtime_for(vocabulary))  # noqa: S307 - a checked, rewritten tree, never marketer text


def runtime_for(vocabulary: Vocabulary) -> dict[str, Any]:
    """The helpers a compiled rule's globals hold (the regex engine is the vocabulary's)."""
    return dict(RUNTIME, _matches=ENGINES[vocabulary.regex_engine])


def check_expression(text: str, vocabulary: Vocabulary) -> ast.expr:
    """The checked, rewritten tree of ``text`` (an expression over PARAMS and the RUNTIME helpers only);
    raises :class:`ExpressionError` with a plain-words reason."""
    if not isinstance(text, str) or not text.strip():
        raise ExpressionError("the condition is empty.")
    if len(text) > MAX_LENGTH:
        raise ExpressionError(f"the condition is longer than {MAX_LENGTH} characters; split it into rules.")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        hint = ""
        if re.search(r"(?<![=!<>])=(?!=)", text):
            hint = " To compare, write == (two equals signs)."
        elif "&&" in text or "||" in text:
            hint = " Write `and` / `or`."
        raise ExpressionError(f"this is not a valid condition ({exc.msg}).{hint}", exc.offset) from None
    if sum(1 for _ in ast.walk(tree)) > MAX_NODES:
        raise ExpressionError("the condition is too long; split it into several rules.")
    checked: ast.Expression = _Checker(vocabulary).visit(tree)
    return checked.body


def parse_duration(text: str | int | float) -> timedelta:
    """``90s``, ``15m``, ``24h``, ``7d``, ``2w`` (or a number of seconds)."""
    if isinstance(text, bool):
        raise ValueError("a duration like 24h, 30m or 7d")
    if isinstance(text, int | float):
        if not 0 <= text <= MAX_DURATION_SECONDS:
            raise ValueError(f"{text} seconds is not a duration between zero and a hundred years")
        return timedelta(seconds=text)
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)\s*", str(text))
    if not match:
        raise ValueError(f'"{text}" is not a duration: write a number and a unit, like 30m, 24h, 7d or 2w')
    value, unit = float(match.group(1)), match.group(2)
    seconds = value * {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[unit]
    if seconds > MAX_DURATION_SECONDS:
        raise ValueError(f'"{text}" is longer than a hundred years')
    return timedelta(seconds=seconds)
