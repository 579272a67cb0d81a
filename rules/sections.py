"""A playbook section's conditions compiled into one function: the scoring rules every event meets.

One compiled function per rule paid Python's call overhead fifty times per event and read the same fields
(``event.type``, ``event.url``) and lowered the same text in every rule. The section function reads each
field once, lowers each text once, compares lowered constants directly where the value is text (or a
number, for ``<``/``>=``...), and answers which rules hold. Anything else keeps the rule's own checked
tree (rules/expressions.py), so the results are exactly the per-rule functions'.

What the engine relies on (rules/engine.py ``_scoring_hits``):
- a rule that reads ``score`` is left out (``late``): the score changes while a section's points are
  added, so such a rule is evaluated on its own, in its turn, as before;
- when the section raises, the engine evaluates rule by rule, so a failing rule is recorded on the lead
  exactly as before (the section function only ever runs pure helpers and dict reads);
- a rule whose text did not compile never holds (the playbook reports it as an issue).

The tree is built from checked nodes and constants only: marketer text never reaches ``exec`` as text.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from rules.expressions import PARAMS, ExpressionError, Vocabulary, check_expression, runtime_for
from rules.patterns import memoised_matcher

_ORDER_OPS: dict[str, type[ast.cmpop]] = {"_lt": ast.Lt, "_le": ast.LtE, "_gt": ast.Gt, "_ge": ast.GtE}
_AFFIXES = {"_starts_with": "startswith", "_ends_with": "endswith"}


@dataclass(frozen=True)
class CompiledSection:
    """``test(*PARAMS)`` answers the positions (ascending) of the rules that hold, of those not in ``late``."""

    test: Callable[..., list[int]]
    late: frozenset[int]


def _name(name: str) -> ast.Name:
    return ast.Name(id=name, ctx=ast.Load())


def _text(node: ast.expr) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def _number(node: ast.expr) -> int | float | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float) and not isinstance(node.value, bool):
        return node.value
    return None


class _Specialiser(ast.NodeTransformer):
    """Hoists ``lead.get("x")`` / ``event.get("x")`` into locals read once, and rewrites helper calls on them
    with a constant into direct comparisons, each guarded so any other kind of value takes the helper."""

    def __init__(self, regex_engine: str) -> None:
        self.regex_engine = regex_engine
        self.fields: dict[tuple[str, str], str] = {}  # (lead|event, key) -> local holding the value
        self.lowered: dict[str, str] = {}  # local -> local holding its lowered text (None if not text)
        self.constants: dict[str, Any] = {}

    def _field(self, node: ast.expr) -> str | None:
        return node.id if isinstance(node, ast.Name) and node.id in self.fields.values() else None

    def _lower(self, local: str) -> ast.Name:
        return _name(self.lowered.setdefault(local, f"{local}_l"))

    def _constant(self, value: Any) -> ast.Name:
        name = f"_k{len(self.constants)}"
        self.constants[name] = value
        return _name(name)

    def _if_text(self, local: str, then: ast.expr, otherwise: ast.expr) -> ast.expr:
        test = ast.Compare(left=self._lower(local), ops=[ast.IsNot()], comparators=[ast.Constant(value=None)])
        return ast.IfExp(test=test, body=then, orelse=otherwise)

    def visit_Call(self, node: ast.Call) -> ast.AST:
        self.generic_visit(node)
        func, args = node.func, node.args
        if (
            isinstance(func, ast.Attribute)
            and func.attr == "get"
            and isinstance(func.value, ast.Name)
            and func.value.id in ("lead", "event")
            and len(args) == 1
            and _text(args[0]) is not None
            and not node.keywords
        ):
            key = (func.value.id, _text(args[0]) or "")
            return _name(self.fields.setdefault(key, f"_f{len(self.fields)}"))
        if not isinstance(func, ast.Name) or len(args) != 2:
            return node
        helper, (left, right) = func.id, args
        if helper == "_eq":
            # _eq(text value, "C") is value.lower() == "c"; any other value never equals text.
            for field, other in ((left, right), (right, left)):
                local, text = self._field(field), _text(other)
                if local is not None and text is not None:
                    return ast.Compare(
                        left=self._lower(local), ops=[ast.Eq()], comparators=[ast.Constant(text.lower())]
                    )
        if helper == "_matches" and self._field(left) is not None and _text(right) is not None:
            # The same lead's title meets the same pattern at every event: one memo per pattern.
            matcher = self._constant(memoised_matcher(self.regex_engine, _text(right) or ""))
            return ast.Call(func=matcher, args=[left], keywords=[])
        if helper == "_contains":  # contains(haystack, needle) is needle in haystack
            helper, (left, right) = "_in", (right, left)
        if helper == "_in":
            local, needle = self._field(right), _text(left)
            if local is not None and needle is not None:  # "c" in value / contains(value, "c")
                lowered = ast.Compare(
                    left=ast.Constant(needle.lower()), ops=[ast.In()], comparators=[self._lower(local)]
                )
                return self._if_text(local, lowered, node)
            local = self._field(left)
            if local is not None and isinstance(right, ast.Tuple) and right.elts:
                texts = [_text(e) for e in right.elts]
                if all(t is not None for t in texts):  # value in ["A", "B"]: any case
                    options = self._constant(frozenset(t.lower() for t in texts if t is not None))
                    member = ast.Compare(left=self._lower(local), ops=[ast.In()], comparators=[options])
                    return self._if_text(local, member, node)
        if helper in _AFFIXES:
            local, text = self._field(left), _text(right)
            if local is not None and text is not None:
                method = ast.Attribute(value=self._lower(local), attr=_AFFIXES[helper], ctx=ast.Load())
                call = ast.Call(func=method, args=[ast.Constant(text.lower())], keywords=[])
                return self._if_text(local, call, ast.Constant(False))
        if helper in _ORDER_OPS:
            local, number = self._field(left), _number(right)
            if local is not None and number is not None:  # an int or float value compares directly
                kind = ast.Attribute(value=_name(local), attr="__class__", ctx=ast.Load())
                test = ast.Compare(left=kind, ops=[ast.In()], comparators=[_name("_NUMBERS")])
                direct = ast.Compare(left=_name(local), ops=[_ORDER_OPS[helper]()], comparators=[ast.Constant(number)])
                return ast.IfExp(test=test, body=direct, orelse=node)
        return node


def _reads_score(tree: ast.expr) -> bool:
    return any(isinstance(n, ast.Name) and n.id == "score" for n in ast.walk(tree))


def _assign(target: str, value: ast.expr) -> ast.Assign:
    return ast.Assign(targets=[ast.Name(id=target, ctx=ast.Store())], value=value)


def compile_section(texts: Sequence[str], vocabulary: Vocabulary) -> CompiledSection | None:
    """One function for a section's conditions; None when there is nothing to gain (or it cannot be built:
    the engine then evaluates rule by rule, as it always could)."""
    trees: list[tuple[int, ast.expr]] = []
    late = []
    for position, text in enumerate(texts):
        try:
            tree = check_expression(text, vocabulary)
        except ExpressionError:
            continue  # never holds; the playbook reports it
        if _reads_score(tree):
            late.append(position)
        else:
            trees.append((position, tree))
    if not trees:
        return None
    specialiser = _Specialiser(vocabulary.regex_engine)
    body: list[ast.stmt] = []
    tests = [(position, specialiser.visit(tree)) for position, tree in trees]
    for (root, key), local in specialiser.fields.items():
        getter = ast.Attribute(value=_name(root), attr="get", ctx=ast.Load())
        body.append(_assign(local, ast.Call(func=getter, args=[ast.Constant(key)], keywords=[])))
    for local, lowered in specialiser.lowered.items():
        is_text = ast.Call(func=_name("_isinstance"), args=[_name(local), _name("_str")], keywords=[])
        lower = ast.Call(func=ast.Attribute(value=_name(local), attr="lower", ctx=ast.Load()), args=[], keywords=[])
        body.append(_assign(lowered, ast.IfExp(test=is_text, body=lower, orelse=ast.Constant(None))))
    body.append(_assign("_hits", ast.List(elts=[], ctx=ast.Load())))
    body.append(_assign("_hit", ast.Attribute(value=_name("_hits"), attr="append", ctx=ast.Load())))
    for position, test in tests:
        hit = ast.Expr(value=ast.Call(func=_name("_hit"), args=[ast.Constant(position)], keywords=[]))
        body.append(ast.If(test=test, body=[hit], orelse=[]))
    body.append(ast.Return(value=_name("_hits")))
    arguments = ast.arguments(
        posonlyargs=[], args=[ast.arg(arg=p) for p in PARAMS], kwonlyargs=[], kw_defaults=[], defaults=[]
    )
    function = ast.FunctionDef(name="_section", args=arguments, body=body, decorator_list=[], returns=None)
    module = ast.Module(body=[function], type_ignores=[])
    ast.fix_missing_locations(module)
    namespace = runtime_for(vocabulary) | specialiser.constants
    namespace |= {"_isinstance": isinstance, "_str": str, "_NUMBERS": (int, float)}
    try:
        exec(compile(module, "<section>", "exec"), namespace)  # noqa: S102 - checked trees, never marketer text
    except (SyntaxError, ValueError, TypeError, RecursionError):  # pragma: no cover - a defect here, not in a rule
        return None
    return CompiledSection(namespace["_section"], frozenset(late))
