"""Rule loading (file:line problems) and matching, as plain functions."""

from __future__ import annotations

from pathlib import Path

import pytest

from holdd.config.rulefiles import load_rules
from holdd.core.calls import Call
from holdd.core.errors import ConfigError
from holdd.core.rules import RuleEngine
from holdd.core.rules.patterns import digits, number_pattern
from holdd.core.states import CallState


def write(tmp_path: Path, text: str, name: str = "r.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def call(csid: int = 1, **fields: object) -> Call:
    return Call(csid, CallState.TALK, dict(fields), episode=1)  # type: ignore[arg-type]


RULES = """
[[rule]]
name = "vip"
priority = 10
[rule.match]
direction = "in"
contact_phone_number = ["7926*", "re:^7916\\\\d{7}$"]
[rule.hold]
media = "2034"

[[rule]]
name = "sales"
[rule.match]
virtual_phone_number = ["+7 (499) 372-06-92"]
[rule.hold]
tts = "Здравствуйте, {contact_full_name}!"

[[rule]]
name = "agent"
priority = 10
[rule.match]
employee_id = [25, 31]
[rule.hold]
media = 3001
"""


def test_patterns_compare_digits_only() -> None:
    assert digits("+7 (926) 000-00-00") == "79260000000"
    assert number_pattern("+7 926 000 00 00").matches("79260000000")
    assert number_pattern("7926*").matches("79260000000")
    assert not number_pattern("7926*").matches("79160000000")
    assert number_pattern("7?26*").matches("79260000000")
    assert number_pattern(r"re:^7916\d{7}$").matches("79161234567")
    assert not number_pattern(r"re:^7916\d{7}$").matches("791612345678")


def test_first_match_by_priority_then_file_order(tmp_path: Path) -> None:
    rules = load_rules([write(tmp_path, RULES)])
    assert [r.name for r in rules.rules] == ["vip", "agent", "sales"]
    engine = RuleEngine(rules)
    both = call(direction="in", contact_phone_number="79260001122", employee_id=25)
    assert engine.evaluate(both).decision.rule.name == "vip"  # type: ignore[union-attr]
    agent = engine.evaluate(call(direction="out", employee_id=31)).decision
    assert agent is not None and agent.message.value == "3001"


def test_tts_placeholders_are_filled(tmp_path: Path) -> None:
    engine = RuleEngine(load_rules([write(tmp_path, RULES)]))
    ev = engine.evaluate(call(virtual_phone_number="74993720692", contact_full_name="Анна"))
    assert ev.decision is not None
    assert (ev.decision.message.type, ev.decision.message.value) == ("tts", "Здравствуйте, Анна!")


def test_no_match_trace_names_first_failed_condition(tmp_path: Path) -> None:
    engine = RuleEngine(load_rules([write(tmp_path, RULES)]))
    ev = engine.evaluate(call(direction="out", contact_phone_number="79260000000"))
    assert ev.decision is None
    assert [t.as_dict() for t in ev.trace] == [
        {"rule": "vip", "matched": False, "failed": "direction", "actual": "out"},
        {"rule": "agent", "matched": False, "failed": "employee_id", "actual": None},
        {"rule": "sales", "matched": False, "failed": "virtual_phone_number", "actual": None},
    ]


def test_a_rule_that_fired_is_skipped(tmp_path: Path) -> None:
    engine = RuleEngine(load_rules([write(tmp_path, RULES)]))
    c = call(direction="in", contact_phone_number="79260001122", employee_id=25)
    c.fired = ("vip",)
    ev = engine.evaluate(c)
    assert ev.decision is not None and ev.decision.rule.name == "agent"
    assert ev.trace[0].skipped == "fired_before"


def test_tts_too_long_after_substitution_is_an_error_not_a_request(tmp_path: Path) -> None:
    text = '[[rule]]\nname = "t"\n[rule.hold]\ntts = "Hi {contact_full_name}"\n'
    engine = RuleEngine(load_rules([write(tmp_path, text)], tts_max_length=20))
    ev = engine.evaluate(call(contact_full_name="x" * 30))
    assert ev.decision is None and ev.error is not None and "tts_max_length 20" in ev.error


BROKEN = [
    (
        '[[rule]]\nname = "a"\n[rule.match]\ndirektion = "in"\n[rule.hold]\nmedia = "1"\n',
        4,
        "unknown key 'direktion'",
    ),
    ('[[rule]]\nname = "a"\n[rule.hold]\nmedia = "1"\ntts = "x"\n', 3, "exactly one of"),
    ('[[rule]]\nname = "a"\n[rule.hold]\nmedia = "music.mp3"\n', 4, "not a media file id"),
    ('[[rule]]\nname = "a"\n[rule.hold]\ntts = "Hi {nobody}"\n', 4, "unknown placeholder"),
    (
        '[[rule]]\nname = "a"\n[rule.match]\ncontact_phone_number = "re:(("\n[rule.hold]\n'
        'media = "1"\n',
        4,
        "does not compile",
    ),
    (
        '[[rule]]\nname = "a"\npriority = "high"\n[rule.hold]\nmedia = "1"\n',
        3,
        "priority: expected a whole number, got text",
    ),
    (
        '[[rule]]\nname = "a"\n[rule.hold]\nmedia = "1"\n\n[[rule]]\nname = "a"\n[rule.hold]\n'
        'media = "2"\n',
        6,
        "duplicate rule name",
    ),
    ('[[rule]]\nname = "a"\nmode = "loud"\n[rule.hold]\nmedia = "1"\n', 3, "mode"),
    (
        '[[rule]]\nname = "a"\n[rule.match]\ndirection = "sideways"\n[rule.hold]\nmedia = "1"\n',
        4,
        "not in or out",
    ),
    ('[[rule]]\nname = "a"\n[rule.hold\nmedia = "1"\n', 3, "not valid TOML"),
    ('[[rule]]\nname = "a"\n[rule.hold]\ntts = "' + "x" * 30 + '"\n', 4, "over tts_max_length"),
]


@pytest.mark.parametrize(("text", "line", "words"), BROKEN)
def test_broken_rule_files_name_file_line_and_what(
    tmp_path: Path, text: str, line: int, words: str
) -> None:
    path = write(tmp_path, text, "x.toml")
    with pytest.raises(ConfigError) as err:
        load_rules([path], tts_max_length=20)
    problems = [str(p) for p in err.value.problems]
    assert len(problems) == 1, problems
    assert problems[0].startswith(f"{path}:{line}:"), problems
    assert words in problems[0]


def test_all_problems_of_all_files_at_once(tmp_path: Path) -> None:
    a = write(tmp_path, BROKEN[0][0], "a.toml")
    b = write(tmp_path, BROKEN[2][0], "b.toml")
    with pytest.raises(ConfigError) as err:
        load_rules([a, b])
    assert [p.path for p in err.value.problems] == [str(a), str(b)]
    assert all(p.rule == "a" for p in err.value.problems)
