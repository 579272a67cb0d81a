"""Rule expressions: semantics of the little language, its None-safety, and the safety allow-list."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from rules.expressions import (
    MAX_LENGTH,
    MAX_NODES,
    ExpressionError,
    Vocabulary,
    compile_expression,
    parse_duration,
)

NOW = datetime(2026, 4, 1, 12, 0, tzinfo=UTC)

LEAD = {
    "email": "ana@example.co.jp",
    "title": "VP of Marketing",
    "company": "Acme",
    "company_size": 250,
    "industry": "SaaS",
    "country": "JP",
    "created_at": "2026-03-01T12:00:00+00:00",
}
EVENT = {
    "id": "e1",
    "type": "page_view",
    "at": NOW,
    "url": "https://acme.example/Pricing?x=1",
    "name": "Request a Demo",
    "properties": {"plan": "Pro", "seats": 12, "nested": {"deep": "yes"}, "tags": ["a", "B"]},
}


def run(
    text: str,
    lead: dict[str, Any] | None = None,
    event: dict[str, Any] | None = None,
    *,
    score: float = 0,
    grade: str | None = None,
    stage: str = "new",
    now: datetime = NOW,
    history: Any = None,
    vocabulary: Vocabulary | None = None,
) -> Any:
    rule = compile_expression(text, vocabulary)
    return rule(LEAD if lead is None else lead, EVENT if event is None else event, score, grade, stage, now, history)


def error_of(text: str, vocabulary: Vocabulary | None = None) -> str:
    with pytest.raises(ExpressionError) as info:
        compile_expression(text, vocabulary)
    assert info.value.message == str(info.value)
    return info.value.message


# ------------------------------------------------------------------ comparisons


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("lead.company_size >= 250", True),
        ("lead.company_size > 250", False),
        ("lead.company_size < 251", True),
        ("lead.company_size <= 249", False),
        ("lead.company_size == 250", True),
        ("lead.company_size != 250", False),
        ('lead.country == "jp"', True),  # string equality ignores case
        ('lead.country != "JP"', False),
        ('lead.title == "vp"', False),
        ("score >= 50", True),
        ("score > 50", False),
        ('grade == "A"', True),
        ('stage == "mql"', True),
        ('stage == "sql"', False),
        ("100 < lead.company_size < 300", True),  # chained
        ("100 < lead.company_size < 200", False),
        ("1 < 2 < 3 < 2", False),
    ],
)
def test_comparisons(text: str, expected: bool) -> None:
    assert run(text, score=50, grade="A", stage="mql") is expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('lead.industry in ["software", "saas"]', True),  # list membership ignores case
        ('lead.industry in ["software", "finance"]', False),
        ('lead.industry not in ["software", "finance"]', True),
        ('lead.industry not in ["SAAS"]', False),
        ('lead.country in ("JP", "US")', True),
        ("lead.company_size in [10, 250]", True),
        ("lead.company_size in [10, 20]", False),
        ('"/pricing" in event.url', True),  # substring, any case
        ('"/PRICING" in event.url', True),
        ('"/careers" in event.url', False),
        ('"/careers" not in event.url', True),
        ('"pro" in event.properties["plan"]', True),
        ('"b" in event.properties["tags"]', True),
        ('"c" in event.properties["tags"]', False),
        ('"plan" in event.properties', True),  # keys of a mapping
        ("1 in event.url", False),  # a number is never a substring
        ('"x" in lead.company_size', False),  # not a container: False, not TypeError
    ],
)
def test_in_and_not_in(text: str, expected: bool) -> None:
    assert run(text) is expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('contains(event.url, "/PRICING")', True),
        ('contains(event.url, "/careers")', False),
        ('contains(event.properties["tags"], "a")', True),
        ('contains(event.properties["tags"], "z")', False),
        ('contains(event.name, "demo")', True),
        ('matches(lead.title, "vp|director|head of")', True),
        ('matches(lead.title, "^marketing")', False),
        ('matches(lead.title, "^vp\\\\b")', True),
        ('starts_with(event.url, "HTTPS://")', True),
        ('starts_with(event.url, "http://")', False),
        ('ends_with(lead.email, ".JP")', True),
        ('ends_with(lead.email, ".com")', False),
        ('lower(lead.title) == "vp of marketing"', True),
        ('lower(lead.title) == "VP OF MARKETING"', True),  # == is case-insensitive anyway
        ("length(lead.company) == 4", True),
        ('length(event.properties["tags"]) == 2', True),
        ("length(lead.company_size) == 0", True),  # no length: 0, not TypeError
        ("length(lead.phone) == 0", True),
    ],
)
def test_text_functions(text: str, expected: bool) -> None:
    assert run(text) is expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('lead.country == "JP" and lead.company_size > 100', True),
        ('lead.country == "JP" and lead.company_size > 1000', False),
        ('lead.country == "US" or lead.company_size > 100', True),
        ('lead.country == "US" or lead.company_size > 1000', False),
        ('not lead.country == "US"', True),
        ('not (lead.country == "JP" and score > 10)', True),
        ('lead.country == "US" or lead.industry == "saas" and score < 10', True),  # and binds tighter
        ('(lead.country == "US" or lead.industry == "saas") and score > 10', False),
        ("true and not false", True),
        ("True and not False and null == None and none == null", True),
        ('"yes" if score < 10 else "no"', "yes"),
    ],
)
def test_boolean_logic(text: str, expected: Any) -> None:
    assert run(text, score=5) == expected


# ------------------------------------------------------------------ None-safety


@pytest.mark.parametrize(
    "text",
    [
        "lead.company_size > 10",
        "lead.company_size >= 0",
        "lead.company_size < 10",
        "lead.company_size <= 10",
        'lead.title == "vp"',
        'lead.industry in ["saas"]',
        '"/pricing" in event.url',
        'contains(event.url, "/pricing")',
        'matches(lead.title, "vp")',
        'starts_with(lead.email, "a")',
        'ends_with(lead.email, "a")',
        "days_since(lead.created_at) > 1",
        "days_since(lead.created_at) < 1",
        'event.properties["plan"] == "pro"',
        'event.properties["nested"]["deep"] == "yes"',
        "event.properties.nested.deep == 1",
        "lead.company_size + 1 > 0",
        "lead.company_size * 2 < 1000",
        'lower(lead.title) == "vp"',
        "score > 10",
        'grade == "A"',
    ],
)
def test_missing_values_make_comparisons_false_and_never_raise(text: str) -> None:
    empty_event = {"id": "e", "type": "x", "at": NOW, "url": None, "name": None, "properties": {}}
    assert run(text, {}, empty_event, score=None, grade=None) is False  # type: ignore[arg-type]


def test_comparing_values_of_different_types_is_false_not_an_error() -> None:
    assert run("lead.industry > 3", {"industry": "saas"}) is False  # text vs number, known only at run time
    assert run("lead.title < 3") is False
    assert run('lead.company_size == "250"') is False


def test_not_equal_on_a_missing_field_is_true() -> None:
    # documented behaviour: != is the negation of ==, and None == "x" is False
    assert run('lead.title != "vp"', {}) is True
    assert run("lead.title == null", {}) is True


# Regression tests for bugs these tests found (fixed in rules/expressions.py).


def test_unary_minus_on_a_missing_or_non_numeric_value_is_none() -> None:
    assert run("-lead.company_size < 0", {}) is False
    assert run("-lead.title == null", {"title": "vp"}) is True
    assert run("-lead.company_size == -250") is True
    assert run("-true == null") is True


def test_matches_with_an_invalid_runtime_pattern_is_false() -> None:
    assert run("matches(lead.title, lead.company)", {"title": "x", "company": "(unclosed"}) is False
    assert run("matches(lead.title, lead.company)", {"title": "Acme Inc", "company": "acme"}) is True


def test_arithmetic_overflow_is_none_not_an_error() -> None:
    assert run("1" + "0" * 400 + " / 3 > 1") is False
    assert run("1" + "0" * 400 + " / 3 == null") is True


@pytest.mark.parametrize(
    "text",
    [
        "length(lead.company * 5000000) == 0",
        'length("ab" * 3) == 0',
        'length(3 * "ab") == 0',
        'length(event.properties["tags"] * 1000) == 0',
        "lead.company / 2 == null",
        "true * 2 == null",
    ],
)
def test_multiplication_and_division_are_numeric_only(text: str) -> None:
    # text or list repetition would let a rule allocate without bound ("a" * 10**9)
    assert run(text) is True


# ------------------------------------------------------------------ arithmetic


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("lead.company_size + 50 == 300", True),
        ("lead.company_size - 50 == 200", True),
        ("lead.company_size * 2 == 500", True),
        ("lead.company_size / 2 == 125", True),
        ("score * 0.5 + 1 == 6", True),
        ("-score < 0", True),
        ("-score == -10", True),
        ("score - -5 == 15", True),
        ("lead.company_size / 0 > 0", False),  # division by zero is None, so the comparison is False
        ("lead.company_size / 0 == null", True),
        ('lead.title + "!" == "vp of marketing!"', True),
        ("lead.title - 1 == null", True),  # TypeError becomes None
    ],
)
def test_arithmetic(text: str, expected: bool) -> None:
    assert run(text, score=10) is expected


# ------------------------------------------------------------------ history, days_since, date


def test_count_uses_the_history_callable_with_type_days_and_now() -> None:
    calls: list[tuple[str, float | None, datetime]] = []

    def history(event_type: str, days: float | None, now: datetime) -> int:
        calls.append((event_type, days, now))
        return {"page_view": 5, "download": 1}.get(event_type, 0)

    assert run('count("page_view", days=7) >= 3', history=history) is True
    assert calls == [("page_view", 7.0, NOW)]
    assert run('count("download") == 1', history=history) is True
    assert calls[-1] == ("download", None, NOW)
    assert run('count("webinar", days=30) > 0', history=history) is False
    assert run('count("page_view", 7) == 5', history=history) is True  # days positionally
    assert calls[-1] == ("page_view", 7.0, NOW)


def test_count_with_a_non_text_type_is_zero_without_asking_history() -> None:
    def history(*args: Any) -> int:
        raise AssertionError("history must not be consulted")

    assert run("count(lead.company_size) == 0", history=history) is True


@pytest.mark.parametrize(
    ("created_at", "expected_days"),
    [
        ("2026-03-01T12:00:00+00:00", 31.0),
        ("2026-03-31T12:00:00", 1.0),  # naive is UTC
        ("2026-03-31", 1.5),  # a date is midnight UTC
        (datetime(2026, 3, 25, 12, tzinfo=UTC), 7.0),
    ],
)
def test_days_since(created_at: Any, expected_days: float) -> None:
    rule = compile_expression("days_since(lead.created_at)")
    assert rule({"created_at": created_at}, None, 0, None, "new", NOW, None) == pytest.approx(expected_days)


def test_days_since_with_junk_is_none() -> None:
    assert run("days_since(lead.created_at) > 0", {"created_at": "last tuesday"}) is False
    assert run("days_since(lead.created_at) == null", {"created_at": 12}) is True


def test_date() -> None:
    assert run('date("2026-04-01") == date("2026-04-01T00:00:00Z")') is True
    assert run('date(lead.created_at) < date("2026-03-02")') is True
    assert run('date(lead.created_at) > date("2026-03-02")') is False
    assert run('event.at > date("2026-03-31")') is True
    assert run("date(lead.company) == null") is True  # a field that is no date
    with pytest.raises(ExpressionError, match="is not a date"):
        compile_expression('date("not a date") == null')
    rule = compile_expression('date("2026-04-01")')
    assert rule({}, None, 0, None, "new", NOW, None) == datetime(2026, 4, 1, tzinfo=UTC)


# ------------------------------------------------------------------ vocabulary


def test_custom_fields_need_declaring() -> None:
    message = error_of('lead.job_function == "it"')
    assert 'lead has no field "job_function"' in message
    assert "fields:" in message
    vocabulary = Vocabulary().with_fields(["job_function"])
    assert run('lead.job_function == "IT"', {"job_function": "it"}, vocabulary=vocabulary) is True


def test_event_is_refused_where_a_rule_has_no_event() -> None:
    lead_only = Vocabulary(allow_event=False)
    assert "without an event" in error_of('event.type == "x"', lead_only)
    assert "without an event" in error_of("event", lead_only)
    assert run("score > 1", score=2, vocabulary=lead_only) is True


def test_event_fields_are_checked() -> None:
    message = error_of('event.tpye == "page_view"')
    assert 'event has no field "tpye"' in message
    assert 'Did you mean "type"?' in message


# ------------------------------------------------------------------ the allow-list


def test_typo_in_a_lead_field_suggests_the_right_one() -> None:
    message = error_of('lead.titel == "vp"')
    assert 'lead has no field "titel"' in message
    assert 'Did you mean "title"?' in message


@pytest.mark.parametrize(
    "text",
    [
        "lead.__class__",
        "lead.title.__class__",
        "event.properties.__class__",
        "lead._private",
        '"x".__class__',
        "().__class__.__bases__",
    ],
)
def test_dunder_and_private_attributes_are_refused(text: str) -> None:
    message = error_of(text)
    assert "is not a field" in message or "only fields of lead and event" in message


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ('"abc".upper', "only fields of lead and event can be read with a dot"),
        ("score.real", "only fields of lead and event can be read with a dot"),
        ("now.year > 2000", "only fields of lead and event can be read with a dot"),
        ("(1).real", "only fields of lead and event can be read with a dot"),
        ('["a"].count', "only fields of lead and event can be read with a dot"),
    ],
)
def test_attribute_access_on_anything_but_lead_and_event_is_refused(text: str, words: str) -> None:
    assert words in error_of(text)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("lead.email.upper()", 'unknown function "lead.email.upper"'),
        ('event.url.startswith("https")', 'unknown function "event.url.startswith"'),
        ("__import__('os')", 'unknown function "__import__"'),
        ('__import__("os").system("id")', "unknown function"),
        ("eval('1')", 'unknown function "eval"'),
        ("open('/etc/passwd')", 'unknown function "open"'),
        ("getattr(lead, 'x')", 'unknown function "getattr"'),
        ('matchs(lead.title, "vp")', 'Did you mean "matches"?'),
        ('cont(event.url, "x")', 'unknown function "cont"'),
        ("history('page_view', 7, now)", 'unknown function "history"'),
        ('_matches(lead.title, "x")', 'unknown function "_matches"'),
    ],
)
def test_unknown_functions_and_method_calls_are_refused(text: str, words: str) -> None:
    message = error_of(text)
    assert words in message
    assert "Functions: matches, contains" in message


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("scroe > 10", 'unknown name "scroe". Did you mean "score"?'),
        ("pricing in event.url", 'unknown name "pricing"'),
        ("history", 'unknown name "history"'),
        ("_get", 'unknown name "_get"'),
        ("__builtins__", 'unknown name "__builtins__"'),
        ("lead", "name a field of lead, e.g. lead.title"),
        ("event", "name a field of event, e.g. event.type"),
        ('lead["title"] == "x"', "name a field of lead"),
    ],
)
def test_unknown_names_are_refused(text: str, words: str) -> None:
    message = error_of(text)
    assert words in message
    if "unknown name" in words:
        assert "text needs quotes" in message


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("lambda: 1", "lambda is not allowed"),
        ("(lambda x: x)(1)", "unknown function"),
        ("[x for x in lead.title]", "listcomp is not allowed"),
        ("{x for x in lead.title}", "setcomp is not allowed"),
        ("{x: 1 for x in lead.title}", "dictcomp is not allowed"),
        ("any(x for x in lead.title)", "unknown function"),
        ("(x for x in lead.title)", "generatorexp is not allowed"),
        ("(x := 1)", "namedexpr is not allowed"),
        ("{1: 2}", "dict is not allowed"),
        ("{1, 2}", "set is not allowed"),
        ("f'{score}'", "joinedstr is not allowed"),
        ("lead.title[0:2]", "use a quoted key"),
        ("event.properties[0]", "use a quoted key"),
        ("b'x' == 1", "is not a value a rule can use"),
        ("...", "is not a value a rule can use"),
        ("2 ** 100", "the operator ** is not allowed"),
        ("score % 2", "the operator % is not allowed"),
        ("score // 2", "the operator // is not allowed"),
        ("score > 1 & score < 5", "Use `and` / `or` to combine conditions"),
        ("~score", "only `not` and a minus sign"),
        ("lead.title is None", "`is` is not allowed"),
        ("await score", "await is not allowed"),
        ('count("x", weeks=1)', "count takes an event type and days=N"),
        ('count("x", **{"days": 1})', "count takes an event type and days=N"),
        ('matches(lead.title, "vp", "x")', "matches needs 2 value(s)"),
        ("lower()", "lower needs 1 value(s)"),
        ("count()", "count needs 1 to 2 value(s)"),
        ('contains(text=lead.title, part="x")', "contains takes no named arguments"),
        ('matches(*["a", "b"])', "matches needs 2 value(s)"),
        ('matches(lead.title, "(unclosed")', 'the pattern "(unclosed" cannot be used: not a valid regular expression'),
    ],
)
def test_constructs_outside_the_language_are_refused(text: str, words: str) -> None:
    assert words in error_of(text)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("import os", "this is not a valid condition"),
        ("from os import system", "this is not a valid condition"),
        ("score > 1; import os", "this is not a valid condition"),
        ("score >", "this is not a valid condition"),
        ("score > 1 && score < 5", "Write `and` / `or`"),
        ("", "the condition is empty"),
        ("   ", "the condition is empty"),
    ],
)
def test_statements_and_syntax_errors_are_refused(text: str, words: str) -> None:
    assert words in error_of(text)


@pytest.mark.parametrize("text", ['lead.title = "vp"', 'event.type = "page_view" and score > 1', "score = 10"])
def test_single_equals_gets_a_hint(text: str) -> None:
    message = error_of(text)
    assert "not a valid condition" in message
    assert "write == (two equals signs)" in message


def test_double_equals_syntax_error_gets_no_equals_hint() -> None:
    assert "two equals signs" not in error_of("score == ")


def test_syntax_error_reports_a_column() -> None:
    with pytest.raises(ExpressionError) as info:
        compile_expression("score > > 1")
    assert info.value.column is not None


def test_non_text_condition_is_refused() -> None:
    with pytest.raises(ExpressionError, match="empty"):
        compile_expression(None)  # type: ignore[arg-type]


def test_length_limit() -> None:
    text = " or ".join(["score > 1"] * 400)
    assert len(text) > MAX_LENGTH
    message = error_of(text)
    assert f"longer than {MAX_LENGTH} characters" in message
    assert "split it" in message


def test_node_limit() -> None:
    text = "+".join(["1"] * 120) + " > 0"
    assert len(text) < MAX_LENGTH
    message = error_of(text)
    assert "too long" in message and "split it into several rules" in message
    # just under the limit compiles and evaluates
    small = "+".join(["1"] * (MAX_NODES // 4)) + f" == {MAX_NODES // 4}"
    assert run(small) is True


@pytest.mark.parametrize(
    "text",
    [
        "(" * 250 + "1" + ")" * 250,
        "-" * 1000 + "1",
        "not " * 450 + "score",
        "[" * 150 + "]" * 150,
    ],
)
def test_deeply_nested_input_is_refused_cleanly(text: str) -> None:
    error_of(text)  # an ExpressionError, never RecursionError/MemoryError


def test_runtime_namespace_has_no_builtins() -> None:
    rule = compile_expression("score > 1")
    assert rule.__globals__["__builtins__"] == {}


# ------------------------------------------------------------------ durations


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90s", timedelta(seconds=90)),
        ("15m", timedelta(minutes=15)),
        ("24h", timedelta(hours=24)),
        ("7d", timedelta(days=7)),
        ("2w", timedelta(weeks=2)),
        ("1.5d", timedelta(hours=36)),
        (" 3 h ", timedelta(hours=3)),
        (3600, timedelta(hours=1)),
        (1.5, timedelta(seconds=1.5)),
    ],
)
def test_parse_duration(text: str | int | float, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["3 days", "3", "d", "1D", "-1d", "1.d", "1y", "1h30m", "", "soon", True, False])
def test_parse_duration_refuses(text: Any) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


def test_parse_duration_message_explains_the_format() -> None:
    with pytest.raises(ValueError) as info:
        parse_duration("3 days")
    assert '"3 days" is not a duration' in str(info.value)
    assert "24h" in str(info.value)


# ------------------------------------------------------------------ patterns and numbers refused at save time


@pytest.mark.parametrize("pattern", ["(a+)+$", "(a*)*b", "(x|y*)*z", "((ab)+c?)+", "(?:a{2,})+", "(a|aa)+$", "(.|x)*"])
def test_patterns_with_nested_repetition_run_on_linear_time_re2(pattern: str) -> None:
    # Refused while patterns ran on Python's backtracking engine; RE2 matches them in linear time.
    rule = compile_expression(f'matches(lead.title, "{pattern}")')
    for title in ("a" * 999 + "!", "x" * 999, "ab" * 499 + "!"):
        rule({"title": title}, None, 0, None, "new", NOW, None)


@pytest.mark.parametrize(
    ("pattern", "reason"),
    [("(a)\\\\1", "backreferences"), ("vp(?=x)", "lookahead"), ("(?<!x)vp", "lookbehind"), ("a{2000}", "above 1000")],
)
def test_patterns_re2_cannot_run_are_refused_with_why(pattern: str, reason: str) -> None:
    with pytest.raises(ExpressionError, match=reason):
        compile_expression(f'matches(lead.title, "{pattern}")')


@pytest.mark.parametrize(
    "pattern", [r"\\b(vp|director)|部長", "a+b*", "(ab)+", "^.*pricing.*$", "x{2,5}", "(vp|director)+", "(部長|課長)+"]
)
def test_ordinary_patterns_are_accepted(pattern: str) -> None:
    compile_expression(f'matches(lead.title, "{pattern}")')


def test_a_risky_pattern_read_from_a_field_is_false_at_once() -> None:
    rule = compile_expression("matches(lead.title, lead.company)")
    assert rule({"title": "a" * 40 + "!", "company": "(a+)+$"}, None, 0, None, "new", None, None) is False


def test_yaml_backspace_instead_of_word_boundary_is_explained() -> None:
    with pytest.raises(ExpressionError) as info:
        compile_expression('matches(lead.title, "\bvp")')  # what YAML makes of "\bvp" in double quotes
    assert "control character" in info.value.message and "\\x08vp" in info.value.message


@pytest.mark.parametrize("text", ['lead.company_size >= "200"', 'score > "10"', '"5000" <= lead.annual_revenue'])
def test_numbers_in_quotes_are_refused(text: str) -> None:
    with pytest.raises(ExpressionError, match="compare numbers with numbers"):
        compile_expression(text)


@pytest.mark.parametrize("pattern", ["\\\\b(vp|部長)", "部長\\\\b", "\\\\bvp|\\\\b課長"])
def test_an_ascii_only_word_boundary_next_to_japanese_is_refused(pattern: str) -> None:
    # Python's \b matched before 部長; RE2's is ASCII-only and never would: refused, not silently false.
    with pytest.raises(ExpressionError, match="only knows ASCII letters"):
        compile_expression(f'matches(lead.title, "{pattern}")')
    assert run('matches(lead.title, "\\\\b(vp|director)|部長")', {"title": "営業部長"}) is True
