"""Error messages and safety of leadflow's rule language and the peer libraries, side by side.

Part 1: six typical marketer mistakes (and one missing value), each written in every engine's own syntax,
compiled ("publish": when the playbook is saved) and then evaluated on one sample lead ("run": when a lead
event arrives). Prints what each engine says, and when, or the silent wrong result.

Part 2: safety probes (dunder access, attribute calls that mutate the lead, resource abuse, regex
backtracking, deep nesting, huge conditions). Each probe runs in its own subprocess with a 5 s timeout and a
1 GiB address-space limit, so nothing here can hang or eat the machine.

    .venv/bin/python bench/rules_errors.py
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import re
import resource
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import rules_bench as rb
from rules.expressions import RUNTIME, Vocabulary, compile_expression

TIMEOUT_S = 5
MEMORY_LIMIT = 1 << 30
NOW = rb.NOW


def sample(**changes: Any) -> rb.Pair:
    lead = {name: None for name in ("email", "title", "company_size", "industry", "country", "created_at")}
    lead.update(
        email="kenji@acme.co.jp",
        title="CTO",
        company_size=250,
        industry="Software",
        country="JP",
        created_at="2026-10-01T09:00:00+00:00",
    )
    lead.update(changes)
    event = {
        "id": "e1",
        "type": "page_view",
        "at": NOW,
        "url": "https://example.com/pricing",
        "name": None,
        "properties": {},
    }
    history = rb.make_history({"page_view": [NOW - dt.timedelta(hours=1)]})
    return (lead, event, 42.0, "B", "mql", NOW, history)


# ------------------------------------------------------------------ adapters: compile(text), run(obj, pair)


@dataclass(frozen=True)
class Adapter:
    name: str
    compile: Callable[[str], Any]
    run: Callable[[Any, rb.Pair], Any]


def _leadflow() -> Adapter:
    vocabulary = Vocabulary().with_fields(["job_function"])
    return Adapter("leadflow", lambda text: compile_expression(text, vocabulary), lambda f, pair: f(*pair))


def _simpleeval() -> Adapter:
    import simpleeval

    functions = {name: RUNTIME["_" + name] for name in ("contains", "matches", "starts_with", "ends_with", "lower")}
    evaluator = simpleeval.EvalWithCompoundTypes(functions=functions)

    def run(compiled: tuple[str, Any], pair: rb.Pair) -> Any:
        rb._simpleeval_bind(evaluator, pair)
        return evaluator.eval(compiled[0], previously_parsed=compiled[1])

    return Adapter("simpleeval", lambda text: (text, evaluator.parse(text)), run)


def _rule_engine() -> Adapter:
    import rule_engine

    warnings.simplefilter("ignore", category=DeprecationWarning)
    context = rule_engine.Context(default_timezone="utc", regex_flags=re.IGNORECASE)
    return Adapter(
        "rule-engine",
        lambda text: rule_engine.Rule(text, context=context),
        lambda rule, pair: rule.evaluate(rb._rule_engine_thing(pair)),
    )


def _celpy() -> Adapter:
    import celpy
    from celpy.celparser import CELParser

    CELParser.CEL_PARSER = None
    functions = rb._celpy_functions()

    def compile_(text: str) -> Any:
        env = celpy.Environment(runner_class=celpy.CompiledRunner)
        return env.program(env.compile(text), functions=functions)

    return Adapter("celpy", compile_, lambda program, pair: program.evaluate(rb._celpy_activation(pair)))


def _rust_cel() -> Adapter:
    import cel

    return Adapter("Rust CEL", cel.compile, lambda program, pair: program.execute(rb._rust_cel_context(pair)))


def _cel_cpp() -> Adapter:
    from cel_expr_python import cel

    env, _ = rb.cel_cpp_compile([])

    def run(expr: Any, pair: rb.Pair) -> Any:
        value = expr.eval(rb._cel_cpp_activation(env, pair))
        if value.type() == cel.Type.ERROR:  # evaluation errors come back as values, not exceptions
            return ("returned an error value", value.value())
        return value.value()

    return Adapter("C++ CEL", env.compile, run)


ADAPTERS: dict[str, Callable[[], Adapter]] = {
    "leadflow": _leadflow,
    "simpleeval": _simpleeval,
    "rule-engine": _rule_engine,
    "celpy": _celpy,
    "Rust CEL": _rust_cel,
    "C++ CEL": _cel_cpp,
}
PY, RE, CEL = ("leadflow", "simpleeval"), ("rule-engine",), ("celpy", "Rust CEL", "C++ CEL")


def texts(python_like: str, rule_engine: str, cel: str) -> dict[str, str]:
    return {**dict.fromkeys(PY, python_like), **dict.fromkeys(RE, rule_engine), **dict.fromkeys(CEL, cel)}


# ------------------------------------------------------------------ part 1: mistakes

ERROR = object()  # the expected outcome of a mistake: an error, ideally when the playbook is published
MISTAKES: list[tuple[str, dict[str, str], rb.Pair, Any]] = [
    (
        "typo in a field name",
        texts('lead.titel == "CTO"', 'lead["titel"] == "CTO"', 'lead.titel == "CTO"'),
        sample(),
        ERROR,
    ),
    ("= instead of ==", texts('lead.country = "JP"', 'lead["country"] = "JP"', 'lead.country = "JP"'), sample(), ERROR),
    (
        "unknown function (contain for contains)",
        texts('contain(event.url, "/pricing")', '$contain(event["url"], "/pricing")', 'event.url.contain("/pricing")'),
        sample(),
        ERROR,
    ),
    (
        "unbalanced quote",
        texts('lead.country == "JP', 'lead["country"] == "JP', 'lead.country == "JP'),
        sample(),
        ERROR,
    ),
    (
        "comparing text with a number (quotes around 200)",
        texts('lead.company_size >= "200"', 'lead["company_size"] >= "200"', 'lead.company_size >= "200"'),
        sample(),
        ERROR,
    ),
    (
        "regex with a bad pattern",
        texts(
            'matches(lead.title, "(vp|director")',
            'lead["title"] =~~ "(vp|director"',
            'lead.title.matches("(vp|director")',
        ),
        sample(),
        ERROR,
    ),
    (
        "not a mistake: a lead without company_size (None); expected False",
        texts("lead.company_size >= 200", 'lead["company_size"] >= 200', "lead.company_size >= 200"),
        sample(company_size=None),
        False,
    ),
    (
        "not a mistake: the default playbook's \\b title pattern on the title '部長'; expected True",
        texts(
            'matches(lead.title, "\\\\b(vp|director|部長)")',
            'lead["title"] =~~ "\\\\b(vp|director|部長)"',
            'lead.title.matches("(?i)\\\\b(vp|director|部長)")',
        ),
        sample(title="部長"),
        True,
    ),
]


def one_line(text: str, limit: int = 230) -> str:
    text = re.sub(r"\s+", " ", text).strip()
    return text if len(text) <= limit else text[: limit - 3] + "..."


def describe(adapter: Adapter, text: str, pair: rb.Pair, expected: Any) -> str:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            compiled = adapter.compile(text)
        except Exception as exc:
            return f"publish: {type(exc).__name__}: {one_line(str(exc))}"
        try:
            value = adapter.run(compiled, pair)
        except Exception as exc:
            return f"run:     {type(exc).__name__}: {one_line(str(exc))}"
    warned = [f"{w.category.__name__}: {w.message}" for w in caught if not issubclass(w.category, DeprecationWarning)]
    also = f" (and a Python warning: {one_line(warned[0], 100)})" if warned else ""
    if isinstance(value, tuple) and value and value[0] == "returned an error value":
        return f"run:     (returned as a value, not raised) {one_line(str(value[1]))}"
    if expected is not ERROR and bool(value) == expected:
        return f"ok:      {value!r}{also}"
    return f"SILENT:  published, and the rule evaluates to {value!r}{also}"


def quiet_stderr() -> None:
    """celpy logs every evaluation error and RE2 (C++) writes parse errors straight to file descriptor 2."""
    logging.getLogger("celpy").setLevel(logging.CRITICAL + 1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)


def part1() -> None:
    quiet_stderr()
    adapters = {name: make() for name, make in ADAPTERS.items()}
    print("PART 1: marketer mistakes. 'publish' = caught when the playbook is compiled; 'run' = only when a lead")
    print("event is evaluated (the playbook was accepted); 'SILENT' = no error at all, a wrong or meaningless result.")
    for i, (title, by_engine, pair, expected) in enumerate(MISTAKES, 1):
        print()
        print(f"{i}. {title}")
        for name, adapter in adapters.items():
            print(f"   {name:<12} {by_engine[name]}")
            print(f"   {'':<12}   -> {describe(adapter, by_engine[name], pair, expected)}")


# ------------------------------------------------------------------ part 2: safety probes, one subprocess each

LONG = 5000
PROBES: list[tuple[str, dict[str, str], dict[str, Any]]] = [
    ("dunder access", texts("lead.__class__", "lead.__class__", "lead.__class__"), {}),
    (
        "dunder via format()",
        texts('"{0.__class__.__mro__}".format(lead)', '"{0.__class__}".format(lead)', '"{0.__class__}".format(lead)'),
        {},
    ),
    ("attribute call that mutates the lead", texts("lead.clear()", "lead.clear()", "lead.clear()"), {}),
    ('"a" * 10**9', texts('"a" * 10**9', '"a" * 10 ** 9', '"a" * 1000000000'), {}),
    ('"a" * 1000000000 (no **)', texts('"a" * 1000000000', '"a" * 1000000000', '"a" * 1000000000'), {}),
    (
        "a field repeated: lead.title * 100000 * 100000",
        texts("lead.title * 100000 * 100000", 'lead["title"] * 100000 * 100000', "lead.title * 100000 * 100000"),
        {},
    ),
    ("10**10**10", texts("10**10**10", "10 ** 10 ** 10", "10 ** 10 ** 10"), {}),  # CEL has no power operator
    (
        "regex backtracking: (a+)+$ on a 34-char title",
        texts('matches(lead.title, "(a+)+$")', 'lead["title"] =~~ "(a+)+$"', 'lead.title.matches("(a+)+$")'),
        {"title": "a" * 33 + "!"},
    ),
    (
        "300 nested parentheses",
        texts(
            "(" * 300 + "1" + ")" * 300 + " == 1",
            "(" * 300 + "1" + ")" * 300 + " == 1",
            "(" * 300 + "1" + ")" * 300 + " == 1",
        ),
        {},
    ),
    (
        f"{LONG:,}-clause condition ({LONG * 25 // 1000} KB)",
        texts(
            " or ".join(['lead.country == "XX"'] * LONG),
            " or ".join(['lead["country"] == "XX"'] * LONG),
            " || ".join(['lead.country == "XX"'] * LONG),
        ),
        {},
    ),
]


def child(engine: str, probe: int) -> None:
    """Runs in the subprocess: compile and run one probe, print one JSON line."""
    _, by_engine, changes = PROBES[probe]
    adapter = ADAPTERS[engine]()
    pair = sample(**changes)
    lead = pair[0]
    before = dict(lead)
    quiet_stderr()
    out: dict[str, Any] = {}
    start = time.perf_counter()
    try:
        compiled = adapter.compile(by_engine[engine])
        out["compiled"] = True
        value = adapter.run(compiled, pair)
        if isinstance(value, tuple) and value and value[0] == "returned an error value":
            out["error"] = f"(returned as a value) {value[1]}"
        else:
            out["value"] = repr(value)[:60] + (f"... ({len(value):,} chars)" if isinstance(value, str) else "")
    except MemoryError:
        out["memory"] = True
    except RecursionError as exc:
        out["error"] = f"RecursionError: {exc}"
    except Exception as exc:
        out["error"] = f"{type(exc).__name__}: {exc}"
    out["seconds"] = time.perf_counter() - start
    out["mutated"] = lead != before
    print(json.dumps(out))


def _limit() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def verdict(engine: str, probe: int) -> str:
    try:
        proc = subprocess.run(
            [sys.executable, __file__, "--probe", engine, str(probe)],
            capture_output=True,
            text=True,
            timeout=TIMEOUT_S,
            preexec_fn=_limit,
            cwd=ROOT,
        )
    except subprocess.TimeoutExpired:
        return f"NOT BLOCKED: still running after {TIMEOUT_S} s (killed)"
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        return f"NOT BLOCKED: the process died (exit {proc.returncode}): {one_line(proc.stderr[-200:], 120)}"
    out = json.loads(lines[-1])
    took = f" [{out['seconds']:.1f} s]" if out["seconds"] >= 0.5 else ""
    if out.get("memory"):
        return f"NOT BLOCKED: MemoryError at the {MEMORY_LIMIT >> 30} GiB limit{took}"
    if "error" in out:
        where = "at run" if out.get("compiled") else "at publish"
        mutated = " BUT THE LEAD WAS MODIFIED" if out["mutated"] else ""
        return f"blocked {where}: {one_line(out['error'], 110)}{took}{mutated}"
    mutated = " AND THE LEAD WAS MODIFIED (emptied)" if out["mutated"] else ""
    return f"ran: {out['value']}{took}{mutated}"


def part2() -> None:
    print()
    print(f"PART 2: safety probes (each in a subprocess: {TIMEOUT_S} s timeout, {MEMORY_LIMIT >> 30} GiB memory limit)")
    for i, (title, by_engine, changes) in enumerate(PROBES):
        print()
        print(f"{chr(ord('A') + i)}. {title}" + (f"   (lead {changes})" if changes and len(str(changes)) < 60 else ""))
        for name in ADAPTERS:
            text = by_engine[name]
            shown = text if len(text) <= 50 else text[:47] + "..."
            print(f"   {name:<12} {shown:<52} {verdict(name, i)}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--probe", nargs=2, metavar=("ENGINE", "N"), help=argparse.SUPPRESS)
    parser.add_argument("--part", choices=["1", "2"], help="run only one part")
    args = parser.parse_args()
    if args.probe:
        child(args.probe[0], int(args.probe[1]))
        return 0
    print(
        f"{dt.date.today()}  Python {sys.version.split()[0]}  "
        + "  ".join(
            f"{lib} {rb.version(lib)}"
            for lib in ("simpleeval", "rule-engine", "cel-python", "common-expression-language", "cel-expr-python")
        )
    )
    print()
    if args.part in (None, "1"):
        part1()
    if args.part in (None, "2"):
        part2()
    return 0


if __name__ == "__main__":
    sys.exit(main())
