"""Executes the requests the machine asks for (shell).

Holds and unholds wait in one FIFO and are carried out by a bounded pool of
workers (`workers`; the daemon gives 2 x `[callapi] max_connections`): a
worker is started when work arrives and none is idle, takes actions from the
FIFO one at a time, and ends when the FIFO is empty. A slow API therefore
never stalls the notification stream, and a flood of thousands of holds costs
a queue entry each, not a task each (docs/operations.md section 10). More
workers than connections keep every connection busy while some workers sleep
out a retry's backoff. An action's deadline starts when a worker takes it.
What to do next is the pure policy's call
(core/hold_policy.py): this module only sends, looks up, sleeps, and turns
the Call API client's exceptions into the policy's vocabulary. The verdict
goes back to the daemon as an input to the machine, which records, logs and
counts it; nothing here touches the call table or the store.

holdd never sends `unhold.call` on its own: only a rule's `unhold_after` asks.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Mapping
from contextvars import Token
from dataclasses import dataclass
from functools import partial
from typing import Any

import structlog
from structlog.contextvars import bind_contextvars, reset_contextvars

from holdd.callapi import (
    ActiveCall,
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
    UnholdPolicy,
    Verdict,
)
from holdd.core.rules.engine import Decision

#: (decision, verdict) when a hold is settled.
HoldReport = Callable[[Decision, Verdict], Awaitable[None]]
#: (call_session_id, rule, verdict) when an unhold is settled.
UnholdReport = Callable[[int, str, Verdict], Awaitable[None]]
#: (action, reason) for every retry (the holdd_action_retries counter).
RetryObserver = Callable[[str, str], None]
#: One hold or unhold waiting for a worker.
_Action = Callable[[], Coroutine[Any, Any, None]]


@dataclass(frozen=True, slots=True)
class Abandoned:
    """What `drain` left at its bound: requests cancelled while a worker had
    them, and actions still waiting for a worker (never sent). Both keep
    their claims open; the next start settles them with `list.calls`."""

    cancelled: int = 0
    not_started: int = 0

    @property
    def total(self) -> int:
        return self.cancelled + self.not_started


def default_backoff() -> Iterator[float]:
    """Retry delays of one action: full jitter from 0.5 s, capped at 8 s."""
    return full_jitter(base=0.5, cap=8.0)


def classify(exc: CallApiFailure) -> Answered:
    """The policy's name for what a request ended with (narrowest first)."""
    if isinstance(exc, RateLimitWait):
        return Answered(Reply.RATE_WAIT, reason="rate_limited", mnemonic="limit_exceeded")
    if isinstance(exc, RequestNotSent):
        return Answered(Reply.NOT_SENT, reason=exc.reason)
    if isinstance(exc, ProtocolError):
        return Answered(Reply.PROTOCOL, reason=exc.reason)
    if isinstance(exc, OutcomeUnknown):
        return Answered(Reply.UNKNOWN, reason=exc.reason)
    if not isinstance(exc, CallApiError):
        return Answered(Reply.UNKNOWN, reason=type(exc).__name__)
    error = {**exc.as_log(), "policy": exc.policy.value, "hint": exc.kind.hint}
    reply = Reply.REFUSED
    if isinstance(exc, LimitExceeded):
        reply = Reply.LIMIT
    elif isinstance(exc, ServerFault):
        reply = Reply.SERVER_FAULT
    elif isinstance(exc, InvalidState):
        reply = Reply.INVALID_STATE
    elif isinstance(exc, CallGone):
        reply = Reply.GONE
    return Answered(
        reply,
        reason=exc.mnemonic,
        mnemonic=exc.mnemonic,
        error=error,
        rule_problem=exc.kind.rule_problem,
    )


def _bind_call(call_session_id: int, rule: str) -> Mapping[str, Token[Any]]:
    """Name the call and the rule on every line logged while an action is
    carried out (the Call API client's too), until `reset_contextvars` with
    what this returns. Cheaper than `bound_contextvars`, which copies the
    whole context to save what it replaces; the tokens remember that."""
    return bind_contextvars(call_session_id=call_session_id, rule=rule)


class Runner:
    """Sends holds and unholds through the policy; reports each verdict."""

    def __init__(
        self,
        api: CallApiClient,
        *,
        on_hold: HoldReport,
        on_unhold: UnholdReport,
        on_retry: RetryObserver = lambda _a, _r: None,
        deadline: float = 30.0,
        workers: int = 20,
        backoff: Callable[[], Iterator[float]] = default_backoff,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.api = api
        self.on_hold = on_hold
        self.on_unhold = on_unhold
        self.on_retry = on_retry
        #: Seconds one action may keep retrying (`[callapi] action_deadline`).
        self.deadline = deadline
        self.backoff = backoff
        self.sleep = sleep
        self.monotonic = monotonic
        #: The most actions carried out at once.
        self.workers = workers
        #: Actions whose claims are durable, oldest first, waiting for a worker.
        self._queue: deque[_Action] = deque()
        self._tasks: set[asyncio.Task[None]] = set()
        #: Workers not yet ended, counted by the worker itself as it ends: a
        #: task whose done-callback has not run yet is not taken for idle.
        self._active = 0
        #: Actions a worker is carrying out.
        self._running = 0
        #: The `list.calls` in flight for look-ups, and the one to follow it.
        self._current: asyncio.Task[list[ActiveCall]] | None = None
        self._next: asyncio.Task[list[ActiveCall]] | None = None
        self._listings: set[asyncio.Task[list[ActiveCall]]] = set()
        self.log = structlog.get_logger("holdd.actions")

    @property
    def in_flight(self) -> int:
        """Actions not settled yet: waiting for a worker, or being carried out."""
        return len(self._queue) + self._running

    @property
    def queued(self) -> int:
        """Actions waiting for a worker (`holdd_actions_queued`)."""
        return len(self._queue)

    def hold(self, decision: Decision) -> None:
        """Send the hold of `decision` (its claim is durable) when a worker is free."""
        self._enqueue(partial(self._hold, decision))

    def unhold(self, call_session_id: int, rule: str) -> None:
        self._enqueue(partial(self._unhold, call_session_id, rule))

    async def drain(self, within: float) -> Abandoned:
        """Let the workers go on for up to `within` seconds; then cancel
        what they carry out and drop what still waits (its claim stays open)."""
        left = Abandoned()
        if self._tasks:
            _done, pending = await asyncio.wait(set(self._tasks), timeout=within)
            left = Abandoned(cancelled=self._running, not_started=len(self._queue))
            self._queue.clear()
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending)
        for listing in list(self._listings):
            listing.cancel()
        if self._listings:
            await asyncio.wait(set(self._listings))
        return left

    def _enqueue(self, action: _Action) -> None:
        self._queue.append(action)
        if self._active < self.workers:
            self._active += 1
            task = asyncio.get_running_loop().create_task(self._work(), name="action-worker")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _work(self) -> None:
        """One worker: the queued actions, oldest first, until none is left."""
        try:
            while self._queue:
                action = self._queue.popleft()
                self._running += 1
                try:
                    await action()
                finally:
                    self._running -= 1
        finally:
            self._active -= 1

    async def _carry(
        self,
        drive: Coroutine[Any, Any, Verdict],
        call_session_id: int,
        rule: str,
        *,
        cancelled: str,
        crashed: str,
    ) -> Verdict:
        """Await one action's `drive` with the call and the rule on every line
        logged meanwhile. A crash is a failed verdict (logged as `crashed`); a
        cancel (the stop's bound ran out) is logged as `cancelled` and leaves
        the claim without a result: the request may have been applied, and
        the next start checks it with list.calls."""
        tokens = _bind_call(call_session_id, rule)
        try:
            return await drive
        except asyncio.CancelledError:
            self.log.bind(call_session_id=call_session_id, rule=rule).warning(cancelled)
            raise
        except Exception:
            self.log.bind(call_session_id=call_session_id, rule=rule).exception(crashed)
            return Verdict(Result.FAILED, reason="crashed")
        finally:
            reset_contextvars(**tokens)

    async def _hold(self, decision: Decision) -> None:
        csid, rule = decision.call_session_id, decision.rule.name
        verdict = await self._carry(
            self.drive_hold(decision),
            csid,
            rule,
            cancelled="hold_cancelled",
            crashed="hold_crashed",
        )
        await self.on_hold(decision, verdict)

    async def drive_hold(self, decision: Decision) -> Verdict:
        """Send one hold until the policy says it is settled."""
        csid = decision.call_session_id
        policy = HoldPolicy(self.monotonic() + self.deadline, self.backoff())
        step = policy.start()
        while True:
            if isinstance(step, Done):
                return step.verdict
            if isinstance(step, Sleep):
                self._retrying("hold", step)
                await self.sleep(step.delay)
                step = policy.resume()
            elif isinstance(step, LookUp):
                step = policy.looked_up(
                    await self._look_up(csid, policy.deadline), self.monotonic()
                )
            else:
                step = policy.sent(
                    await self._send_hold(decision, policy.deadline), self.monotonic()
                )

    async def _send_hold(self, decision: Decision, deadline: float) -> Answered:
        try:
            answer = await self.api.hold_call(
                decision.call_session_id, decision.message, deadline=deadline
            )
        except CallApiFailure as exc:
            return classify(exc)
        if succeeded(answer.data):
            return Answered(Reply.OK, request_id=answer.request_id)
        return Answered(Reply.NOT_TRUE, data=answer.data)

    async def _look_up(self, call_session_id: int, deadline: float) -> Listed | Answered:
        """The call as `list.calls` shows it now (state None: not listed, ended).

        Look-ups are coalesced (the listing holds the whole account): with no
        listing in flight, one starts now; while one is in flight, everyone
        who needs a look-up joins the single listing that starts when it
        ends (one started earlier may predate what they must find out). A
        burst of unknown outcomes thus costs a few `list.calls`, not one each.
        """
        if self._current is None:
            task = self._current = self._listing_task(None, deadline)
        else:
            if self._next is None:
                self._next = self._listing_task(self._current, deadline)
            task = self._next
        try:
            calls = await asyncio.shield(task)
        except CallApiFailure as exc:
            return classify(exc)
        for call in calls:
            if call.call_session_id == call_session_id:
                return Listed(call.state, call.state_known)
        return Listed(None)

    def _listing_task(
        self, after: asyncio.Task[list[ActiveCall]] | None, deadline: float
    ) -> asyncio.Task[list[ActiveCall]]:
        task = asyncio.get_running_loop().create_task(self._list(after, deadline), name="look-up")
        self._listings.add(task)
        task.add_done_callback(self._listings.discard)
        # Retrieved by the holds that wait on it; never an unhandled error.
        task.add_done_callback(lambda t: t.cancelled() or t.exception())
        return task

    async def _list(
        self, after: asyncio.Task[list[ActiveCall]] | None, deadline: float
    ) -> list[ActiveCall]:
        if after is not None:
            await asyncio.wait([after])
            self._current, self._next = self._next, None
        try:
            return await self.api.list_calls(deadline=deadline)
        finally:
            if self._current is asyncio.current_task():
                self._current = None

    async def _unhold(self, call_session_id: int, rule: str) -> None:
        verdict = await self._carry(
            self.drive_unhold(call_session_id),
            call_session_id,
            rule,
            cancelled="unhold_cancelled",
            crashed="unhold_crashed",
        )
        await self.on_unhold(call_session_id, rule, verdict)

    async def drive_unhold(self, call_session_id: int) -> Verdict:
        policy = UnholdPolicy(self.monotonic() + self.deadline, self.backoff())
        step = policy.start()
        while True:
            if isinstance(step, Done):
                return step.verdict
            if isinstance(step, Sleep):
                self._retrying("unhold", step)
                await self.sleep(step.delay)
                step = policy.resume()
                continue
            assert isinstance(step, Send)  # noqa: S101 - the unhold policy never looks up
            try:
                await self.api.unhold_call(call_session_id, deadline=policy.deadline)
            except CallApiFailure as exc:
                step = policy.sent(classify(exc), self.monotonic())
            else:
                step = policy.sent(Answered(Reply.OK), self.monotonic())

    def _retrying(self, action: str, step: Sleep) -> None:
        self.on_retry(action, step.reason)
        self.log.warning(
            f"{action}_retrying",
            reason=step.reason,
            attempts=step.attempts,
            delay=round(step.delay, 3),
            next_method=step.next_method,
        )


__all__ = ["Abandoned", "Runner", "classify", "default_backoff"]
