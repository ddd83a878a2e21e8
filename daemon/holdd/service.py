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
import contextlib
import signal
import time
from collections.abc import Callable

import aiohttp
import structlog
from aiohttp import web

from holdd import __version__
from holdd.actions import ActionRunner, Outcome
from holdd.backoff import full_jitter
from holdd.callapi import CallApiClient, CallApiFailure
from holdd.calls import CallChange, CallTable, ChangeKind
from holdd.config import Settings
from holdd.events import Decoded, Rejection, RejectReason, decode, decode_value, event_names
from holdd.ledger import Ledger, MemoryLedger
from holdd.notify import NotifyListener
from holdd.rules import Evaluation, RuleEngine, RuleSet
from holdd.throttle import Throttle
from holdd.webhook import MAX_BODY, WebhookReceiver

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
        self._stopping = asyncio.Event()
        # Set and replaced after every message and outcome; `wait_for` waits on it.
        self._tick = asyncio.Event()
        self.runner: ActionRunner | None = None
        self.api: CallApiClient | None = None
        self.listener: NotifyListener | None = None
        self.webhook: WebhookReceiver | None = None
        #: Where the webhook receiver listens once started (port 0 resolved).
        self.webhook_address: tuple[str, int] | None = None
        #: Set to ask for a resync now (the stream reconnected).
        self.resync_wanted = asyncio.Event()
        self.resyncs = 0
        self._drop_throttle = Throttle(per=10.0, burst=5)

    # -- control -----------------------------------------------------------

    def request_stop(self, reason: str = "requested") -> None:
        if not self._stopping.is_set():
            self.log.info("holdd_stopping", reason=reason)
            self._stopping.set()

    async def wait_for(self, predicate: Callable[[], bool], within: float = 10.0) -> None:
        """Wait until `predicate()` holds, re-checking after every message and outcome."""
        async with asyncio.timeout(within):
            while not predicate():
                await self._tick.wait()

    # -- the loop ----------------------------------------------------------

    async def run(self, *, install_signals: bool = True) -> int:
        """Serve until stopped; the exit code of `holdd run`."""
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
                    self.settings.credentials,
                    self.settings.timeout,
                )
                self.api = api
                self.runner = ActionRunner(
                    api,
                    self.ledger,
                    self.table,
                    self.clock,
                    self._outcome,
                    deadline=self.settings.action_deadline,
                )
                try:
                    async with asyncio.TaskGroup() as tg:
                        tasks = [
                            tg.create_task(self._sweep(), name="sweep"),
                            tg.create_task(self._resync_loop(api), name="resync"),
                        ]
                        if self.settings.notify_url is not None:
                            self.listener = NotifyListener(
                                self.settings.notify_url,
                                self.settings.notify_headers,
                                idle_timeout=self.settings.idle_timeout,
                                on_connect=self.resync_wanted.set,
                            )
                            tasks.append(
                                tg.create_task(self._consume(self.listener), name="consume")
                            )
                        if self.settings.webhook_listen is not None:
                            queue: asyncio.Queue[tuple[str, object]] = asyncio.Queue(10_000)
                            tasks.append(tg.create_task(self._serve_webhook(queue), name="webhook"))
                            tasks.append(
                                tg.create_task(self._consume_queue(queue), name="consume_webhook")
                            )
                        await self._stopping.wait()
                        for task in tasks:
                            task.cancel()
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
            if isinstance(raw, bytes):
                self._drop(Rejection(RejectReason.BINARY_FRAME, f"{len(raw)} bytes"), "websocket")
            else:
                self.handle(raw, source="websocket")
            self._progressed()

    async def _consume_queue(self, queue: asyncio.Queue[tuple[str, object]]) -> None:
        """Webhook payloads, already parsed, through the same pipeline."""
        while True:
            source, payload = await queue.get()
            if isinstance(payload, str):
                self.handle(payload, source=source)
            else:
                decoded = Decoded()
                decode_value(payload, self.names, decoded)
                self._apply(decoded, source)
            self._progressed()

    async def _serve_webhook(self, queue: asyncio.Queue[tuple[str, object]]) -> None:
        assert self.settings.webhook_listen is not None  # noqa: S101 - checked by the caller
        assert self.settings.webhook_secret is not None  # noqa: S101
        receiver = WebhookReceiver(
            self.settings.webhook_path, self.settings.webhook_secret.reveal(), queue
        )
        self.webhook = receiver
        app = web.Application(client_max_size=MAX_BODY)
        receiver.routes(app)
        runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await runner.setup()
        try:
            host, port = self.settings.webhook_listen
            site = web.TCPSite(runner, host, port)
            await site.start()
            bound = runner.addresses[0]
            self.webhook_address = (str(bound[0]), int(bound[1]))
            self.log.info(
                "webhook_listening", host=bound[0], port=bound[1], path=self.settings.webhook_path
            )
            await asyncio.Event().wait()  # serve until cancelled
        finally:
            await runner.cleanup()

    async def _resync_loop(self, api: CallApiClient) -> None:
        """Reconcile with `list.calls` at start, after every reconnect, and on a timer."""
        failures = full_jitter(1.0, 60.0)
        while True:
            self.resync_wanted.clear()
            taken_at = self.clock()
            try:
                active = await api.list_calls()
            except CallApiFailure as exc:
                delay = next(failures)
                self.log.warning("resync_failed", error=str(exc), retry_in=round(delay, 3))
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await self._stopping.wait()
                continue
            failures = full_jitter(1.0, 60.0)
            changes = self.table.reconcile(active, taken_at, self.clock())
            self.resyncs += 1
            self.log.info(
                "resync_done",
                listed=len(active),
                talk_found=sum(c.kind is ChangeKind.TALK_ENTERED for c in changes),
                ended=sum(c.kind is ChangeKind.ENDED for c in changes),
                known=len(self.table),
            )
            for change in changes:
                self._on_change(change)
            self._progressed()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.settings.resync_interval or None):
                    await self.resync_wanted.wait()

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(self.sweep_every)
            swept = self.table.sweep(self.clock())
            if swept:
                self.log.debug("calls_swept", count=swept, remaining=len(self.table))

    # -- one message --------------------------------------------------------

    def handle(self, raw: str | bytes, source: str = "websocket") -> None:
        """Decode one transport message and act on everything in it."""
        self._apply(decode(raw, self.names), source)

    def _drop(self, rejection: Rejection, source: str) -> None:
        """Count a rejected message; log it unless a flood of the same reason is on."""
        reason = rejection.reason.value
        self.dropped[reason] = self.dropped.get(reason, 0) + 1
        held_back = self._drop_throttle.allow(reason, self.clock())
        if held_back is None:
            return
        self.log.warning(
            "notification_dropped",
            reason=reason,
            detail=rejection.detail,
            call_session_id=rejection.call_session_id,
            source=source,
            held_back=held_back,
        )

    def _apply(self, decoded: Decoded, source: str) -> None:
        now = self.clock()
        for rejection in decoded.rejections:
            self._drop(rejection, source)
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
        tick, self._tick = self._tick, asyncio.Event()
        tick.set()
