"""The daemon: wires the notification stream, the core and the Call API
client together (shell).

The main loop reads top to bottom: a message comes in, the call table turns
it into changes, the rule engine turns a call entering Talk into at most one
decision, and the action runner sends it. Everything between the socket and
the runner is synchronous core code, so one message is handled completely
before the next is read.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable

import aiohttp
import structlog

from holdd import __version__
from holdd.actions import ActionRunner, Outcome
from holdd.callapi import CallApiClient
from holdd.calls import CallChange, CallTable, ChangeKind
from holdd.config import Settings
from holdd.events import decode, event_names
from holdd.ledger import Ledger, MemoryLedger
from holdd.notify import NotifyListener
from holdd.rules import Evaluation, RuleEngine, RuleSet

_CHANGE_EVENTS = {
    ChangeKind.TALK_ENTERED: "call_talk_started",
    ChangeKind.TALK_LEFT: "call_talk_finished",
    ChangeKind.ENDED: "call_ended",
}


class Daemon:
    def __init__(
        self,
        settings: Settings,
        rules: RuleSet,
        *,
        clock: Callable[[], float] = time.time,
        ledger: Ledger | None = None,
        stop_timeout: float = 8.0,
        sweep_every: float = 60.0,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.table = CallTable()
        self.engine = RuleEngine(rules)
        self.names = event_names(settings.events)
        self.ledger: Ledger = ledger if ledger is not None else MemoryLedger()
        self.stop_timeout = stop_timeout
        self.sweep_every = sweep_every
        #: Per call: the last evaluation of the rules and the last action outcome.
        self.evaluations: dict[int, Evaluation] = {}
        self.outcomes: dict[int, Outcome] = {}
        self.dropped: dict[str, int] = {}
        self.log = structlog.get_logger("holdd")
        self._stopping: asyncio.Event | None = None
        # Set and replaced after every message and outcome; `wait_for` waits on it.
        self._tick: asyncio.Event | None = None
        self.runner: ActionRunner | None = None
        self.listener: NotifyListener | None = None

    # -- control -----------------------------------------------------------

    def request_stop(self, reason: str = "requested") -> None:
        if self._stopping is not None and not self._stopping.is_set():
            self.log.info("holdd_stopping", reason=reason)
            self._stopping.set()

    async def wait_for(self, predicate: Callable[[], bool], within: float = 10.0) -> None:
        """Wait until `predicate()` holds, re-checking after every message and outcome."""
        async with asyncio.timeout(within):
            while not predicate():
                assert self._tick is not None, "the daemon is not running"  # noqa: S101
                await self._tick.wait()

    # -- the loop ----------------------------------------------------------

    async def run(self, *, install_signals: bool = True) -> int:
        """Serve until stopped; the exit code of `holdd run`."""
        self._stopping = asyncio.Event()
        self._tick = asyncio.Event()
        loop = asyncio.get_running_loop()
        if install_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self.request_stop, sig.name)
        self.log.info(
            "holdd_started",
            version=__version__,
            config=str(self.settings.path),
            rules=len(self.engine.rules.rules),
            rule_files=len(self.engine.rules.files),
        )
        connector = aiohttp.TCPConnector(limit=self.settings.max_connections)
        code = 0
        try:
            async with aiohttp.ClientSession(connector=connector) as session:
                api = CallApiClient(
                    session,
                    self.settings.callapi_url,
                    self.settings.access_token,
                    self.settings.timeout,
                )
                self.runner = ActionRunner(api, self.ledger, self.table, self.clock, self._outcome)
                self.listener = NotifyListener(
                    self.settings.notify_url, self.settings.notify_headers
                )
                try:
                    async with asyncio.TaskGroup() as tg:
                        consumer = tg.create_task(self._consume(self.listener), name="consume")
                        sweeper = tg.create_task(self._sweep(), name="sweep")
                        await self._stopping.wait()
                        consumer.cancel()
                        sweeper.cancel()
                except* Exception as group:
                    for exc in group.exceptions:
                        self.log.error("holdd_failed", exc_info=(type(exc), exc, exc.__traceback__))
                    code = 1
                left = await self.runner.drain(within=self.stop_timeout)
                if left:
                    self.log.warning("holdd_stop_abandoned_requests", count=left)
        finally:
            if install_signals:
                for sig in (signal.SIGTERM, signal.SIGINT):
                    loop.remove_signal_handler(sig)
        self.log.info("holdd_stopped", exit_code=code)
        return code

    async def _consume(self, listener: NotifyListener) -> None:
        async for raw in listener.messages():
            self.handle(raw)
            self._progressed()

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(self.sweep_every)
            swept = self.table.sweep(self.clock())
            if swept:
                self.log.debug("calls_swept", count=swept, remaining=len(self.table))

    # -- one message --------------------------------------------------------

    def handle(self, raw: str | bytes) -> None:
        """Decode one transport message and act on everything in it."""
        now = self.clock()
        decoded = decode(raw, self.names)
        for rejection in decoded.rejections:
            self.dropped[rejection.reason] = self.dropped.get(rejection.reason, 0) + 1
            self.log.warning(
                "notification_dropped",
                reason=rejection.reason.value,
                detail=rejection.detail,
                call_session_id=rejection.call_session_id,
            )
        for n in decoded.notifications:
            self.log.debug(
                "notification_received",
                call_session_id=n.call_session_id,
                kind=n.kind.value,
                state=n.state,
            )
            for change in self.table.apply(n, now):
                self._on_change(change)

    def _on_change(self, change: CallChange) -> None:
        call = change.call
        log = self.log.bind(call_session_id=call.call_session_id)
        log.info(
            _CHANGE_EVENTS[change.kind],
            episode=call.episode,
            source=change.source,
            direction=call.fields.get("direction"),
        )
        if change.kind is not ChangeKind.TALK_ENTERED:
            return
        evaluation = self.engine.evaluate(call)
        self.evaluations[call.call_session_id] = evaluation
        trace = [t.as_dict() for t in evaluation.trace]
        if evaluation.error is not None:
            rule = evaluation.trace[-1].rule
            log.error("hold_skipped", rule=rule, reason=evaluation.error, trace=trace)
            return
        decision = evaluation.decision
        if decision is None:
            log.info("no_rule_matched", trace=trace)
            return
        log.info(
            "rule_matched", rule=decision.rule.name, mode=decision.rule.mode.value, trace=trace
        )
        assert self.runner is not None  # noqa: S101 - set before the stream is read
        self.runner.submit(decision)

    def _outcome(self, outcome: Outcome) -> None:
        self.outcomes[outcome.call_session_id] = outcome
        self._progressed()

    def _progressed(self) -> None:
        if self._tick is not None:
            tick, self._tick = self._tick, asyncio.Event()
            tick.set()
