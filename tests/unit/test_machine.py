"""The machine (core/machine.py): inputs in, `Commands` out, with `now` as a
plain number; no loop, no store, no sockets (docs/architecture.md)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TypeVar

import pytest

from holdd.config.rulefiles import load_rules
from holdd.core.calls import Call
from holdd.core.commands import Arm, Commands, Disarm, LogRecord, Metric, SendHold, SendUnhold
from holdd.core.events import DEFAULT_EVENT_NAMES, decode
from holdd.core.hold_policy import Result, Verdict
from holdd.core.machine import Machine
from holdd.core.records import (
    AddTrace,
    Adopted,
    CallRecord,
    Claim,
    DeleteCall,
    DropTimer,
    FinishClaim,
    PutClaim,
    PutTimer,
    RecordCooldown,
    ReleaseClaim,
    Restored,
    SaveCall,
    StoreOp,
)
from holdd.core.rules.driver import Hold, Timer, TimerKind, Unhold
from holdd.core.rules.engine import Decision
from holdd.core.rules.model import RuleSet
from holdd.core.states import CallState
from holdd.core.virtual import VirtualRun

RULES = """
[[rule]]
name = "vip"
[rule.match]
virtual_phone_number = "74950000001"
[rule.hold]
media = "2034"
[rule.then]
unhold_after = "30s"

[[rule]]
name = "wait"
after = "10s"
[rule.match]
virtual_phone_number = "74950000002"
[rule.hold]
media = "2040"

[[rule]]
name = "quiet"
mode = "shadow"
[rule.match]
virtual_phone_number = "74950000003"
[rule.hold]
media = "2050"
"""

VIP, WAIT, QUIET = "74950000001", "74950000002", "74950000003"
TALK_STARTED, TALK_FINISHED, CALL_FINISHED = (
    "Начало разговора",
    "Окончание разговора",
    "Завершение звонка",
)


Op = TypeVar("Op", bound=StoreOp)


@dataclass(frozen=True, slots=True)
class Listed:
    """One `list.calls` entry as `Machine.snapshot` reads it."""

    call_session_id: int
    state: CallState
    fields: Mapping[str, str | int | None] = field(default_factory=dict)


def rules(tmp_path: Path, text: str = RULES) -> RuleSet:
    path = tmp_path / "r.toml"
    path.write_text(text, encoding="utf-8")
    return load_rules([path])


def machine(tmp_path: Path, text: str = RULES) -> Machine:
    return Machine(rules(tmp_path, text), DEFAULT_EVENT_NAMES, debug=True)


def raw(csid: int, name: str, vpn: str = VIP) -> str:
    return json.dumps(
        {
            "call_session_id": csid,
            "notification_name": name,
            "virtual_phone_number": vpn,
            "contact_phone_number": "79031234567",
        },
        ensure_ascii=False,
    )


def feed(m: Machine, csid: int, name: str, now: float, vpn: str = VIP) -> Commands:
    return m.notifications(decode(raw(csid, name, vpn)), "ws", now)


def events(out: Commands) -> list[str]:
    return [r.event for r in out.logs]


def log(out: Commands, event: str) -> LogRecord:
    [record] = [r for r in out.logs if r.event == event]
    return record


def ops(out: Commands, kind: type[Op]) -> list[Op]:
    return [op for op in out.persist if isinstance(op, kind)]


def only_hold(out: Commands) -> Decision:
    [send] = out.sends
    assert isinstance(send, SendHold)
    return send.decision


def held(m: Machine, decision: Decision, now: float) -> Commands:
    return m.hold_settled(decision, Verdict(Result.HELD, attempts=1, request_id="r1"), now)


# -- talk started, claimed, sent ---------------------------------------------------


def test_talk_started_claims_and_sends_one_hold(tmp_path: Path) -> None:
    m = machine(tmp_path)
    out = feed(m, 1, TALK_STARTED, 100.0)
    decision = only_hold(out)
    assert (decision.call_session_id, decision.rule.name, decision.episode) == (1, "vip", 1)
    assert (decision.message.type, decision.message.value) == ("media", "2034")
    # The claim is in the same transaction as the call and its traces.
    [put] = ops(out, PutClaim)
    assert put.claim == Claim(1, "vip", "hold", 100.0)
    [save] = ops(out, SaveCall)
    assert (save.record.call_session_id, save.record.state) == (1, CallState.TALK)
    assert {op.entry.kind.value for op in ops(out, AddTrace)} == {"event", "evaluation"}
    assert "call_talk_started" in events(out) and "rule_matched" in events(out)
    assert log(out, "call_talk_started").fields["source"] == "notification"
    assert log(out, "rule_matched").fields["rule"] == "vip"
    assert Metric("rule_matched", ("vip",)) in out.metrics


def test_a_duplicate_talk_started_sends_nothing_more(tmp_path: Path) -> None:
    m = machine(tmp_path)
    assert len(feed(m, 1, TALK_STARTED, 100.0).sends) == 1
    again = feed(m, 1, TALK_STARTED, 100.5)
    assert again.sends == [] and ops(again, PutClaim) == []
    assert "call_talk_started" not in events(again)


def test_no_rule_matched_sends_nothing(tmp_path: Path) -> None:
    m = machine(tmp_path)
    out = feed(m, 1, TALK_STARTED, 100.0, vpn="74959999999")
    assert out.sends == [] and ops(out, PutClaim) == []
    assert "no_rule_matched" in events(out)


def info_lines(*outs: Commands) -> list[LogRecord]:
    return [r for out in outs for r in out.logs if r.level != "debug"]


def test_at_info_a_held_call_is_one_line_carrying_the_decision(tmp_path: Path) -> None:
    """A call's changes and its rule decision are debug lines; at info a held
    call reads as its `hold_sent` alone, from Talk to the end of the call."""
    m = Machine(rules(tmp_path), DEFAULT_EVENT_NAMES)
    talk = feed(m, 1, TALK_STARTED, 100.0)
    settled = held(m, only_hold(talk), 100.1)
    finished = feed(m, 1, TALK_FINISHED, 110.0)
    ended = feed(m, 1, CALL_FINISHED, 111.0)
    [line] = info_lines(talk, settled, finished, ended)
    assert (line.level, line.event) == ("info", "hold_sent")
    assert line.fields == {
        "call_session_id": 1,
        "rule": "vip",
        "request_id": "r1",
        "message_type": "media",
        "message_value": "2034",
        "episode": 1,
        "attempts": 1,
    }
    # Nothing of the debug lines is even made: the machine skips them.
    assert [r.event for r in talk.logs + finished.logs + ended.logs] == []
    # The decision is still counted and traced for `holdd explain`.
    assert Metric("rule_matched", ("vip",)) in talk.metrics
    assert {op.entry.kind.value for op in ops(talk, AddTrace)} == {"event", "evaluation"}


def test_at_info_a_call_no_rule_matches_or_that_waits_logs_nothing(tmp_path: Path) -> None:
    m = Machine(rules(tmp_path), DEFAULT_EVENT_NAMES)
    # Not even debug records are made.
    assert feed(m, 1, TALK_STARTED, 100.0, vpn="74959999999").logs == []
    waiting = feed(m, 2, TALK_STARTED, 100.0, vpn=WAIT)
    assert waiting.sends == [] and len(waiting.timers) == 1
    assert waiting.logs == [] and feed(m, 2, CALL_FINISHED, 105.0).logs == []


def test_a_decision_line_counts_the_rules_and_carries_no_trace(tmp_path: Path) -> None:
    """The trace of every rule tried is stored for `holdd explain`; the log
    line names the rule and counts, so its size does not grow with the rules."""
    m = machine(tmp_path)
    matched = log(feed(m, 1, TALK_STARTED, 100.0), "rule_matched")
    assert matched.level == "debug"
    assert matched.fields == {
        "call_session_id": 1,
        "rule": "vip",
        "mode": "live",
        "tried": 1,
        "ruled_out": 2,
    }
    none = feed(m, 2, TALK_STARTED, 100.0, vpn="74959999999")
    assert log(none, "no_rule_matched").fields == {
        "call_session_id": 2,
        "tried": 0,
        "ruled_out": 3,
    }
    # The stored trace is as compact: the rules tried (none: the index ruled
    # every rule out by its number), the others counted by the key that
    # ruled them out, with the call's value.
    [evaluation] = [op.entry for op in ops(none, AddTrace) if op.entry.kind.value == "evaluation"]
    assert evaluation.payload == {
        "error": None,
        "rule": None,
        "trace": [],
        "ruled_out": 3,
        "ruled_out_by": {"virtual_phone_number": {"rules": 3, "actual": "74959999999"}},
    }


def test_a_rule_that_cannot_act_is_an_error_line_at_any_level(tmp_path: Path) -> None:
    text = '[[rule]]\nname = "long"\n[rule.hold]\ntts = "{virtual_phone_number}' + "x" * 495 + '"\n'
    m = Machine(rules(tmp_path, text), DEFAULT_EVENT_NAMES)
    out = feed(m, 1, TALK_STARTED, 100.0)
    assert out.sends == []
    [line] = info_lines(out)
    assert (line.level, line.event, line.fields["rule"]) == ("error", "hold_skipped", "long")
    assert "tts_max_length" in str(line.fields["reason"])


# -- settled, unhold_after, unhold -------------------------------------------------


def test_held_finishes_the_claim_and_arms_unhold_after(tmp_path: Path) -> None:
    m = machine(tmp_path)
    decision = only_hold(feed(m, 1, TALK_STARTED, 100.0))
    out = held(m, decision, 101.0)
    assert FinishClaim((1, "vip", "hold"), "held", 101.0) in out.persist
    call = m.table.get(1)
    assert call is not None and call.state is CallState.HOLD
    record = log(out, "hold_sent")
    assert (record.fields["call_session_id"], record.fields["rule"]) == (1, "vip")
    assert record.fields["request_id"] == "r1"
    assert Metric("action", ("hold", "held", "")) in out.metrics
    timer = Timer(TimerKind.UNHOLD, 1, "vip", 131.0, 1)
    assert PutTimer(timer) in out.persist
    assert out.timers == [Arm(timer)]
    assert out.sends == []
    assert m.outcomes[1].result == "held"

    due = m.timer_due(timer, 131.0)
    assert due.sends == [SendUnhold(1, "vip", 1)]
    assert DropTimer(TimerKind.UNHOLD, 1) in due.persist
    [put] = ops(due, PutClaim)
    assert put.claim.key == (1, "vip", "unhold")

    done = m.unhold_settled(1, "vip", Verdict(Result.UNHELD, attempts=1), 131.5)
    assert FinishClaim((1, "vip", "unhold"), "unheld", 131.5) in done.persist
    assert "unhold_sent" in events(done)
    assert Metric("action", ("unhold", "unheld", "")) in done.metrics
    assert m.table.counts() == {CallState.TALK: 1}  # back in the same Talk episode


def test_a_rule_without_unhold_after_arms_nothing(tmp_path: Path) -> None:
    m = machine(tmp_path)
    [pending] = [t.timer for t in feed(m, 2, TALK_STARTED, 0.0, WAIT).timers]
    decision = only_hold(m.timer_due(pending, 10.0))
    out = held(m, decision, 10.5)
    assert out.timers == [] and ops(out, PutTimer) == []


def test_a_stale_timer_yields_nothing(tmp_path: Path) -> None:
    m = machine(tmp_path)
    held(m, only_hold(feed(m, 1, TALK_STARTED, 100.0)), 101.0)
    timer = Timer(TimerKind.UNHOLD, 1, "vip", 131.0, 1)
    # Replaced (another due time) since it was armed: nothing.
    assert m.timer_due(dataclasses.replace(timer, due_at=120.0), 131.0) == Commands()
    # Cancelled: the call ended.
    ended = feed(m, 1, CALL_FINISHED, 110.0)
    assert Disarm(timer) in ended.timers
    assert m.timer_due(timer, 131.0) == Commands()


def test_an_after_rule_waits_for_its_timer(tmp_path: Path) -> None:
    m = machine(tmp_path)
    out = feed(m, 2, TALK_STARTED, 100.0, WAIT)
    timer = Timer(TimerKind.AFTER, 2, "wait", 110.0, 1)
    assert out.sends == [] and ops(out, PutClaim) == []
    assert PutTimer(timer) in out.persist and out.timers == [Arm(timer)]
    assert log(out, "rule_pending").fields == {
        "call_session_id": 2,
        "rule": "wait",
        "due_in": 10.0,
        "due_at": 110.0,
    }
    due = m.timer_due(timer, 110.0)
    decision = only_hold(due)
    assert (decision.call_session_id, decision.rule.name) == (2, "wait")
    assert DropTimer(TimerKind.AFTER, 2) in due.persist
    assert [op.claim.key for op in ops(due, PutClaim)] == [(2, "wait", "hold")]


def test_a_call_that_ends_first_cancels_the_timer(tmp_path: Path) -> None:
    m = machine(tmp_path)
    [arm] = feed(m, 2, TALK_STARTED, 100.0, WAIT).timers
    timer = arm.timer
    out = feed(m, 2, CALL_FINISHED, 105.0, WAIT)
    assert out.timers == [Disarm(timer)]
    assert DropTimer(TimerKind.AFTER, 2) in out.persist
    assert DeleteCall(2) in out.persist
    record = log(out, "timer_cancelled")
    assert (record.fields["rule"], record.fields["timer"], record.fields["reason"]) == (
        "wait",
        "after",
        "ended",
    )
    assert m.timer_due(timer, 110.0) == Commands()


def test_a_call_that_leaves_talk_first_cancels_the_timer(tmp_path: Path) -> None:
    m = machine(tmp_path)
    [arm] = feed(m, 2, TALK_STARTED, 100.0, WAIT).timers
    out = feed(m, 2, TALK_FINISHED, 105.0, WAIT)
    assert out.timers == [Disarm(arm.timer)]
    assert log(out, "timer_cancelled").fields["reason"] == "talk_left"
    assert m.timer_due(arm.timer, 110.0).sends == []


def test_a_shadow_rule_sends_nothing_and_logs_would_hold(tmp_path: Path) -> None:
    m = machine(tmp_path)
    out = feed(m, 3, TALK_STARTED, 100.0, QUIET)
    assert out.sends == []
    record = log(out, "would_hold")
    assert (record.fields["rule"], record.fields["message_value"]) == ("quiet", "2050")
    key = (3, "quiet", "would_hold")
    assert [op.claim.key for op in ops(out, PutClaim)] == [key]
    assert FinishClaim(key, "shadow", 100.0) in out.persist
    assert Metric("action", ("would_hold", "would_hold", "")) in out.metrics
    assert m.outcomes[3].result == "would_hold"


def test_claim_refused_logs_hold_skipped(tmp_path: Path) -> None:
    m = machine(tmp_path)
    feed(m, 1, TALK_STARTED, 100.0)
    out = m.claim_refused((1, "vip", "hold"), 100.0)
    assert out.sends == [] and out.persist == []
    assert log(out, "hold_skipped").fields == {
        "call_session_id": 1,
        "rule": "vip",
        "reason": "already_claimed",
    }
    # Refused: not open any more, and the call's fired rules refuse it from now on.
    assert (1, "vip", "hold") not in m.claims
    assert m.book.claimed((1, "vip", "hold"))


def test_call_gone_ends_the_call(tmp_path: Path) -> None:
    m = machine(tmp_path)
    decision = only_hold(feed(m, 1, TALK_STARTED, 100.0))
    verdict = Verdict(Result.CALL_GONE, mnemonic="call_session_not_found", attempts=1)
    out = m.hold_settled(decision, verdict, 101.0)
    assert FinishClaim((1, "vip", "hold"), "call_session_not_found", 101.0) in out.persist
    assert log(out, "call_ended").fields["source"] == "callapi"
    assert "hold_call_gone" in events(out)
    assert DeleteCall(1) in out.persist
    assert Metric("action", ("hold", "call_gone", "call_session_not_found")) in out.metrics
    call = m.table.get(1)
    assert call is not None and call.state is CallState.ENDED
    assert out.timers == []


def test_a_hold_that_took_after_the_call_ended_arms_no_unhold(tmp_path: Path) -> None:
    m = machine(tmp_path)
    decision = only_hold(feed(m, 1, TALK_STARTED, 100.0))
    feed(m, 1, CALL_FINISHED, 100.5)
    out = held(m, decision, 101.0)
    assert FinishClaim((1, "vip", "hold"), "held", 101.0) in out.persist
    assert out.timers == [] and ops(out, PutTimer) == []
    assert m.driver.agenda.timers == {}


# -- reload ----------------------------------------------------------------------


def test_reload_keeps_pending_timers(tmp_path: Path) -> None:
    m = machine(tmp_path)
    [arm] = feed(m, 2, TALK_STARTED, 100.0, WAIT).timers
    new_text = RULES.replace('"quiet"', '"quiet-v2"').replace('media = "2034"', 'media = "2035"')
    # The operator edits the same file in place, then SIGHUP.
    out = m.reload(rules(tmp_path, new_text), 105.0)
    record = log(out, "rules_reloaded")
    assert record.fields["added"] == ["quiet-v2"]
    assert record.fields["removed"] == ["quiet"]
    assert record.fields["changed"] == ["vip"]
    assert out.timers == [] and out.sends == []
    assert m.driver.agenda.timers == {arm.timer.key: arm.timer}
    assert only_hold(m.timer_due(arm.timer, 110.0)).rule.name == "wait"


# -- restart: restore, then the first snapshot -------------------------------------


def record(csid: int, vpn: str, talk_started_at: float, state: CallState) -> CallRecord:
    fields = {"virtual_phone_number": vpn, "contact_phone_number": "79031234567"}
    return CallRecord(csid, 1, talk_started_at, state, talk_started_at, fields)


def test_a_restored_hold_claim_found_on_hold_is_held_from_the_claim(tmp_path: Path) -> None:
    m = machine(tmp_path)
    restored = Restored(
        calls=[record(1, VIP, 50.0, CallState.TALK)],
        claims=[Claim(1, "vip", "hold", 60.0)],
    )
    m.restore(restored, 200.0)
    out = m.snapshot([Listed(1, CallState.HOLD)], 200.0, 200.0)
    assert out.sends == []
    assert FinishClaim((1, "vip", "hold"), "held", 200.0) in out.persist
    assert "hold_confirmed_by_list_calls" in events(out)
    assert log(out, "claim_resolved").fields["result"] == "held"
    # unhold_after counts from when the hold was claimed, not from now.
    timer = Timer(TimerKind.UNHOLD, 1, "vip", 90.0, 1)
    assert PutTimer(timer) in out.persist
    assert Arm(timer) in out.timers
    assert m.timer_due(timer, 200.0).sends == [SendUnhold(1, "vip", 1)]


def test_a_restored_hold_claim_found_talking_is_released_and_sent_again(
    tmp_path: Path,
) -> None:
    m = machine(tmp_path)
    restored = Restored(
        calls=[record(1, VIP, 50.0, CallState.TALK)],
        claims=[Claim(1, "vip", "hold", 60.0)],
    )
    m.restore(restored, 200.0)
    out = m.snapshot([Listed(1, CallState.TALK)], 200.0, 200.0)
    assert ReleaseClaim((1, "vip", "hold")) in out.persist
    assert log(out, "claim_released").fields["api_state"] == "TALK"
    decision = only_hold(out)
    assert (decision.call_session_id, decision.rule.name) == (1, "vip")
    assert [op.claim for op in ops(out, PutClaim)] == [Claim(1, "vip", "hold", 200.0)]
    # The release comes before the new claim in the same transaction.
    kinds = [type(op) for op in out.persist]
    assert kinds.index(ReleaseClaim) < kinds.index(PutClaim)


def test_a_restored_after_timer_is_armed_by_the_first_snapshot_only(tmp_path: Path) -> None:
    m = machine(tmp_path)
    timer = Timer(TimerKind.AFTER, 2, "wait", 105.0, 1)
    restored = Restored(calls=[record(2, WAIT, 95.0, CallState.TALK)], timers=[timer])
    out = m.restore(restored, 100.0)
    assert out.timers == [] and out.sends == []
    assert log(out, "state_restored").fields == {"calls": 1, "timers": 1}
    first = m.snapshot([Listed(2, CallState.TALK)], 100.0, 100.0)
    assert first.timers == [Arm(timer)]
    assert first.sends == []
    second = m.snapshot([Listed(2, CallState.TALK)], 101.0, 101.0)
    assert second.timers == []
    assert only_hold(m.timer_due(timer, 105.0)).rule.name == "wait"


def test_a_restored_talking_call_with_nothing_pending_gets_the_rules_once(
    tmp_path: Path,
) -> None:
    m = machine(tmp_path)
    m.restore(Restored(calls=[record(1, VIP, 95.0, CallState.TALK)]), 100.0)
    out = m.snapshot([Listed(1, CallState.TALK)], 100.0, 100.0)
    assert log(out, "call_talk_started").fields["source"] == "recovery"
    decision = only_hold(out)
    assert decision.rule.name == "vip" and decision.episode == 1
    # The next listing finds nothing left to do.
    assert m.snapshot([Listed(1, CallState.TALK)], 101.0, 101.0).sends == []


def test_a_restored_unhold_claim_found_on_hold_is_released_and_sent_now(
    tmp_path: Path,
) -> None:
    m = machine(tmp_path)
    restored = Restored(
        calls=[record(1, VIP, 50.0, CallState.HOLD)],
        claims=[Claim(1, "vip", "hold", 60.0, "held", 60.5), Claim(1, "vip", "unhold", 90.0)],
    )
    m.restore(restored, 200.0)
    out = m.snapshot([Listed(1, CallState.HOLD)], 200.0, 200.0)
    assert ReleaseClaim((1, "vip", "unhold")) in out.persist
    timer = Timer(TimerKind.UNHOLD, 1, "vip", 200.0, 1)
    assert Arm(timer) in out.timers and out.sends == []
    assert m.timer_due(timer, 200.0).sends == [SendUnhold(1, "vip", 1)]


def test_a_restored_unhold_claim_found_talking_took(tmp_path: Path) -> None:
    m = machine(tmp_path)
    restored = Restored(
        calls=[record(1, VIP, 50.0, CallState.HOLD)],
        claims=[Claim(1, "vip", "hold", 60.0, "held", 60.5), Claim(1, "vip", "unhold", 90.0)],
    )
    m.restore(restored, 200.0)
    out = m.snapshot([Listed(1, CallState.TALK)], 200.0, 200.0)
    assert FinishClaim((1, "vip", "unhold"), "unheld", 200.0) in out.persist
    assert out.sends == []
    call = m.table.get(1)
    assert call is not None and call.state is CallState.TALK


def test_a_restored_talking_call_whose_rules_ran_is_left_alone(tmp_path: Path) -> None:
    """Saved with its decision (one transaction): no second look after a restart."""
    m = machine(tmp_path)
    saved = replace(record(1, VIP, 95.0, CallState.TALK), decided_episode=1)
    m.restore(Restored(calls=[saved]), 100.0)
    out = m.snapshot([Listed(1, CallState.TALK)], 100.0, 100.0)
    assert out.sends == [] and "call_talk_started" not in events(out)


def test_a_timer_armed_by_recovery_is_armed_once(tmp_path: Path) -> None:
    m = machine(tmp_path)
    restored = Restored(
        calls=[record(1, VIP, 50.0, CallState.HOLD)],
        claims=[Claim(1, "vip", "hold", 60.0, "held", 60.5), Claim(1, "vip", "unhold", 90.0)],
    )
    m.restore(restored, 200.0)
    out = m.snapshot([Listed(1, CallState.HOLD)], 200.0, 200.0)
    assert len([c for c in out.timers if isinstance(c, Arm)]) == 1


def test_reload_does_not_call_a_rule_changed_because_its_line_moved(tmp_path: Path) -> None:
    m = machine(tmp_path)
    out = m.reload(rules(tmp_path, "# a comment above\n\n" + RULES), 105.0)
    assert log(out, "rules_reloaded").fields["changed"] == []


def test_a_restored_timer_of_an_unknown_call_is_dropped(tmp_path: Path) -> None:
    m = machine(tmp_path)
    timer = Timer(TimerKind.AFTER, 9, "wait", 105.0, 1)
    out = m.restore(Restored(timers=[timer]), 100.0)
    assert out.persist == [DropTimer(TimerKind.AFTER, 9)]
    assert m.snapshot([], 100.0, 100.0).timers == []


# -- what the machine cannot use, and forgetting -----------------------------------


def test_unknown_names_are_logged_once_and_counted_each_time(tmp_path: Path) -> None:
    m = machine(tmp_path)
    first = feed(m, 1, "Bogus", 1.0)
    second = feed(m, 2, "Bogus", 2.0)
    other = feed(m, 3, "Другое", 3.0)
    assert log(first, "notification_name_unknown").fields["name"] == "Bogus"
    assert "notification_name_unknown" not in events(second)
    assert log(other, "notification_name_unknown").fields["name"] == "Другое"
    assert Metric("unknown_name", ("Bogus",)) in first.metrics
    assert Metric("unknown_name", ("Bogus",)) in second.metrics
    assert Metric("unknown_name", ("Другое",)) in other.metrics
    assert [o.sends for o in (first, second, other)] == [[], [], []]


def test_sweep_forgets_the_claims_and_outcomes_of_swept_calls(tmp_path: Path) -> None:
    m = machine(tmp_path)
    held(m, only_hold(feed(m, 1, TALK_STARTED, 0.0)), 1.0)
    only_hold(feed(m, 4, TALK_STARTED, 5.0))
    feed(m, 1, CALL_FINISHED, 10.0)
    # A finished hold claim lives on as the rule in the call's `fired`.
    assert m.book.claimed((1, "vip", "hold")) and 1 in m.outcomes
    assert m.sweep(300.0) == []
    assert m.sweep(610.0) == [1]
    assert m.table.get(1) is None
    assert [k for k in m.claims if k[0] == 1] == []
    assert not m.book.claimed((1, "vip", "hold"))  # the store's unique key refuses it now
    assert 1 not in m.outcomes and 1 not in m.evaluations
    assert (4, "vip", "hold") in m.claims  # a call still talking is kept


# -- the virtual run is the machine ------------------------------------------------


TIMELINE = [
    (0.0, 1, TALK_STARTED, VIP),
    (5.0, 2, TALK_STARTED, WAIT),
    (6.0, 3, TALK_STARTED, WAIT),
    (8.0, 3, CALL_FINISHED, WAIT),
    (12.0, 4, TALK_STARTED, QUIET),
    (20.0, 2, CALL_FINISHED, WAIT),
]


def test_virtual_run_holds_what_the_machine_driven_by_hand_holds(tmp_path: Path) -> None:
    ruleset = rules(tmp_path)
    run = VirtualRun(ruleset)
    for at, csid, name, vpn in TIMELINE:
        run.feed(raw(csid, name, vpn), at)
    run.finish()
    virtual = [
        (h.at, h.call_session_id, h.effect.decision.rule.name)
        for h in run.happened
        if isinstance(h.effect, Hold)
    ]

    # By hand: every send answered "success" at once; the only timers that
    # come due are call 2's `after` at 15 and call 1's unhold at 30.
    m = Machine(ruleset, DEFAULT_EVENT_NAMES)
    sent: list[tuple[float, int, str]] = []
    unholds: list[tuple[float, int]] = []
    armed: list[Timer] = []

    def carry_out(out: Commands, now: float) -> None:
        armed.extend(t.timer for t in out.timers if isinstance(t, Arm))
        for send in out.sends:
            if isinstance(send, SendHold):
                sent.append((now, send.decision.call_session_id, send.decision.rule.name))
                carry_out(held(m, send.decision, now), now)
            else:
                unholds.append((now, send.call_session_id))
                unheld = Verdict(Result.UNHELD, attempts=1)
                carry_out(m.unhold_settled(send.call_session_id, send.rule, unheld, now), now)

    def fire(kind: TimerKind, csid: int) -> None:
        [timer] = [t for t in armed if t.key == (kind, csid)]
        carry_out(m.timer_due(timer, timer.due_at), timer.due_at)

    for at, csid, name, vpn in TIMELINE[:5]:
        carry_out(feed(m, csid, name, at, vpn), at)
    fire(TimerKind.AFTER, 2)
    carry_out(feed(m, 2, CALL_FINISHED, 20.0, WAIT), 20.0)
    fire(TimerKind.UNHOLD, 1)

    assert sent == [(0.0, 1, "vip"), (15.0, 2, "wait")]
    # The shadow rule's Hold effect is logged as would_hold, never sent.
    assert virtual == [(0.0, 1, "vip"), (12.0, 4, "quiet"), (15.0, 2, "wait")]
    assert [v for v in virtual if v[2] != "quiet"] == sent
    assert unholds == [(30.0, 1)]
    assert [(h.at, h.call_session_id) for h in run.happened if isinstance(h.effect, Unhold)] == (
        unholds
    )
    assert {csid: o.result for csid, o in run.machine.outcomes.items()} == {
        csid: o.result for csid, o in m.outcomes.items()
    }


@pytest.mark.parametrize("source", ["ws", "webhook"])
def test_the_source_is_logged(tmp_path: Path, source: str) -> None:
    m = machine(tmp_path)
    m.debug = True  # [log] level = "debug"
    out = m.notifications(decode(raw(1, TALK_STARTED)), source, 1.0)
    assert log(out, "notification_received").fields["source"] == source
    m.debug = False  # otherwise not even built
    out = m.notifications(decode(raw(2, TALK_STARTED)), source, 1.0)
    assert "notification_received" not in events(out)


def test_sweep_forgets_cooldowns_older_than_the_longest_cooldown(tmp_path: Path) -> None:
    text = RULES.replace(
        'media = "2034"\n[rule.then]', 'media = "2034"\n[rule.limit]\ncooldown = "1h"\n[rule.then]'
    )
    m = machine(tmp_path, text)
    decision = only_hold(feed(m, 1, TALK_STARTED, 0.0))
    out = held(m, decision, 1.0)
    assert ops(out, RecordCooldown) == [RecordCooldown("vip", decision.contact, 1.0)]
    m.sweep(1800.0)
    assert m.cooldowns.last_fired("vip", decision.contact) == 1.0  # still running
    m.sweep(3602.0)
    assert m.cooldowns.last_fired("vip", decision.contact) is None


# -- several instances (a shared store) ---------------------------------------------

LIMITED = """
[[rule]]
name = "once"
[rule.match]
direction = "in"
[rule.hold]
media = "2034"
[rule.limit]
cooldown = "1h"
"""


def test_a_claim_another_instance_won_starts_its_cooldown_here_too(tmp_path: Path) -> None:
    m = machine(tmp_path, LIMITED)
    first = {
        "call_session_id": 1,
        "notification_name": TALK_STARTED,
        "direction": "in",
        "contact_phone_number": "+7 (903) 123-45-67",
    }
    m.notifications(decode(json.dumps(first, ensure_ascii=False)), "ws", 100.0)
    m.claim_refused((1, "once", "hold"), 100.0)
    # The same caller again, on this instance: the rule is in its cooldown.
    again = {**first, "call_session_id": 2}
    out = m.notifications(decode(json.dumps(again, ensure_ascii=False)), "ws", 130.0)
    assert out.sends == []
    assert m.cooldowns.last_fired("once", "79031234567") == 100.0


def test_cooldowns_other_instances_recorded_apply_here(tmp_path: Path) -> None:
    m = machine(tmp_path, LIMITED)
    m.cooldowns_seen([("once", "79031234567", 90.0)])
    call = {
        "call_session_id": 3,
        "notification_name": TALK_STARTED,
        "direction": "in",
        "contact_phone_number": "79031234567",
    }
    out = m.notifications(decode(json.dumps(call, ensure_ascii=False)), "ws", 100.0)
    assert out.sends == []


def test_adopted_claims_wait_for_a_listing_taken_after_settle_in(tmp_path: Path) -> None:
    """An instance died with a hold in flight: the survivor settles its claim
    like a restart would, but only with a listing taken once the dead one's
    request can no longer land; its unhold timer is armed here."""
    m = machine(tmp_path)
    m.snapshot([], 99.0, 99.0)  # running: the first resync is behind it
    timer = Timer(TimerKind.UNHOLD, 2, "vip", 150.0, 1)
    adopted = Adopted(
        calls=[record(1, VIP, 50.0, CallState.TALK), record(2, VIP, 50.0, CallState.HOLD)],
        claims=[Claim(1, "vip", "hold", 60.0, owner="dead")],
        timers=[timer],
        instances=["dead"],
        settle_in=3.0,
    )
    out = m.adopt(adopted, 100.0)
    assert Arm(timer) in out.timers
    assert log(out, "instance_work_adopted").fields == {
        "instances": ["dead"],
        "claims": 1,
        "timers": 1,
        "settle_in": 3.0,
    }
    # A listing taken before 103 says nothing of the dead one's request.
    early = m.snapshot([Listed(1, CallState.TALK), Listed(2, CallState.HOLD)], 102.0, 102.5)
    assert early.sends == [] and "claim_released" not in events(early)
    assert m.unsettled and m.book.claimed((1, "vip", "hold"))
    # One taken after it: the call still talks, so the hold never took; sent once.
    late = m.snapshot([Listed(1, CallState.TALK), Listed(2, CallState.HOLD)], 103.5, 103.5)
    assert "claim_released" in events(late)
    assert [s.decision.call_session_id for s in late.sends if isinstance(s, SendHold)] == [1]
    assert not m.unsettled
    assert m.timer_due(timer, 150.0).sends == [SendUnhold(2, "vip", 1)]


def test_an_adopted_unhold_timer_goes_out_for_a_call_seen_talking_here(tmp_path: Path) -> None:
    """Both instances heard the Talk; the dead one won the claim and held the
    call, so this one still has it in Talk (and the shared row may say so,
    whoever wrote it last). The dead one's unhold timer proves the hold: it
    goes out when due instead of being cancelled as "not on hold"."""
    m = machine(tmp_path)
    m.snapshot([], 99.0, 99.0)
    feed(m, 1, TALK_STARTED, 100.0)
    m.claim_refused((1, "vip", "hold"), 100.0)
    timer = Timer(TimerKind.UNHOLD, 1, "vip", 130.0, 1)
    adopted = Adopted(
        calls=[record(1, VIP, 100.0, CallState.TALK)],
        claims=[],
        timers=[timer],
        instances=["dead"],
    )
    out = m.adopt(adopted, 131.0)
    assert Arm(timer) in out.timers
    call = m.table.get(1)
    assert call is not None and call.state is CallState.HOLD
    due = m.timer_due(timer, 131.0)
    assert due.sends == [SendUnhold(1, "vip", 1)]
    assert "timer_cancelled" not in events(due)


def test_a_shadow_unhold_timer_proves_no_hold(tmp_path: Path) -> None:
    """A shadow rule's unhold timer is armed though nothing was held."""
    m = machine(tmp_path)
    timer = Timer(TimerKind.UNHOLD, 1, "vip", 130.0, 1, shadow=True)
    m.restore(Restored(calls=[record(1, VIP, 100.0, CallState.TALK)], timers=[timer]), 120.0)
    call = m.table.get(1)
    assert call is not None and call.state is CallState.TALK


def test_a_saved_call_lists_the_rules_that_fired_on_it_in_name_order() -> None:
    """`_save` sorts `fired` only when there are two or more names: the
    record reads the same either way."""
    m = Machine(RuleSet(), DEFAULT_EVENT_NAMES)
    for fired, saved in [((), ()), (("vip",), ("vip",)), (("wait", "vip"), ("vip", "wait"))]:
        out = Commands()
        m._save(Call(1, CallState.TALK, {"direction": "in"}, fired=fired), out)
        [op] = out.persist
        assert isinstance(op, SaveCall)
        assert op.record.fired == saved
        assert type(op.record.fired) is tuple


def test_without_full_traces_the_decisions_and_the_store_are_the_same(tmp_path: Path) -> None:
    """`holdd run` keeps no snapshot for every rule's trace (`holdd test` and
    `holdd simulate` do): what is decided, sent and stored does not change."""
    kept, lean = (
        Machine(rules(tmp_path), DEFAULT_EVENT_NAMES, full_traces=full) for full in (True, False)
    )
    script = [
        (1, TALK_STARTED, VIP),
        (2, TALK_STARTED, "74959999999"),
        (3, TALK_STARTED, WAIT),
        (1, TALK_FINISHED, VIP),
        (3, CALL_FINISHED, WAIT),
    ]
    for csid, name, vpn in script:
        a, b = (feed(m, csid, name, 100.0 + csid, vpn=vpn) for m in (kept, lean))
        assert (a.sends, a.persist, a.timers, a.metrics) == (
            b.sends,
            b.persist,
            b.timers,
            b.metrics,
        )
    full, tried = kept.evaluations[2], lean.evaluations[2]
    assert [t.rule for t in full.trace] == ["vip", "wait", "quiet"]
    assert tried.trace == tried.tried == ()
