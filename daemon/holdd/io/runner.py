"""Turns decisions into Call API requests: ledger, retries, deadline (shell).

Every action is claimed in the ledger before its first request is sent and
its result recorded after the last, so a decision that arrives twice
(duplicate notification, reconnect, reload) is sent once. Requests run as
tasks kept in a set, one per decision, so a slow API never stalls the
notification stream; every task's end is logged once here, with
`call_session_id` and `rule` bound.

How one hold is driven (holdd-spec.md section 6, uis-call-api.md sections
3.2, 4, 5); every wait is bounded by the action's deadline:

* success -> held.
* `internal_error`, a connection that never opened, HTTP 429: not applied;
  send again after an exponential backoff with full jitter.
* timeout, dropped connection, HTTP 5xx without an answer: the outcome is
  unknown and `hold.call` is not idempotent, so before sending again the call
  is looked up with `list.calls`: on hold -> held (the lost attempt took);
  gone -> dropped; still talking -> send again. `invalid_state` after an
  unknown outcome means the earlier attempt took (section 4: a second
  `hold.call` is refused in HOLD).
* `invalid_state` with no unknown outcome before: the call was not in Talk.
  It is looked at once with `list.calls`; only if it is talking after all
  (notifications can run ahead of the API) is the hold sent once more.
  Never a loop. (On hold there after an earlier attempt of this action:
  that attempt took, whatever its answer said.)
* `limit_exceeded`: the client holds every request until the reset; the hold
  goes out then, if the deadline allows.
* `call_session_not_found`: the call is gone; it is dropped from the table.
* everything else (parameter errors, a misconfigured rule, refused
  credentials): logged with a hint and counted; never retried.

holdd never sends `unhold.call` on its own: only a rule may ask for one.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType

import structlog

from holdd.callapi import (
    ERROR_KINDS,
    ActiveCall,
    Answer,
    CallApiClient,
    CallApiError,
    CallApiFailure,
    CallGone,
    InvalidState,
    LimitExceeded,
    OutcomeUnknown,
    ProtocolError,
    RateLimitWait,
    RequestNotSent,
    ServerFault,
    succeeded,
)
from holdd.core.backoff import full_jitter
from holdd.core.calls import CallTable
from holdd.core.ledger import Ledger
from holdd.core.rules import ContactMessage, Decision
from holdd.core.states import CallState

#: What an operator should do about each error (the hints of callapi.ERROR_KINDS).
HINTS: Mapping[str, str] = MappingProxyType(
    {mnemonic: kind.hint for mnemonic, kind in ERROR_KINDS.items()}
)


class Result(StrEnum):
    """What became of one action (Outcome.result, the ledger, the counters)."""

    HELD = "held"
    FAILED = "failed"
    #: Sent, and whether it took could not be found out within the deadline.
    UNKNOWN = "unknown"
    CALL_GONE = "call_gone"
    NOT_IN_TALK = "not_in_talk"
    RATE_LIMITED = "rate_limited"
    CANCELLED = "cancelled"
    WOULD_HOLD = "would_hold"


@dataclass(slots=True)
class Outcome:
    """What became of one decision (kept for the demo table and `explain`)."""

    call_session_id: int
    rule: str
    message: ContactMessage
    result: str
    mnemonic: str | None = None
    #: `hold.call` requests sent for it.
    attempts: int = 0
    #: How a hold whose own answer was lost was found to have taken:
    #: "list_calls" or "invalid_state".
    confirmed_by: str | None = None


@dataclass(slots=True)
class RunnerStats:
    """Counters for /metrics (plain Counters; the exporter reads them)."""

    #: Actions by (result, mnemonic or "").
    actions: Counter[tuple[str, str]] = field(default_factory=Counter)
    #: Retries by reason (a mnemonic, "timeout", "connection", "http_500", ...).
    retries: Counter[str] = field(default_factory=Counter)
    #: Holds a rule's own configuration made fail, by (rule, mnemonic).
    misconfigured: Counter[tuple[str, str]] = field(default_factory=Counter)
    #: `list.calls` look-ups made to settle an unknown outcome or invalid_state.
    checks: int = 0


def default_backoff() -> Iterator[float]:
    """Retry delays of one action: full jitter from 0.5 s, capped at 8 s."""
    return full_jitter(base=0.5, cap=8.0)


@dataclass(slots=True)
class _Verdict:
    result: Result
    mnemonic: str | None = None
    attempts: int = 0
    error: CallApiError | None = None
    answer: Answer | None = None
    confirmed_by: str | None = None
    call_state: CallState | None = None
    reason: str | None = None


#: Failures after which a `list.calls` look-up (idempotent) may simply be
#: tried again (OutcomeUnknown includes RequestNotSent and ProtocolError).
_TRANSIENT = (OutcomeUnknown, ServerFault, LimitExceeded)


class ActionRunner:
    """Sends the hold of every decision, once, and reports its outcome."""

    def __init__(
        self,
        api: CallApiClient,
        ledger: Ledger,
        table: CallTable,
        clock: Callable[[], float],
        on_outcome: Callable[[Outcome], None] = lambda _o: None,
        *,
        on_unhold: Callable[[int, str, str], None] = lambda _c, _r, _x: None,
        deadline: float = 30.0,
        backoff: Callable[[], Iterator[float]] = default_backoff,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.api = api
        self.ledger = ledger
        self.table = table
        self.clock = clock
        self.on_outcome = on_outcome
        #: (call_session_id, rule, result) after every unhold.call settles.
        self.on_unhold = on_unhold
        #: Seconds one action may keep retrying (`[callapi] action_deadline`).
        self.deadline = deadline
        self.backoff = backoff
        self.sleep = sleep
        self.monotonic = monotonic
        self.stats = RunnerStats()
        self._tasks: set[asyncio.Task[None]] = set()
        self.log = structlog.get_logger("holdd.actions")

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    def submit(self, decision: Decision) -> bool:
        """Claim and start the action of `decision` (returns at once).

        False when the action was claimed before (a duplicate): nothing is
        sent and no outcome will follow.
        """
        rule = decision.rule.name
        csid = decision.call_session_id
        log = self.log.bind(call_session_id=csid, rule=rule)
        action = "hold" if not decision.shadow else "would_hold"
        if not self.ledger.claim(csid, rule, action, self.clock()):
            log.info("hold_skipped", reason="already_claimed")
            return False
        call = self.table.get(csid)
        if call is not None:
            call.fired.add(rule)
        if decision.shadow:
            log.info(
                "would_hold",
                message_type=decision.message.type,
                message_value=decision.message.value,
                episode=decision.episode,
            )
            self.ledger.finish(csid, rule, action, "shadow", self.clock())
            self.stats.actions[(Result.WOULD_HOLD.value, "")] += 1
            self.on_outcome(Outcome(csid, rule, decision.message, Result.WOULD_HOLD))
            return True
        task = asyncio.get_running_loop().create_task(
            self._hold(decision), name=f"hold-{csid}-{rule}"
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return True

    async def drain(self, within: float) -> int:
        """Wait up to `within` seconds for in-flight requests; return how many were left."""
        if not self._tasks:
            return 0
        _done, pending = await asyncio.wait(set(self._tasks), timeout=within)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending)
        return len(pending)

    # -- unhold (a rule's [rule.then] unhold_after) ------------------------------

    def submit_unhold(self, call_session_id: int, rule: str, *, shadow: bool = False) -> None:
        """Send `unhold.call` for the hold `rule` made (returns at once).

        Claimed in the ledger like a hold, so a restart or a duplicate timer
        never sends it twice. Only a rule's `unhold_after` ever asks for it.
        """
        log = self.log.bind(call_session_id=call_session_id, rule=rule)
        action = "would_unhold" if shadow else "unhold"
        if not self.ledger.claim(call_session_id, rule, action, self.clock()):
            log.info("unhold_skipped", reason="already_claimed")
            return
        if shadow:
            log.info("would_unhold")
            self.ledger.finish(call_session_id, rule, action, "shadow", self.clock())
            return
        task = asyncio.get_running_loop().create_task(
            self._unhold(call_session_id, rule), name=f"unhold-{call_session_id}-{rule}"
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _unhold(self, call_session_id: int, rule: str) -> None:
        log = self.log.bind(call_session_id=call_session_id, rule=rule)
        deadline = self.monotonic() + self.deadline
        delays = self.backoff()
        result = "failed"
        with structlog.contextvars.bound_contextvars(call_session_id=call_session_id, rule=rule):
            while True:
                try:
                    await self.api.unhold_call(call_session_id, deadline=deadline)
                except InvalidState:
                    # Not on hold any more (someone else took it off): nothing to do.
                    result = "not_on_hold"
                    log.info("unhold_skipped", reason="not_on_hold")
                except CallGone:
                    result = "call_gone"
                    call = self.table.get(call_session_id)
                    if call is not None:
                        self.table.move(call, CallState.ENDED, self.clock(), source="callapi")
                    log.info("unhold_skipped", reason="call_gone")
                except (OutcomeUnknown, ServerFault) as exc:
                    # unhold.call is safe to repeat: a second one answers invalid_state.
                    delay = next(delays)
                    if self.monotonic() + delay < deadline:
                        log.warning("unhold_retrying", reason=_reason(exc), retry_in=delay)
                        await self.sleep(delay)
                        continue
                    log.error("unhold_failed", reason=_reason(exc))
                except CallApiError as exc:
                    log.error("unhold_failed", **exc.as_log())
                else:
                    result = "unheld"
                    self.table.unheld(call_session_id, self.clock())
                    log.info("unhold_sent")
                break
        self.stats.actions[(result, "")] += 1
        self.ledger.finish(call_session_id, rule, "unhold", result, self.clock())
        self.on_unhold(call_session_id, rule, result)

    # -- one hold ----------------------------------------------------------------

    async def _hold(self, decision: Decision) -> None:
        csid = decision.call_session_id
        rule = decision.rule.name
        log = self.log.bind(call_session_id=csid, rule=rule)
        with structlog.contextvars.bound_contextvars(call_session_id=csid, rule=rule):
            try:
                verdict = await self._drive(decision, log)
            except asyncio.CancelledError:
                log.warning("hold_cancelled")
                # The claim stays without a result: the request may have been
                # applied, and the next start checks it with list.calls.
                self.stats.actions[(Result.CANCELLED.value, "")] += 1
                raise
            except Exception:
                log.exception("hold_crashed")
                verdict = _Verdict(Result.FAILED, reason="crashed")
            self._conclude(decision, verdict, log)

    async def _drive(
        self, decision: Decision, log: structlog.typing.FilteringBoundLogger
    ) -> _Verdict:
        """Send the hold until it is settled or the deadline passes (see the module doc)."""
        csid = decision.call_session_id
        deadline = self.monotonic() + self.deadline
        delays = self.backoff()
        attempts = 0
        # Some attempt's outcome is unknown: it may have taken.
        had_unknown = False
        # ...and list.calls has not yet shown that the call is still in Talk.
        must_check = False
        # A first-attempt invalid_state has been looked at once already.
        rechecked = False

        async def pause(reason: str, next_method: str = "hold.call") -> bool:
            """Back off before the next request; False when the deadline comes first."""
            delay = next(delays)
            if self.monotonic() + delay >= deadline:
                return False
            self.stats.retries[reason] += 1
            log.warning(
                "hold_retrying",
                reason=reason,
                attempts=attempts,
                delay=round(delay, 3),
                next_method=next_method,
            )
            await self.sleep(delay)
            return True

        def unsettled(reason: str, mnemonic: str | None = None) -> _Verdict:
            result = Result.UNKNOWN if had_unknown else Result.FAILED
            return _Verdict(result, mnemonic, attempts, reason=reason)

        while True:
            if must_check:
                try:
                    call = await self._look_up(csid, deadline)
                except RateLimitWait:
                    return unsettled("rate_limited", "limit_exceeded")
                except _TRANSIENT as exc:
                    if await pause(_reason(exc), "list.calls"):
                        continue
                    return unsettled(_reason(exc))
                except CallApiError as exc:
                    return _Verdict(Result.UNKNOWN, exc.mnemonic, attempts, error=exc)
                if call is None:
                    return _Verdict(Result.CALL_GONE, None, attempts, confirmed_by="list_calls")
                if call.state is CallState.HOLD:
                    return _Verdict(Result.HELD, None, attempts, confirmed_by="list_calls")
                if call.state_known and call.state is not CallState.TALK:
                    return _Verdict(Result.NOT_IN_TALK, None, attempts, call_state=call.state)
                # Still talking: the lost attempt did not take (yet); send again.
                must_check = False

            attempts += 1
            try:
                answer = await self.api.hold_call(csid, decision.message, deadline=deadline)
            # Narrowest first: RateLimitWait < RequestNotSent < OutcomeUnknown,
            # ProtocolError < OutcomeUnknown.
            except RateLimitWait:
                attempts -= 1
                result = Result.UNKNOWN if had_unknown else Result.RATE_LIMITED
                return _Verdict(result, "limit_exceeded", attempts, reason="rate_limited")
            except RequestNotSent as exc:
                attempts -= 1
                if await pause(exc.reason):
                    continue
                return unsettled(exc.reason)
            except ProtocolError as exc:
                return unsettled(exc.reason)
            except OutcomeUnknown as exc:
                had_unknown = must_check = True
                if await pause(exc.reason, "list.calls"):
                    continue
                return unsettled(exc.reason)
            except LimitExceeded:
                # The client now holds every request until the reset; going
                # round waits for it (or ends in RateLimitWait at the deadline).
                self.stats.retries["limit_exceeded"] += 1
                continue
            except ServerFault as exc:
                if await pause(exc.mnemonic):
                    continue
                return _Verdict(
                    Result.UNKNOWN if had_unknown else Result.FAILED,
                    exc.mnemonic,
                    attempts,
                    error=exc,
                )
            except InvalidState as exc:
                if had_unknown:
                    # Section 4: only TALK accepts hold.call, and a held call
                    # refuses a second one: the lost attempt took.
                    return _Verdict(Result.HELD, None, attempts, confirmed_by="invalid_state")
                if rechecked:
                    return _Verdict(Result.FAILED, exc.mnemonic, attempts, error=exc)
                rechecked = True
                try:
                    call = await self._look_up(csid, deadline)
                except CallApiFailure:
                    return _Verdict(Result.FAILED, exc.mnemonic, attempts, error=exc)
                if call is None:
                    return _Verdict(Result.CALL_GONE, exc.mnemonic, attempts, error=exc)
                if call.state is CallState.HOLD and attempts > 1:
                    # An earlier attempt of this action (answered with an
                    # error, yet applied) is the only likely holder.
                    return _Verdict(Result.HELD, None, attempts, confirmed_by="list_calls")
                talking = call.state is CallState.TALK or not call.state_known
                # The API caught up with the notification: one more try.
                if talking and await pause("invalid_state_but_talking"):
                    continue
                return _Verdict(
                    Result.FAILED, exc.mnemonic, attempts, error=exc, call_state=call.state
                )
            except CallGone as exc:
                return _Verdict(Result.CALL_GONE, exc.mnemonic, attempts, error=exc)
            except CallApiError as exc:
                # do-not-retry, and a re-login that did not help.
                return _Verdict(Result.FAILED, exc.mnemonic, attempts, error=exc)
            if succeeded(answer.data):
                return _Verdict(Result.HELD, None, attempts, answer=answer)
            return _Verdict(Result.FAILED, None, attempts, answer=answer, reason="success_not_true")

    async def _look_up(self, call_session_id: int, deadline: float) -> ActiveCall | None:
        """The call as `list.calls` shows it now; None when it is not listed (ended)."""
        self.stats.checks += 1
        for call in await self.api.list_calls(deadline=deadline):
            if call.call_session_id == call_session_id:
                return call
        return None

    def _conclude(
        self, decision: Decision, v: _Verdict, log: structlog.typing.FilteringBoundLogger
    ) -> None:
        csid = decision.call_session_id
        rule = decision.rule.name
        message = decision.message
        now = self.clock()
        error = v.error
        # The result goes to the ledger first, before anything is logged: a
        # crash after it leaves nothing for the next start to guess about.
        recorded = v.result.value if v.result is Result.HELD else (v.mnemonic or v.result.value)
        self.ledger.finish(csid, rule, "hold", recorded, now)
        if v.result is Result.HELD:
            self.table.held(csid, now)
            if v.confirmed_by is None:
                log.info(
                    "hold_sent",
                    message_type=message.type,
                    message_value=message.value,
                    request_id=v.answer.request_id if v.answer else None,
                    episode=decision.episode,
                    attempts=v.attempts,
                )
            else:
                log.info(
                    f"hold_confirmed_by_{v.confirmed_by}",
                    message_type=message.type,
                    message_value=message.value,
                    episode=decision.episode,
                    attempts=v.attempts,
                )
        elif v.result is Result.CALL_GONE:
            call = self.table.get(csid)
            if call is not None:
                # Section 5 call_session_not_found: the session is over, drop it.
                self.table.move(call, CallState.ENDED, now, source="callapi")
            log.info(
                "hold_call_gone",
                attempts=v.attempts,
                mnemonic=v.mnemonic,
                confirmed_by=v.confirmed_by,
            )
        elif v.result is Result.UNKNOWN:
            log.error(
                "hold_outcome_unknown",
                reason=v.reason,
                mnemonic=v.mnemonic,
                attempts=v.attempts,
                hint="whether the call was put on hold could not be found out before"
                " [callapi] action_deadline; holdd will not send it again",
            )
        elif v.result is Result.NOT_IN_TALK:
            log.warning(
                "hold_failed",
                reason="not_in_talk",
                call_state=v.call_state,
                attempts=v.attempts,
                hint="the call left Talk before the hold could be sent",
            )
        elif v.result is Result.RATE_LIMITED:
            log.error(
                "hold_failed",
                reason="rate_limited",
                mnemonic="limit_exceeded",
                attempts=v.attempts,
                hint=HINTS["limit_exceeded"],
            )
        elif error is not None:
            if error.kind.rule_problem:
                self.stats.misconfigured[(rule, error.mnemonic)] += 1
            # invalid_state is the API's normal answer for a call that left
            # Talk: a warning; anything else needs someone to look.
            level = log.warning if isinstance(error, InvalidState) else log.error
            level(
                "hold_failed",
                **error.as_log(),
                policy=error.policy.value,
                hint=error.kind.hint,
                call_state=v.call_state,
                attempts=v.attempts,
                request_message_type=message.type,
            )
        else:
            log.error(
                "hold_failed",
                reason=v.reason,
                answer=v.answer.data if v.answer else None,
                attempts=v.attempts,
                hint="see reason; the API's answer is in `answer` when there was one",
            )
        self.stats.actions[(v.result.value, v.mnemonic or "")] += 1
        self.on_outcome(
            Outcome(
                csid,
                rule,
                message,
                v.result.value,
                v.mnemonic,
                attempts=v.attempts,
                confirmed_by=v.confirmed_by,
            )
        )


def _reason(exc: BaseException) -> str:
    """A short, stable name for why a request failed (retry counters, logs)."""
    if isinstance(exc, CallApiError):
        return exc.mnemonic
    if isinstance(exc, OutcomeUnknown):
        return exc.reason
    return type(exc).__name__


__all__ = ["HINTS", "ActionRunner", "Outcome", "Result", "RunnerStats", "default_backoff"]
