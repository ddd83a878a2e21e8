"""The engine: timing (`after`, due_at), schedules judged when the rule acts,
unless, cooldowns, fired_before, traces; and the index, which must never
change the outcome (checked against trying every rule, with hypothesis)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from holdd.config.rulefiles import load_rules
from holdd.core.calls import Call
from holdd.core.rules import RuleEngine
from holdd.core.rules.cooldowns import Cooldowns
from holdd.core.rules.engine import RuleTrace
from holdd.core.rules.model import (
    CallView,
    EmployeeCondition,
    HoldAction,
    NumberCondition,
    Rule,
    RuleSet,
    ScheduleCondition,
    TextCondition,
)
from holdd.core.rules.patterns import NumberSet, number_pattern, text_set
from holdd.core.rules.schedule import Schedule, build_schedule
from holdd.core.states import CallState

MSK = dt.timezone(dt.timedelta(hours=3))
THU_10 = dt.datetime(2026, 11, 26, 10, 0, tzinfo=MSK).timestamp()

RULES = """
[schedule.office]
timezone = "Europe/Moscow"
days = "mon-fri"
hours = ["09:00-18:00"]

[[rule]]
name = "late-survey"
priority = 5
after = "1h"
[rule.match]
direction = "in"
schedule = "office"
[rule.hold]
media = "1"

[[rule]]
name = "office"
after = "30s"
[rule.match]
direction = "in"
schedule = "office"
[rule.unless]
contact_phone_number = "7916*"
[rule.hold]
tts = "Здравствуйте, {contact_full_name}!"
[rule.then]
unhold_after = "20s"
[rule.limit]
cooldown = "1h"
"""


def engine(tmp_path: Path, text: str = RULES, tts_max_length: int = 500) -> RuleEngine:
    path = tmp_path / "r.toml"
    path.write_text(text, encoding="utf-8")
    return RuleEngine(load_rules([path], tts_max_length))


def talking(at: float, csid: int = 1, /, **fields: object) -> Call:
    call = Call(csid, CallState.TALK, dict(fields), episode=1, talk_started_at=at)  # type: ignore[arg-type]
    call.updated_at = at
    return call


def test_after_gives_a_due_time_from_talk_start(tmp_path: Path) -> None:
    eng = engine(tmp_path)
    # Priority first: late-survey (after 1h) is the decision, though "office"
    # (after 30s) would be ready sooner; it acts at due_at if still talking.
    ev = eng.evaluate(talking(THU_10, direction="in", contact_full_name="Анна"))
    d = ev.decision
    assert d is not None and d.rule.name == "late-survey"
    assert d.due_at == THU_10 + 3600 and d.unhold_after is None
    assert not d.ready(THU_10) and not d.ready(THU_10 + 3599.9) and d.ready(THU_10 + 3600)
    at = dt.datetime(2026, 11, 26, 17, 30, tzinfo=MSK).timestamp()
    d = eng.evaluate(talking(at, direction="in", contact_full_name="Анна")).decision
    assert d is not None and d.rule.name == "office"
    assert d.due_at == at + 30 and d.unhold_after == 20
    assert d.message.value == "Здравствуйте, Анна!"


def test_a_schedule_is_judged_when_the_rule_would_act(tmp_path: Path) -> None:
    # 17:30: "late-survey" would act at 18:30, outside office hours; "office" at 17:30:30.
    at = dt.datetime(2026, 11, 26, 17, 30, tzinfo=MSK).timestamp()
    ev = engine(tmp_path).evaluate(talking(at, direction="in", contact_full_name="x"), at)
    assert ev.decision is not None and ev.decision.rule.name == "office"
    assert ev.trace[0] == RuleTrace(
        "late-survey",
        False,
        "schedule",
        "thu 2026-11-26 18:30 Europe/Moscow",
        reason="outside schedule office",
    )


def test_unless_and_cooldown_and_fired_before_in_the_trace(tmp_path: Path) -> None:
    eng = engine(tmp_path)
    at = dt.datetime(2026, 11, 26, 17, 30, tzinfo=MSK).timestamp()
    excluded = eng.evaluate(talking(at, direction="in", contact_phone_number="79161234567"), at)
    assert excluded.decision is None
    assert excluded.trace[-1].as_dict() == {
        "rule": "office",
        "matched": False,
        "failed": "unless.contact_phone_number",
        "actual": "79161234567",
        "reason": "unless matched: contact_phone_number",
    }
    call = talking(at, direction="in", contact_phone_number="+7 903 123-45-67")

    def store(fired_at: float) -> Cooldowns:
        cooldowns = Cooldowns()
        cooldowns.record_cooldown("office", "79031234567", fired_at)  # digits only
        return cooldowns

    cooling = eng.evaluate(call, at, store(at - 600))
    assert cooling.decision is None
    assert cooling.trace[-1].reason == "cooldown until 2026-11-26T15:20:00Z"
    # Judged when the rule would act (after = 30s): a cooldown ending 10 s from
    # now is over by then, one ending in 40 s is not.
    assert eng.evaluate(call, at, store(at - 3600 + 10)).decision is not None
    assert eng.evaluate(call, at, store(at - 3600 + 40)).decision is None
    call.fired = ("office",)
    assert eng.evaluate(call, at, store(0)).trace[-1].skipped == "fired_before"


def test_evaluate_with_defaults_uses_the_moment_talk_began(tmp_path: Path) -> None:
    # The daemon's call path: evaluate(call) on a talk_entered change.
    ev = engine(tmp_path).evaluate(talking(THU_10, direction="in", contact_full_name="x"))
    assert ev.at == THU_10 and ev.decision is not None


def test_an_empty_tts_after_placeholders_is_an_error_not_a_request(tmp_path: Path) -> None:
    text = '[[rule]]\nname = "t"\n[rule.hold]\ntts = "{contact_full_name}"\n'
    ev = engine(tmp_path, text).evaluate(talking(THU_10))
    assert ev.decision is None and ev.error == "tts text is empty after placeholders"
    assert ev.rule == "t"


def test_tried_holds_only_candidates_and_trace_every_rule(tmp_path: Path) -> None:
    rules = "".join(
        f'[[rule]]\nname = "r{i}"\n[rule.match]\nvirtual_phone_number = "7495000{i:04d}"\n'
        f'[rule.hold]\nmedia = "{i + 1}"\n'
        for i in range(50)
    )
    eng = engine(tmp_path, rules)
    ev = eng.evaluate(talking(THU_10, virtual_phone_number="+7 495 000-00-42"))
    assert ev.decision is not None and ev.decision.rule.name == "r42"
    assert [t.rule for t in ev.tried] == ["r42"] and ev.excluded == 49
    assert [t.rule for t in ev.trace] == [f"r{i}" for i in range(43)]
    assert ev.trace[0].as_dict() == {
        "rule": "r0",
        "matched": False,
        "failed": "virtual_phone_number",
        "actual": "+7 495 000-00-42",
    }


def test_no_match_counts_the_rules_ruled_out_by_key(tmp_path: Path) -> None:
    """What `holdd explain` shows for a call no rule matched: the rules tried,
    each with its failed condition, and the others counted by the key whose
    list does not hold the call's value, without trying them."""
    rules = "".join(
        f'[[rule]]\nname = "line{i}"\n[rule.match]\nvirtual_phone_number = "7495000{i:04d}"\n'
        f'[rule.hold]\nmedia = "{i + 1}"\n'
        for i in range(30)
    ) + (
        '[[rule]]\nname = "vip"\n[rule.match]\ncontact_phone_number = "79260000001"\n'
        '[rule.hold]\nmedia = "9"\n'
        '[[rule]]\nname = "inbound-only"\n[rule.match]\ndirection = "in"\n'
        '[rule.hold]\nmedia = "8"\n'
        '[[rule]]\nname = "night"\n[rule.match]\ndirection = "out"\n'
        'contact_phone_number = "re:^7903\\\\d{7}$"\nvirtual_phone_number = "re:\\\\d+9$"\n'
        '[rule.hold]\nmedia = "7"\n'
    )
    eng = engine(tmp_path, rules)
    ev = eng.evaluate(
        talking(
            THU_10,
            direction="out",
            virtual_phone_number="74950000042",
            contact_phone_number="79031234567",
        )
    )
    assert ev.decision is None
    # "night" is filed under its contact prefix 7903, which the call has: it
    # is tried, and fails on the regex of the virtual number.
    assert [(t.rule, t.failed_key) for t in ev.tried] == [("night", "virtual_phone_number")]
    assert ev.excluded == 32
    assert ev.excluded_by == (
        ("virtual_phone_number", 30, "74950000042"),
        ("contact_phone_number", 1, "79031234567"),
        ("direction", 1, "out"),
    )


# -- the index never changes the outcome ----------------------------------------

NUMBERS = [
    "74993720692",
    "74950000001",
    "78121234567",
    "78131234567",
    "79261112233",
    "79031234567",
    "7495",
    "749",
]
PATTERNS = [
    "74993720692",
    "+7 (495) 000-00-01",
    "7495*",
    "7812*",
    "7?26*",
    "*2233",
    "*",
    r"re:^7813\d{7}$",
    r"re:7813\d+",
    r"re:.*2233",
    r"re:79(26|03)\d{7}",
    "re:7495?",
]
_OFFICE, _ = build_schedule("office", "Europe/Moscow", ["mon-fri"], ["09:00-18:00"], [])
assert _OFFICE is not None
OFFICE: Schedule = _OFFICE


@st.composite
def conditions(draw: st.DrawFn) -> list[object]:
    out: list[object] = []
    keys = draw(
        st.lists(
            st.sampled_from(
                [
                    "virtual_phone_number",
                    "contact_phone_number",
                    "direction",
                    "employee_id",
                    "call_source",
                    "schedule",
                ]
            ),
            unique=True,
            max_size=4,
        )
    )
    for key in keys:
        if key.endswith("number"):
            chosen = draw(st.lists(st.sampled_from(PATTERNS), min_size=1, max_size=3))
            out.append(NumberCondition(key, NumberSet(tuple(number_pattern(p) for p in chosen))))
        elif key == "direction":
            out.append(
                TextCondition(
                    key, text_set(draw(st.sets(st.sampled_from(["in", "out"]), min_size=1)))
                )
            )
        elif key == "employee_id":
            out.append(EmployeeCondition(frozenset(draw(st.sets(st.integers(1, 4), min_size=1)))))
        elif key == "call_source":
            texts = draw(st.sets(st.sampled_from(["va", "sitephone", "re:site.*"]), min_size=1))
            out.append(TextCondition(key, text_set(texts)))
        else:
            out.append(ScheduleCondition((OFFICE,)))
    return out


@st.composite
def rule_sets(draw: st.DrawFn) -> RuleSet:
    rules = []
    for i in range(draw(st.integers(1, 12))):
        rules.append(
            Rule(
                name=f"r{i}",
                hold=HoldAction(media=str(i + 1)),
                priority=draw(st.integers(0, 2)),
                conditions=tuple(draw(conditions())),  # type: ignore[arg-type]
                exclusions=tuple(draw(conditions()))[:1],  # type: ignore[arg-type]
            )
        )
    ordered = sorted(rules, key=lambda r: -r.priority)
    return RuleSet(tuple(ordered))


calls = st.fixed_dictionaries(
    {},
    optional={
        "virtual_phone_number": st.sampled_from(NUMBERS),
        "contact_phone_number": st.sampled_from([*NUMBERS, "+7 926 111-22-33"]),
        "direction": st.sampled_from(["in", "out", "IN"]),
        "employee_id": st.one_of(st.integers(1, 5), st.just("3")),
        "call_source": st.sampled_from(["va", "sitephone", "SITE-x"]),
    },
)


class _EveryRule:
    def __init__(self, count: int) -> None:
        self.everything: Sequence[int] = range(count)

    def candidates(self, call: CallView) -> Sequence[int]:
        return self.everything


@settings(deadline=None)
@given(
    rule_sets(),
    calls,
    st.sampled_from([THU_10, THU_10 + 12 * 3600]),
    st.sets(st.sampled_from(["r0", "r1", "r2"])),
)
def test_the_index_never_changes_the_outcome(
    ruleset: RuleSet, fields: dict[str, object], at: float, fired: set[str]
) -> None:
    indexed = RuleEngine(ruleset)
    plain = RuleEngine(ruleset)
    plain.index = _EveryRule(len(ruleset.rules))  # type: ignore[assignment]
    call = talking(at, **fields)
    call.fired = tuple(sorted(fired))
    a, b = indexed.evaluate(call, at), plain.evaluate(call, at)
    assert (a.decision and a.decision.rule.name) == (b.decision and b.decision.rule.name)
    assert a.trace == b.trace == b.tried
    # Every rule tried is in the trace with the same verdict.
    assert set(a.tried) <= set(a.trace)
    # Where nothing matched, every rule not tried is counted under the key
    # that ruled it out, with the call's value for that key.
    if a.decision is None and a.error is None:
        assert sum(n for _key, n, _value in a.excluded_by) == a.excluded
        assert all(value == fields.get(key) for key, _n, value in a.excluded_by)
    else:
        assert a.excluded_by == ()
