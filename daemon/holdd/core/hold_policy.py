"""How one hold (or unhold) is driven to a result, as a pure state machine (core).

The runner (io/runner.py) asks `next()` what to do, does it, and reports what
came back; the policy never touches the network or a clock of its own (`now`
is an argument, monotonic seconds). Steps: `Send` a request, `LookUp` the
call with `list.calls`, `Sleep` before either, or `Done` with a `Verdict`.

The rules (docs/errors.md); every wait is bounded by
the action's deadline:

* success -> held.
* `internal_error`, HTTP 5xx with a JSON-RPC error, a request that was never
  sent: not applied; send again after a backoff.
* an unknown outcome (timeout, dropped connection, HTTP 5xx without an
  answer): `hold.call` is not idempotent, so before sending again the call is
  looked up: on hold -> held (the lost attempt took); not listed -> gone;
  still talking -> send again. `invalid_state` after an unknown outcome means
  the earlier attempt took (a held call refuses a second hold).
* `invalid_state` first: the call is looked at once; only if it is talking
  after all (notifications can run ahead of the API) is the hold sent once
  more. Never a loop.
* `limit_exceeded`: the client holds every request until the reset, so the
  hold simply goes again; a wait past the deadline ends it.
* `call_session_not_found` -> gone; anything else -> failed, never retried.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from holdd.core.states import CallState


class Reply(StrEnum):
    """What one request came back as (the runner classifies the exception)."""

    OK = "ok"
    #: Answered without `success: true`.
    NOT_TRUE = "not_true"
    #: Provably never sent (no connection, refused before sending).
    NOT_SENT = "not_sent"
    #: Sent; whether it took is unknown (timeout, connection lost, HTTP 5xx).
    UNKNOWN = "unknown"
    #: An answer that is not a JSON-RPC answer.
    PROTOCOL = "protocol"
    #: The client's own rate gate: the wait would pass the deadline.
    RATE_WAIT = "rate_wait"
    #: `limit_exceeded`: the client now waits for the reset by itself.
    LIMIT = "limit"
    #: `internal_error` and the like: not applied, safe to retry.
    SERVER_FAULT = "server_fault"
    INVALID_STATE = "invalid_state"
    GONE = "gone"
    #: Anything else (parameters, rule misconfigured, credentials).
    REFUSED = "refused"


@dataclass(frozen=True, slots=True)
class Answered:
    reply: Reply
    #: A short stable reason ("timeout", "connect", a mnemonic).
    reason: str | None = None
    mnemonic: str | None = None
    #: The error as log fields (code, message, mnemonic, policy, hint).
    error: Mapping[str, object] | None = None
    #: The error says the rule itself is misconfigured (media_file_not_found, ...).
    rule_problem: bool = False
    request_id: object = None
    #: The answer's `data` when it was not `success: true`.
    data: object = None


@dataclass(frozen=True, slots=True)
class Listed:
    """A `list.calls` look-up that answered: the call's state, None when not listed."""

    state: CallState | None
    state_known: bool = True


class Result(StrEnum):
    """What became of one action (the ledger's result, the counters)."""

    HELD = "held"
    UNHELD = "unheld"
    FAILED = "failed"
    #: Sent, and whether it took could not be found out within the deadline.
    UNKNOWN = "unknown"
    CALL_GONE = "call_gone"
    NOT_IN_TALK = "not_in_talk"
    NOT_ON_HOLD = "not_on_hold"
    RATE_LIMITED = "rate_limited"
    CANCELLED = "cancelled"
    WOULD_HOLD = "would_hold"


@dataclass(frozen=True, slots=True)
class Verdict:
    result: Result
    mnemonic: str | None = None
    attempts: int = 0
    #: How a hold whose own answer was lost was found to have taken.
    confirmed_by: str | None = None
    call_state: CallState | None = None
    reason: str | None = None
    error: Mapping[str, object] | None = None
    rule_problem: bool = False
    request_id: object = None
    data: object = None
    #: The error was invalid_state (the API's normal answer for a call that left Talk).
    invalid_state: bool = False


@dataclass(frozen=True, slots=True)
class Send:
    attempt: int


@dataclass(frozen=True, slots=True)
class LookUp:
    pass


@dataclass(frozen=True, slots=True)
class Sleep:
    delay: float
    reason: str
    attempts: int
    next_method: str


@dataclass(frozen=True, slots=True)
class Done:
    verdict: Verdict


Step = Send | LookUp | Sleep | Done


@dataclass(slots=True)
class HoldPolicy:
    """One hold's retries. `deadline` is in the runner's monotonic seconds."""

    deadline: float
    delays: Iterator[float]
    attempts: int = 0
    #: Some attempt's outcome is unknown: it may have taken.
    had_unknown: bool = False
    #: A first invalid_state has been looked at once already.
    rechecked: bool = False
    _invalid: Answered | None = None
    _after_sleep: Step = field(default_factory=lambda: Send(1))

    def start(self) -> Step:
        return self._send()

    def resume(self) -> Step:
        """After a `Sleep`: the step it was waiting for."""
        step = self._after_sleep
        return self._send() if isinstance(step, Send) else step

    def sent(self, answer: Answered, now: float) -> Step:
        reply = answer.reply
        if reply is Reply.OK:
            return self._done(Result.HELD, request_id=answer.request_id)
        if reply is Reply.NOT_TRUE:
            return self._done(Result.FAILED, reason="success_not_true", data=answer.data)
        if reply is Reply.RATE_WAIT:
            self.attempts -= 1
            result = Result.UNKNOWN if self.had_unknown else Result.RATE_LIMITED
            return self._done(result, mnemonic="limit_exceeded", reason="rate_limited")
        if reply is Reply.NOT_SENT:
            self.attempts -= 1
            return self._pause(answer.reason or "not_sent", now, Send(0)) or self._unsettled(
                answer.reason
            )
        if reply is Reply.PROTOCOL:
            return self._unsettled(answer.reason)
        if reply is Reply.UNKNOWN:
            self.had_unknown = True
            reason = answer.reason or "unknown"
            return self._pause(reason, now, LookUp()) or self._unsettled(reason)
        if reply is Reply.LIMIT:
            return self._send()
        if reply is Reply.SERVER_FAULT:
            reason = answer.mnemonic or "server_fault"
            return self._pause(reason, now, Send(0)) or self._failed(answer, unknown=True)
        if reply is Reply.INVALID_STATE:
            if self.had_unknown:
                return self._done(Result.HELD, confirmed_by="invalid_state")
            if self.rechecked:
                return self._failed(answer)
            self.rechecked = True
            self._invalid = answer
            return LookUp()
        if reply is Reply.GONE:
            return self._failed(answer, result=Result.CALL_GONE)
        return self._failed(answer)

    def looked_up(self, found: Listed | Answered, now: float) -> Step:
        if self._invalid is not None:
            return self._after_invalid_state(self._invalid, found, now)
        if isinstance(found, Answered):
            if found.reply is Reply.RATE_WAIT:
                return self._unsettled("rate_limited", "limit_exceeded")
            if found.reply in _TRANSIENT:
                reason = found.reason or found.mnemonic or found.reply.value
                return self._pause(reason, now, LookUp()) or self._unsettled(reason)
            return self._done(
                Result.UNKNOWN, mnemonic=found.mnemonic, error=found.error, reason=found.reason
            )
        if found.state is None:
            return self._done(Result.CALL_GONE, confirmed_by="list_calls")
        if found.state is CallState.HOLD:
            return self._done(Result.HELD, confirmed_by="list_calls")
        if found.state_known and found.state is not CallState.TALK:
            return self._done(Result.NOT_IN_TALK, call_state=found.state)
        # Still talking: the lost attempt did not take (yet); send again.
        return self._send()

    def _after_invalid_state(self, invalid: Answered, found: Listed | Answered, now: float) -> Step:
        self._invalid = None
        if isinstance(found, Answered):
            return self._failed(invalid)
        if found.state is None:
            return self._failed(invalid, result=Result.CALL_GONE)
        if found.state is CallState.HOLD and self.attempts > 1:
            # An earlier attempt of this action (answered with an error, yet
            # applied) is the only likely holder.
            return self._done(Result.HELD, confirmed_by="list_calls")
        talking = found.state is CallState.TALK or not found.state_known
        if talking:
            # The API caught up with the notification: one more try.
            step = self._pause("invalid_state_but_talking", now, Send(0))
            if step is not None:
                return step
        return self._failed(invalid, call_state=found.state)

    # -- helpers ---------------------------------------------------------------

    def _send(self) -> Send:
        self.attempts += 1
        return Send(self.attempts)

    def _pause(self, reason: str, now: float, then: Step) -> Sleep | None:
        delay = next(self.delays)
        if now + delay >= self.deadline:
            return None
        self._after_sleep = then
        next_method = "list.calls" if isinstance(then, LookUp) else "hold.call"
        return Sleep(delay, reason, self.attempts, next_method)

    def _unsettled(self, reason: str | None, mnemonic: str | None = None) -> Done:
        result = Result.UNKNOWN if self.had_unknown else Result.FAILED
        return self._done(result, mnemonic=mnemonic, reason=reason)

    def _failed(
        self,
        answer: Answered,
        *,
        result: Result = Result.FAILED,
        unknown: bool = False,
        call_state: CallState | None = None,
    ) -> Done:
        if unknown and self.had_unknown:
            result = Result.UNKNOWN
        return self._done(
            result,
            mnemonic=answer.mnemonic,
            error=answer.error,
            rule_problem=answer.rule_problem,
            call_state=call_state,
            invalid_state=answer.reply is Reply.INVALID_STATE,
        )

    def _done(self, result: Result, **fields: object) -> Done:
        return Done(Verdict(result, attempts=self.attempts, **fields))  # type: ignore[arg-type]


#: Failures after which a `list.calls` look-up (idempotent) may simply be tried again.
_TRANSIENT = frozenset(
    {Reply.UNKNOWN, Reply.NOT_SENT, Reply.PROTOCOL, Reply.SERVER_FAULT, Reply.LIMIT}
)


@dataclass(slots=True)
class UnholdPolicy:
    """One unhold's retries: `unhold.call` is safe to repeat (a second one
    answers invalid_state), so an unknown outcome is simply sent again."""

    deadline: float
    delays: Iterator[float]
    attempts: int = 0

    def start(self) -> Step:
        self.attempts += 1
        return Send(self.attempts)

    def resume(self) -> Step:
        return self.start()

    def sent(self, answer: Answered, now: float) -> Step:
        reply = answer.reply
        if reply is Reply.OK:
            return Done(Verdict(Result.UNHELD, attempts=self.attempts))
        if reply is Reply.INVALID_STATE:
            # Not on hold any more (someone else took it off): nothing to do.
            return Done(Verdict(Result.NOT_ON_HOLD, attempts=self.attempts))
        if reply is Reply.GONE:
            return Done(Verdict(Result.CALL_GONE, attempts=self.attempts))
        if reply is Reply.LIMIT:
            return self.start()
        if reply in _TRANSIENT:
            reason = answer.reason or answer.mnemonic or reply.value
            delay = next(self.delays)
            if now + delay < self.deadline:
                return Sleep(delay, reason, self.attempts, "unhold.call")
            return Done(Verdict(Result.FAILED, reason=reason, attempts=self.attempts))
        return Done(
            Verdict(
                Result.FAILED,
                mnemonic=answer.mnemonic,
                error=answer.error,
                reason=answer.reason,
                attempts=self.attempts,
            )
        )


__all__ = [
    "Answered",
    "Done",
    "HoldPolicy",
    "Listed",
    "LookUp",
    "Reply",
    "Result",
    "Send",
    "Sleep",
    "Step",
    "UnholdPolicy",
    "Verdict",
]
