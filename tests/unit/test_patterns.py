"""Number patterns (exact, glob, `re:`) and the rule index built on them.

* Compiling any text gives a pattern or a PatternError, nothing else.
* Soundness of what the index relies on: every number a pattern matches
  starts with the pattern's literal `prefix` (numbers are generated *from*
  the pattern, so the matches are real ones).
* A NumberSet's fast paths (exact set, prefix table) agree with trying
  every pattern.
* The rule engine with its index picks the same rule as trying every rule
  in order (the full trace).
"""

from __future__ import annotations

import json
import re
import tempfile
from fnmatch import translate
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from holdd.config.rulefiles import load_rules
from holdd.core.calls import Call
from holdd.core.rules import RuleEngine
from holdd.core.rules.patterns import NumberSet, PatternError, digits, number_pattern
from holdd.core.states import CallState

DIGITS = "0123456789"

# -- a grammar of regexes over digits ----------------------------------------------

atoms = st.one_of(
    st.text(alphabet=DIGITS, min_size=1, max_size=4),
    st.sampled_from(["\\d", "[0-9]", "[1-3]", "[^5]", ".", "7", "79"]),
)
quantifiers = st.sampled_from(
    ["", "", "", "?", "*", "+", "{2}", "{0}", "{1,3}", "{,2}", "??", "*?"]
)
#: Groups take bounded quantifiers only: a group like (7*)+ backtracks
#: exponentially, which would test the regex engine's patience, not holdd.
group_quantifiers = st.sampled_from(["", "", "?", "{2}", "{0}", "{1,2}"])


@st.composite
def regexes(draw: st.DrawFn, depth: int = 2) -> str:
    parts = []
    for _ in range(draw(st.integers(1, 4))):
        if depth and draw(st.integers(0, 4)) == 0:
            alternatives = draw(st.lists(regexes(depth - 1), min_size=1, max_size=3))
            parts.append("(" + "|".join(alternatives) + ")" + draw(group_quantifiers))
        else:
            parts.append(draw(atoms) + draw(quantifiers))
    body = "".join(parts)
    if depth == 2:
        body = draw(st.sampled_from(["", "^"])) + body + draw(st.sampled_from(["", "$"]))
    return body


globs = st.text(alphabet=DIGITS + "*?", min_size=1, max_size=12).filter(
    lambda g: any(c in g for c in "*?")
)
exact_numbers = st.text(alphabet=DIGITS + " +-()", min_size=1, max_size=14).filter(
    lambda t: any(c.isdigit() for c in t)
)
pattern_texts = st.one_of(
    exact_numbers, globs, regexes().map(lambda r: "re:" + r), st.text(max_size=16)
)


@st.composite
def pattern_and_match(draw: st.DrawFn) -> tuple[str, str]:
    """A pattern and a number it matches, generated from the pattern itself."""
    kind = draw(st.sampled_from(["exact", "glob", "regex"]))
    if kind == "exact":
        text = draw(exact_numbers)
        return text, digits(text)
    if kind == "glob":
        text = draw(globs)
        source = translate(text)
    else:
        body = draw(regexes())
        text, source = "re:" + body, body
    number = draw(st.from_regex(source, fullmatch=True, alphabet=DIGITS))
    assume(len(number) <= 15)  # E.164: a phone number has at most 15 digits
    return text, number


# -- properties ----------------------------------------------------------------------


@settings(deadline=None)
@given(pattern_texts)
def test_compiling_gives_a_pattern_or_a_pattern_error(text: str) -> None:
    try:
        pattern = number_pattern(text)
    except PatternError as exc:
        assert str(exc)
        return
    assert pattern.prefix == "" or pattern.prefix.isdigit()


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pattern_and_match())
def test_every_match_starts_with_the_prefix_the_index_uses(case: tuple[str, str]) -> None:
    text, number = case
    try:
        pattern = number_pattern(text)
    except PatternError:
        assume(False)
        return
    assert pattern.matches(number), (text, number)
    assert number.startswith(pattern.prefix), (text, number, pattern.prefix)


numbers = st.one_of(
    st.text(alphabet=DIGITS, max_size=13),
    st.sampled_from(["74993720692", "79260000000", "7495", "7", ""]),
)


@settings(deadline=None)
@given(st.lists(pattern_texts, min_size=1, max_size=6), st.lists(numbers, max_size=8))
def test_a_number_set_agrees_with_trying_every_pattern(
    texts: list[str], candidates: list[str]
) -> None:
    patterns = []
    for text in texts:
        try:
            patterns.append(number_pattern(text))
        except PatternError:
            continue
    assume(patterns)
    numbers_set = NumberSet(tuple(patterns))
    keys = numbers_set.index_keys()
    for number in candidates:
        expected = any(p.matches(number) for p in patterns)
        assert numbers_set.matches(number) == expected, (texts, number)
        if expected and keys is not None:
            exact, prefixes = keys
            assert number in exact or any(number.startswith(p) for p in prefixes)


# -- the index inside the engine -------------------------------------------------------

usable_patterns = st.one_of(
    st.text(alphabet=DIGITS, min_size=1, max_size=5).map(lambda d: "7" + d),
    st.text(alphabet=DIGITS, min_size=0, max_size=3).map(lambda d: "7" + d + "*"),
    regexes().map(lambda r: "re:" + r),
)


@st.composite
def rule_sets(draw: st.DrawFn) -> str:
    rules = []
    for i in range(draw(st.integers(1, 8))):
        lines = [f'[[rule]]\nname = "r{i}"\npriority = {draw(st.integers(0, 2))}', "[rule.match]"]
        for key in draw(
            st.lists(
                st.sampled_from(
                    ["virtual_phone_number", "contact_phone_number", "employee_id", "direction"]
                ),
                max_size=3,
                unique=True,
            )
        ):
            if key == "employee_id":
                value = json.dumps(draw(st.lists(st.integers(1, 4), min_size=1, max_size=2)))
            elif key == "direction":
                value = json.dumps(draw(st.sampled_from(["in", "out"])))
            else:
                value = json.dumps(draw(st.lists(usable_patterns, min_size=1, max_size=3)))
            lines.append(f"{key} = {value}")
        lines.append('[rule.hold]\nmedia = "2034"')
        rules.append("\n".join(lines))
    return "\n\n".join(rules) + "\n"


calls = st.fixed_dictionaries(
    {},
    optional={
        "virtual_phone_number": st.text(alphabet=DIGITS, min_size=1, max_size=8).map(
            lambda d: "7" + d
        ),
        "contact_phone_number": st.text(alphabet=DIGITS, min_size=1, max_size=8).map(
            lambda d: "7" + d
        ),
        "employee_id": st.integers(1, 4),
        "direction": st.sampled_from(["in", "out", "IN"]),
    },
)


@settings(
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(rule_sets(), st.lists(calls, min_size=1, max_size=6))
def test_the_index_never_hides_the_rule_that_should_act(
    text: str, call_fields: list[dict[str, object]]
) -> None:
    with tempfile.TemporaryDirectory(prefix="holdd-fuzz-") as tmp:
        path = Path(tmp) / "rules.toml"
        path.write_text(text, encoding="utf-8")
        try:
            engine = RuleEngine(load_rules([path]))
        except Exception as exc:  # a regex the grammar made may not compile
            assume(not re.search("does not compile", str(exc)))
            raise
    for i, fields in enumerate(call_fields):
        call = Call(1000 + i, CallState.TALK, dict(fields), episode=1, talk_started_at=0.0)  # type: ignore[arg-type]
        evaluation = engine.evaluate(call, 0.0)
        full = evaluation.trace  # every rule in order, as if none were skipped
        first = full[-1].rule if full and full[-1].matched else None
        chosen = evaluation.decision.rule.name if evaluation.decision else None
        assert chosen == first, (text, fields, [t.as_dict() for t in full])


# -- crashes found while writing the above ---------------------------------------------


@pytest.mark.parametrize(
    "text",
    ["re:7{4294967296}", "re:" + "(" * 2000 + ")" * 2000],
    ids=["repeat-count-too-large", "nested-too-deep"],
)
def test_a_regex_python_cannot_compile_is_a_pattern_error(text: str) -> None:
    with pytest.raises(PatternError):
        number_pattern(text)
