"""One hold's (and one unhold's) retries as a pure state machine
(core/hold_policy.py): every rule of its module docstring, driven by hand
with injected delays and `now` as a plain number."""

from __future__ import annotations

from collections.abc import Iterator

from holdd.core.hold_policy import (
    Answered,
    Done,
    HoldPolicy,
    Listed,
    LookUp,
    Reply,
    Result,
    Send,
    Sleep,
    Step,
    UnholdPolicy,
    Verdict,
)
from holdd.core.states import CallState


def delays(*values: float) -> Iterator[float]:
    return iter(values)


def policy(deadline: float = 10.0, *values: float) -> HoldPolicy:
    return HoldPolicy(deadline, delays(*(values or (0.1, 0.2, 0.4, 0.8))))


def done(step: Step) -> Verdict:
    assert isinstance(step, Done), step
    return step.verdict


OK = Answered(Reply.OK, request_id="req-1")
TIMEOUT = Answered(Reply.UNKNOWN, reason="timeout")
INVALID = Answered(
    Reply.INVALID_STATE,
    mnemonic="invalid_state",
    error={"code": -32008, "mnemonic": "invalid_state"},
)
INTERNAL = Answered(Reply.SERVER_FAULT, mnemonic="internal_error")


# -- success and plain retries ---------------------------------------------------


def test_success_is_held_at_the_first_attempt() -> None:
    p = policy()
    assert p.start() == Send(1)
    v = done(p.sent(OK, 0.0))
    assert (v.result, v.attempts, v.request_id, v.confirmed_by) == (
        Result.HELD,
        1,
        "req-1",
        None,
    )


def test_internal_error_is_sent_again_after_each_injected_delay() -> None:
    p = HoldPolicy(10.0, delays(0.1, 0.2, 0.4))
    assert p.start() == Send(1)
    assert p.sent(INTERNAL, 0.0) == Sleep(0.1, "internal_error", 1, "hold.call")
    assert p.resume() == Send(2)
    assert p.sent(INTERNAL, 0.1) == Sleep(0.2, "internal_error", 2, "hold.call")
    assert p.resume() == Send(3)
    assert p.sent(INTERNAL, 0.3) == Sleep(0.4, "internal_error", 3, "hold.call")
    assert p.resume() == Send(4)
    v = done(p.sent(OK, 0.7))
    assert (v.result, v.attempts, v.confirmed_by) == (Result.HELD, 4, None)


def test_not_sent_is_retried_without_a_look_up_and_not_counted() -> None:
    p = policy()
    assert p.start() == Send(1)
    step = p.sent(Answered(Reply.NOT_SENT, reason="connect"), 0.0)
    # Provably never sent: no list.calls, and the attempt does not count.
    assert step == Sleep(0.1, "connect", 0, "hold.call")
    assert p.resume() == Send(1)
    step = p.sent(Answered(Reply.NOT_SENT, reason="connect"), 0.1)
    assert step == Sleep(0.2, "connect", 0, "hold.call")
    assert p.resume() == Send(1)
    v = done(p.sent(OK, 0.3))
    assert (v.result, v.attempts) == (Result.HELD, 1)


def test_limit_exceeded_sends_again_at_once() -> None:
    p = policy()
    p.start()
    # The client itself waited for the reset: no Sleep here.
    assert p.sent(Answered(Reply.LIMIT, mnemonic="limit_exceeded"), 0.0) == Send(2)
    assert done(p.sent(OK, 5.0)).result is Result.HELD


def test_rate_wait_is_rate_limited() -> None:
    p = policy()
    p.start()
    v = done(p.sent(Answered(Reply.RATE_WAIT), 0.0))
    assert (v.result, v.mnemonic, v.reason, v.attempts) == (
        Result.RATE_LIMITED,
        "limit_exceeded",
        "rate_limited",
        0,
    )


# -- an unknown outcome: look the call up before sending again --------------------


def unknown_then_look_up(p: HoldPolicy) -> None:
    assert p.start() == Send(1)
    assert p.sent(TIMEOUT, 0.0) == Sleep(0.1, "timeout", 1, "list.calls")
    assert p.resume() == LookUp()


def test_unknown_outcome_then_listed_on_hold_is_held_by_list_calls() -> None:
    p = policy()
    unknown_then_look_up(p)
    v = done(p.looked_up(Listed(CallState.HOLD), 0.2))
    assert (v.result, v.confirmed_by, v.attempts) == (Result.HELD, "list_calls", 1)


def test_unknown_outcome_then_not_listed_is_call_gone() -> None:
    p = policy()
    unknown_then_look_up(p)
    v = done(p.looked_up(Listed(None), 0.2))
    assert (v.result, v.confirmed_by) == (Result.CALL_GONE, "list_calls")


def test_unknown_outcome_then_still_talking_sends_again() -> None:
    p = policy()
    unknown_then_look_up(p)
    assert p.looked_up(Listed(CallState.TALK), 0.2) == Send(2)
    v = done(p.sent(OK, 0.3))
    assert (v.result, v.attempts, v.confirmed_by) == (Result.HELD, 2, None)


def test_unknown_outcome_then_a_state_not_known_counts_as_talking() -> None:
    p = policy()
    unknown_then_look_up(p)
    assert p.looked_up(Listed(CallState.POST_TALK, state_known=False), 0.2) == Send(2)


def test_unknown_outcome_then_another_state_is_not_in_talk() -> None:
    p = policy()
    unknown_then_look_up(p)
    v = done(p.looked_up(Listed(CallState.POST_TALK), 0.2))
    assert (v.result, v.call_state) == (Result.NOT_IN_TALK, CallState.POST_TALK)


def test_a_failed_look_up_is_tried_again_then_unknown_at_the_deadline() -> None:
    p = HoldPolicy(1.0, delays(0.1, 0.2, 5.0))
    unknown_then_look_up(p)
    lost = Answered(Reply.UNKNOWN, reason="timeout")
    assert p.looked_up(lost, 0.2) == Sleep(0.2, "timeout", 1, "list.calls")
    assert p.resume() == LookUp()
    v = done(p.looked_up(lost, 0.5))
    assert (v.result, v.reason) == (Result.UNKNOWN, "timeout")


def test_invalid_state_after_an_unknown_outcome_is_held() -> None:
    p = policy()
    unknown_then_look_up(p)
    assert p.looked_up(Listed(CallState.TALK), 0.2) == Send(2)
    # A held call refuses a second hold: the lost first attempt took.
    v = done(p.sent(INVALID, 0.3))
    assert (v.result, v.confirmed_by, v.attempts) == (Result.HELD, "invalid_state", 2)


def test_rate_wait_after_an_unknown_outcome_is_unknown() -> None:
    p = policy()
    unknown_then_look_up(p)
    assert p.looked_up(Listed(CallState.TALK), 0.2) == Send(2)
    v = done(p.sent(Answered(Reply.RATE_WAIT), 0.3))
    assert (v.result, v.mnemonic, v.attempts) == (Result.UNKNOWN, "limit_exceeded", 1)


# -- invalid_state first: looked at once, never a loop ----------------------------


def test_first_invalid_state_looks_once_then_sends_once_more_then_fails() -> None:
    p = policy()
    assert p.start() == Send(1)
    assert p.sent(INVALID, 0.0) == LookUp()
    # Notifications ran ahead of the API: the call is talking after all.
    step = p.looked_up(Listed(CallState.TALK), 0.1)
    assert step == Sleep(0.1, "invalid_state_but_talking", 1, "hold.call")
    assert p.resume() == Send(2)
    v = done(p.sent(INVALID, 0.3))
    assert (v.result, v.attempts, v.invalid_state, v.mnemonic) == (
        Result.FAILED,
        2,
        True,
        "invalid_state",
    )
    assert v.error == {"code": -32008, "mnemonic": "invalid_state"}


def test_first_invalid_state_and_the_call_left_talk_fails_at_once() -> None:
    p = policy()
    p.start()
    assert p.sent(INVALID, 0.0) == LookUp()
    v = done(p.looked_up(Listed(CallState.POST_TALK), 0.1))
    assert (v.result, v.call_state, v.invalid_state, v.attempts) == (
        Result.FAILED,
        CallState.POST_TALK,
        True,
        1,
    )


def test_first_invalid_state_and_the_call_not_listed_is_gone() -> None:
    p = policy()
    p.start()
    assert p.sent(INVALID, 0.0) == LookUp()
    assert done(p.looked_up(Listed(None), 0.1)).result is Result.CALL_GONE


def test_first_invalid_state_and_the_look_up_fails_is_failed() -> None:
    p = policy()
    p.start()
    assert p.sent(INVALID, 0.0) == LookUp()
    v = done(p.looked_up(Answered(Reply.UNKNOWN, reason="timeout"), 0.1))
    assert (v.result, v.mnemonic) == (Result.FAILED, "invalid_state")


# -- the deadline ----------------------------------------------------------------


def test_internal_error_past_the_deadline_fails() -> None:
    p = HoldPolicy(1.0, delays(0.1, 5.0))
    p.start()
    assert isinstance(p.sent(INTERNAL, 0.0), Sleep)
    assert p.resume() == Send(2)
    v = done(p.sent(INTERNAL, 0.5))
    assert (v.result, v.mnemonic, v.attempts) == (Result.FAILED, "internal_error", 2)


def test_internal_error_past_the_deadline_after_an_unknown_outcome_is_unknown() -> None:
    p = HoldPolicy(1.0, delays(0.1, 5.0))
    unknown_then_look_up(p)
    assert p.looked_up(Listed(CallState.TALK), 0.2) == Send(2)
    v = done(p.sent(INTERNAL, 0.3))
    assert (v.result, v.mnemonic) == (Result.UNKNOWN, "internal_error")


def test_unknown_outcome_past_the_deadline_is_unknown_without_a_look_up() -> None:
    p = HoldPolicy(1.0, delays(5.0))
    p.start()
    v = done(p.sent(TIMEOUT, 0.0))
    assert (v.result, v.reason, v.attempts) == (Result.UNKNOWN, "timeout", 1)


def test_not_sent_past_the_deadline_fails() -> None:
    p = HoldPolicy(1.0, delays(5.0))
    p.start()
    v = done(p.sent(Answered(Reply.NOT_SENT, reason="connect"), 0.0))
    assert (v.result, v.reason, v.attempts) == (Result.FAILED, "connect", 0)


def test_invalid_state_but_talking_past_the_deadline_fails() -> None:
    p = HoldPolicy(1.0, delays(5.0))
    p.start()
    assert p.sent(INVALID, 0.0) == LookUp()
    v = done(p.looked_up(Listed(CallState.TALK), 0.5))
    assert (v.result, v.invalid_state, v.call_state) == (Result.FAILED, True, CallState.TALK)


# -- answers that end it at once ---------------------------------------------------


def test_refused_carries_the_rule_problem_and_is_never_retried() -> None:
    p = policy()
    p.start()
    error = {"code": -32602, "mnemonic": "media_file_not_found"}
    answer = Answered(
        Reply.REFUSED, mnemonic="media_file_not_found", error=error, rule_problem=True
    )
    v = done(p.sent(answer, 0.0))
    assert (v.result, v.mnemonic, v.rule_problem, v.error, v.attempts, v.invalid_state) == (
        Result.FAILED,
        "media_file_not_found",
        True,
        error,
        1,
        False,
    )


def test_call_session_not_found_is_call_gone() -> None:
    p = policy()
    p.start()
    v = done(p.sent(Answered(Reply.GONE, mnemonic="call_session_not_found"), 0.0))
    assert (v.result, v.mnemonic) == (Result.CALL_GONE, "call_session_not_found")


def test_success_not_true_fails_with_the_answer() -> None:
    p = policy()
    p.start()
    v = done(p.sent(Answered(Reply.NOT_TRUE, data={"success": False}), 0.0))
    assert (v.result, v.reason, v.data) == (Result.FAILED, "success_not_true", {"success": False})


def test_a_protocol_error_is_not_retried() -> None:
    p = policy()
    p.start()
    v = done(p.sent(Answered(Reply.PROTOCOL, reason="not_json_rpc"), 0.0))
    assert (v.result, v.reason) == (Result.FAILED, "not_json_rpc")


# -- unhold ----------------------------------------------------------------------


def unhold(deadline: float = 10.0, *values: float) -> UnholdPolicy:
    return UnholdPolicy(deadline, delays(*(values or (0.1, 0.2, 0.4))))


def test_unhold_ok_is_unheld() -> None:
    p = unhold()
    assert p.start() == Send(1)
    assert done(p.sent(Answered(Reply.OK), 0.0)) == Verdict(Result.UNHELD, attempts=1)


def test_unhold_invalid_state_is_not_on_hold() -> None:
    p = unhold()
    p.start()
    assert done(p.sent(INVALID, 0.0)).result is Result.NOT_ON_HOLD


def test_unhold_gone_is_call_gone() -> None:
    p = unhold()
    p.start()
    gone = Answered(Reply.GONE, mnemonic="call_session_not_found")
    assert done(p.sent(gone, 0.0)).result is Result.CALL_GONE


def test_unhold_transient_is_retried_then_fails_at_the_deadline() -> None:
    p = UnholdPolicy(1.0, delays(0.1, 0.2, 5.0))
    assert p.start() == Send(1)
    # unhold.call is safe to repeat: an unknown outcome is simply sent again.
    assert p.sent(TIMEOUT, 0.0) == Sleep(0.1, "timeout", 1, "unhold.call")
    assert p.resume() == Send(2)
    assert p.sent(INTERNAL, 0.1) == Sleep(0.2, "internal_error", 2, "unhold.call")
    assert p.resume() == Send(3)
    v = done(p.sent(TIMEOUT, 0.3))
    assert (v.result, v.reason, v.attempts) == (Result.FAILED, "timeout", 3)


def test_unhold_refused_fails_with_the_error() -> None:
    p = unhold()
    p.start()
    error = {"code": -32602, "mnemonic": "invalid_parameter"}
    answer = Answered(Reply.REFUSED, mnemonic="invalid_parameter", error=error)
    v = done(p.sent(answer, 0.0))
    assert (v.result, v.mnemonic, v.error) == (Result.FAILED, "invalid_parameter", error)


def test_invalid_state_after_retries_and_the_call_on_hold_is_held() -> None:
    # An earlier attempt answered with an error yet applied is the only
    # likely holder.
    p = policy()
    p.start()
    assert isinstance(p.sent(INTERNAL, 0.0), Sleep)
    assert p.resume() == Send(2)
    assert p.sent(INVALID, 0.1) == LookUp()
    v = done(p.looked_up(Listed(CallState.HOLD), 0.2))
    assert (v.result, v.confirmed_by, v.attempts) == (Result.HELD, "list_calls", 2)


def test_first_invalid_state_and_the_call_already_on_hold_fails() -> None:
    # Only our own earlier attempt can explain a hold; at the first attempt
    # there was none, so it is somebody else's hold.
    p = policy()
    p.start()
    assert p.sent(INVALID, 0.0) == LookUp()
    v = done(p.looked_up(Listed(CallState.HOLD), 0.1))
    assert (v.result, v.call_state) == (Result.FAILED, CallState.HOLD)
