"""The driver: after timers, unhold_after, cancellation, one rule per episode,
and a reload that swaps the engine but keeps the agenda (timers, cooldowns)."""

from __future__ import annotations

from pathlib import Path

from holdd.config.rulefiles import load_rules
from holdd.core.calls import CallTable
from holdd.core.events import decode
from holdd.core.rules import RuleEngine
from holdd.core.rules.driver import (
    Agenda,
    Cancelled,
    Effect,
    Hold,
    NoHold,
    Pending,
    RuleDriver,
    TimerKind,
    Unhold,
)

RULES = """
[[rule]]
name = "wait"
after = "10s"
[rule.match]
virtual_phone_number = "74950000002"
[rule.hold]
media = "2040"
[rule.then]
unhold_after = "30s"
[rule.limit]
cooldown = "1h"
"""


def setup(tmp_path: Path, text: str = RULES) -> tuple[CallTable, RuleDriver]:
    path = tmp_path / "r.toml"
    path.write_text(text, encoding="utf-8")
    return CallTable(), RuleDriver(RuleEngine(load_rules([path])))


def notify(
    table: CallTable, driver: RuleDriver, now: float, name: str, csid: int = 1
) -> list[Effect]:
    raw = (
        f'{{"call_session_id": {csid}, "notification_name": "{name}", '
        '"virtual_phone_number": "74950000002", "contact_phone_number": "79031234567"}'
    )
    effects: list[Effect] = []
    for n in decode(raw).notifications:
        for change in table.apply(n, now):
            effects += driver.on_change(change, now)
    return effects


def test_after_then_unhold_after(tmp_path: Path) -> None:
    table, driver = setup(tmp_path)
    [pending] = notify(table, driver, 100.0, "Начало разговора")
    assert isinstance(pending, Pending)
    timer = pending.timer
    assert (timer.kind, timer.due_at, timer.rule, timer.episode) == (
        TimerKind.AFTER,
        110.0,
        "wait",
        1,
    )
    assert driver.agenda.timers == {timer.key: timer}
    # A real loop may wake a hair early: the due time is used then.
    [hold] = driver.on_timer(timer, table.get(1), 109.9999)
    assert isinstance(hold, Hold) and hold.at == 110.0 and hold.decision.rule.name == "wait"
    table.held(1, 110.0)
    unhold_timer = driver.commit(table.get(1), hold.decision, 110.0)  # type: ignore[arg-type]
    assert unhold_timer is not None and unhold_timer.due_at == 140.0
    assert driver.agenda.cooldowns.last_fired("wait", "79031234567") == 110.0
    [unhold] = driver.on_timer(unhold_timer, table.get(1), 140.0)
    assert isinstance(unhold, Unhold)
    assert driver.agenda.timers == {}


def test_leaving_talk_cancels_and_a_stale_timer_does_nothing(tmp_path: Path) -> None:
    table, driver = setup(tmp_path)
    [pending] = notify(table, driver, 100.0, "Начало разговора")
    assert isinstance(pending, Pending)
    [cancelled] = notify(table, driver, 105.0, "Окончание разговора")
    assert isinstance(cancelled, Cancelled) and cancelled.reason == "talk_left"
    # The shell's timer fires anyway (it lost the race): nothing happens.
    assert driver.on_timer(pending.timer, table.get(1), 110.0) == []
    # A new Talk episode counts from its own start.
    [again] = notify(table, driver, 200.0, "Начало разговора")
    assert isinstance(again, Pending) and again.timer.due_at == 210.0 and again.timer.episode == 2


def test_one_rule_per_episode_and_the_cooldown_across_calls(tmp_path: Path) -> None:
    table, driver = setup(tmp_path)
    [pending] = notify(table, driver, 0.0, "Начало разговора")
    assert isinstance(pending, Pending)
    [hold] = driver.on_timer(pending.timer, table.get(1), 10.0)
    assert isinstance(hold, Hold)
    driver.commit(table.get(1), hold.decision, 10.0)  # type: ignore[arg-type]
    notify(table, driver, 60.0, "Завершение звонка")
    assert driver.agenda.timers == {}  # the unhold died with the call
    # The same caller 10 minutes later: the cooldown holds the rule back.
    [nothing] = notify(table, driver, 600.0, "Начало разговора", csid=2)
    assert isinstance(nothing, NoHold)
    assert nothing.evaluation.trace[0].failed_key == "cooldown"


def test_a_reload_keeps_the_agenda(tmp_path: Path) -> None:
    table, driver = setup(tmp_path)
    [pending] = notify(table, driver, 0.0, "Начало разговора")
    assert isinstance(pending, Pending)
    kept: Agenda = driver.agenda
    # The operator renames the rule and shortens `after`; SIGHUP swaps the engine.
    path = tmp_path / "r.toml"
    path.write_text(RULES.replace('"wait"', '"wait-v2"').replace('"10s"', '"5s"'))
    driver.engine = RuleEngine(load_rules([path]))
    assert driver.agenda is kept and pending.timer.key in kept.timers
    # The timer fires at its old time; the rules are evaluated afresh.
    [hold] = driver.on_timer(pending.timer, table.get(1), 10.0)
    assert isinstance(hold, Hold) and hold.decision.rule.name == "wait-v2"


def test_a_pending_rule_that_no_longer_matches_at_due_time(tmp_path: Path) -> None:
    rules = RULES + (
        '\n[[rule]]\nname = "fallback"\npriority = -1\n[rule.match]\n'
        'contact_phone_number = "7903*"\n[rule.hold]\nmedia = "1"\n'
    )
    table, driver = setup(tmp_path, rules)
    [pending] = notify(table, driver, 0.0, "Начало разговора")
    assert isinstance(pending, Pending) and pending.timer.rule == "wait"
    driver.agenda.cooldowns.record_cooldown("wait", "79031234567", 5.0)
    # At due time "wait" is cooling down: the next rule acts instead.
    [hold] = driver.on_timer(pending.timer, table.get(1), 10.0)
    assert isinstance(hold, Hold) and hold.decision.rule.name == "fallback"
