"""rules/sections.py: a scoring section compiled into one function answers exactly what its rules answer."""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from rules import decide, load_playbook_text
from rules.expressions import Vocabulary, compile_expression
from rules.model import EventsReceived, LeadState, LeadUpserted, TrackedEvent
from rules.patterns import MATCH_MEMO_SIZE, memoised_matcher
from rules.sections import compile_section

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.rules_bench import RULES, make_pairs  # noqa: E402

T0 = datetime(2026, 4, 1, 9, 0, tzinfo=UTC)
VOCABULARY = Vocabulary().with_fields(["job_function"])
TEXTS = [r.leadflow for r in RULES] + [
    'event.type != "page_view" and lead.country not in ["JP", "us"]',
    '"Pricing" in event.url or starts_with(event.name, "Free")',
    "lead.company_size > 10.5 or lead.company_size <= -1",
    'lead.title == "VP" or contains(lead.title, "Chief")',
    'event.properties["plan"] in ["Pro", "team"]',
]


def per_rule(texts: list[str]) -> list[Any]:
    return [compile_expression(t, VOCABULARY) for t in texts]


def section_answers(texts: list[str], args: tuple[Any, ...]) -> list[bool]:
    section = compile_section(texts, VOCABULARY)
    assert section is not None
    held = set(section.test(*args))
    singles = per_rule(texts)
    return [i in held if i not in section.late else bool(singles[i](*args)) for i in range(len(texts))]


def test_the_benchmark_rules_agree_on_every_pair() -> None:
    singles = per_rule(TEXTS)
    section = compile_section(TEXTS, VOCABULARY)
    assert section is not None
    assert section.late == frozenset({TEXTS.index('score >= 50 and grade in ["A", "B"] and stage == "mql"')})
    for pair in make_pairs(300):
        held = set(section.test(*pair))
        for i, single in enumerate(singles):
            if i not in section.late:
                assert (i in held) == bool(single(*pair)), (TEXTS[i], pair[:2])


ODD_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 5000),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["page_view", "PAGE_VIEW", "download", "VP Sales", "JP", "us", "software", "Pro", ""]),
    st.text(max_size=12),
    st.lists(st.sampled_from(["JP", "Pro", "x"]), max_size=3),
    st.dictionaries(st.sampled_from(["plan", "minutes", "campaign"]), st.integers(0, 60) | st.text(max_size=5)),
)
LEAD_KEYS = ["title", "company_size", "country", "industry", "email", "utm_source", "budget", "timeline"]
EVENT_KEYS = ["type", "url", "name", "properties"]


@settings(max_examples=300, deadline=None)
@given(
    lead=st.dictionaries(st.sampled_from(LEAD_KEYS), ODD_VALUES, max_size=6),
    event=st.dictionaries(st.sampled_from(EVENT_KEYS), ODD_VALUES, max_size=4),
)
def test_any_values_get_the_answers_of_the_rules_one_by_one(lead: dict[str, Any], event: dict[str, Any]) -> None:
    texts = [t for t in TEXTS if "count(" not in t and "days_since" not in t]
    args = (lead, event, 10.0, "B", "mql", T0, lambda *a: 0)
    expected = []
    for single in per_rule(texts):
        try:
            expected.append(bool(single(*args)))
        except Exception:  # the engine then evaluates rule by rule: nothing to compare
            return
    assert section_answers(texts, args) == expected


CHAINED = """\
name: chained
fields: [window]
routing: {default_team: nobody}
scoring:
  rules:
    - {id: demo, when: 'event.type == "demo"', points: 50}
    - {id: hot, when: 'score >= 50 and event.type == "demo"', points: 5}
    - {id: broken, when: 'event.type == "demo" and count("demo", days=lead.window) >= 1', points: 1}
    - {id: after, when: 'event.type == "demo"', points: 2}
"""


def test_a_rule_reading_the_score_sees_the_points_of_the_rules_before_it() -> None:
    pb = load_playbook_text(CHAINED)
    state = LeadState("lead-1")
    decide(state, LeadUpserted({"email": "a@example.com"}), T0, pb)
    decide(state, EventsReceived([TrackedEvent("e1", "demo", T0)]), T0, pb)
    assert [c.rule_id for c in state.score_changes] == ["demo", "hot", "broken", "after"]
    assert state.score == 58


def test_a_rule_that_raises_is_recorded_and_the_others_still_score() -> None:
    pb = load_playbook_text(CHAINED)
    state = LeadState("lead-1")
    decide(state, LeadUpserted({"email": "a@example.com", "window": 10**9}), T0, pb)
    decide(state, EventsReceived([TrackedEvent("e1", "demo", T0 + timedelta(seconds=1))]), T0, pb)
    assert [c.rule_id for c in state.score_changes] == ["demo", "hot", "after"]
    assert [e.rule_id for e in state.rule_errors] == ["broken"]
    assert "RuleArgumentError" in state.rule_errors[0].message


def test_a_rule_that_does_not_compile_never_holds() -> None:
    section = compile_section(['event.type == "a"', "event.nope == 1", 'event.type == "b"'], VOCABULARY)
    assert section is not None
    assert section.test({}, {"type": "b"}, 0, None, "new", T0, None) == [2]


def test_the_regex_memo_is_bounded_and_answers_as_the_engine() -> None:
    matcher = memoised_matcher("re2", "vp|director")
    assert matcher("Senior VP") and not matcher("Engineer") and not matcher(None) and not matcher(42)
    for i in range(MATCH_MEMO_SIZE + 10):
        matcher(f"title {i}")
    assert matcher("Director of Sales") and not matcher("x" * 500)
