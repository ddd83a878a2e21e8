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
from typing import Any

import aiohttp
import structlog
from aiohttp import web

from holdd import __version__
from holdd.callapi import ActiveCall, CallApiClient, CallApiFailure
from holdd.config.rulefiles import load_rules
from holdd.config.settings import Settings, load_settings
from holdd.core.backoff import full_jitter
from holdd.core.calls import Call, CallChange, CallTable, ChangeKind
from holdd.core.errors import ConfigError
from holdd.core.events import Decoded, Rejection, RejectReason, decode, decode_value, event_names
from holdd.core.ledger import Claim, Ledger, MemoryLedger
from holdd.core.rules import Decision, Evaluation, Mode, RuleEngine, RuleSet
from holdd.core.rules.driver import (
    Agenda,
    Cancelled,
    Effect,
    Hold,
    NoHold,
    Pending,
    RuleDriver,
    Timer,
    TimerKind,
    Unhold,
)
from holdd.core.rules.patterns import digits
from holdd.core.states import CallState
from holdd.core.throttle import Throttle
from holdd.io import sdnotify
from holdd.io.http import HttpServer
from holdd.io.metrics import Metrics
from holdd.io.notify import NotifyListener
from holdd.io.runner import ActionRunner, Outcome
from holdd.io.store.sqlite import CallRecord, StateDb, StateDbError, TraceKind
from holdd.io.store.sqlite import Timer as StoredTimer
from holdd.io.webhook import MAX_BODY, WebhookReceiver

#: sysexits.h EX_CONFIG: systemd's RestartPreventExitStatus=78 stops a restart loop.
EX_CONFIG = 78

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
        #: The rules, and everything they must remember (pending `after` and
        #: `unhold_after` timers, cooldowns) as data that a reload keeps.
        self.driver = RuleDriver(RuleEngine(rules), Agenda())
        #: Holds submitted and not yet answered: committed to the driver on success.
        self._submitted: dict[tuple[int, str], Decision] = {}
        #: Set whenever the driver's timers change; the timer task re-plans.
        self._timers_changed = asyncio.Event()
        #: Set after the first successful resync (timers wait for it).
        self._resynced = asyncio.Event()
        #: Calls put back from the state database, until the first resync.
        self._restored: set[int] = set()
        self.names = event_names(settings.events)
        self._given_ledger = ledger
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
        self._last_down_reason = "start"
        #: The state database (ledger, traces); None when a ledger was given.
        self.state: StateDb | None = None
        self.metrics = Metrics()
        self.metrics.track_calls(self.table.counts)
        self.http: HttpServer | None = None
        #: Claims found without a result at start, resolved by the first resync.
        self._unresolved: list[Claim] = []

    @property
    def engine(self) -> RuleEngine:
        return self.driver.engine

    # -- control -----------------------------------------------------------

    def request_stop(self, reason: str = "requested") -> None:
        if not self._stopping.is_set():
            self.log.info("holdd_stopping", reason=reason)
            sdnotify.stopping(f"stopping: {reason}")
            self._stopping.set()

    def reload_rules(self) -> bool:
        """SIGHUP: validate every rule file first; swap only if all are good.

        On failure the previous rules stay active (Prometheus' model), the
        problems are logged with file and line, and the metric says so.
        """
        sdnotify.reloading("reloading rules")
        now = self.clock()
        try:
            fresh = load_settings(self.settings.path)
            rules = load_rules(fresh.rule_files, self.settings.tts_max_length)
        except ConfigError as err:
            self.metrics.rules_reloaded(False, now)
            self.log.error(
                "rules_reload_failed",
                problems=[str(p) for p in err.problems],
                files=sorted({p.path for p in err.problems}),
                kept_rules=len(self.engine.rules.rules),
            )
            sdnotify.ready("reload failed; previous rules active")
            return False
        old = self.engine.rules.by_name()
        new = rules.by_name()
        # Swap the rules, keep the agenda: pending timers, cooldowns and what
        # fired survive the reload (peers.md P7: timers lost on reload).
        self.driver.engine = RuleEngine(rules)
        self.metrics.rules_reloaded(True, now, len(rules.rules))
        self.log.info(
            "rules_reloaded",
            rules=len(rules.rules),
            files=len(rules.files),
            added=sorted(new.keys() - old.keys()),
            removed=sorted(old.keys() - new.keys()),
            changed=sorted(n for n in new.keys() & old.keys() if new[n] != old[n]),
        )
        sdnotify.ready(f"{len(rules.rules)} rules active")
        return True

    async def wait_for(self, predicate: Callable[[], bool], within: float = 10.0) -> None:
        """Wait until `predicate()` holds, re-checking after every message and outcome."""
        async with asyncio.timeout(within):
            while not predicate():
                await self._tick.wait()

    # -- the loop ----------------------------------------------------------

    async def run(self, *, install_signals: bool = True) -> int:
        """Serve until stopped; the exit code of `holdd run`."""
        loop = asyncio.get_running_loop()
        self.log.info(
            "holdd_started",
            version=__version__,
            config=str(self.settings.path),
            rules=len(self.engine.rules.rules),
            rule_files=len(self.engine.rules.files),
        )
        if self._given_ledger is None:
            try:
                self.state = StateDb.open(
                    self.settings.state_path, on_write=self.metrics.ledger_written
                )
            except StateDbError as exc:
                self.log.error("state_unusable", path=str(self.settings.state_path), error=str(exc))
                return EX_CONFIG
            self.ledger = self.state
            self.driver.agenda.cooldowns = self.state
            self._unresolved = self.state.pending_claims()
            self._restore(self.state)
            self.log.info(
                "state_opened",
                path=str(self.settings.state_path),
                pending_claims=len(self._unresolved),
            )
        self.metrics.rules_reloaded(True, self.clock(), len(self.engine.rules.rules))
        signals = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP) if install_signals else ()
        for sig in signals:
            if sig is signal.SIGHUP:
                loop.add_signal_handler(sig, self.reload_rules)
            else:
                loop.add_signal_handler(sig, self.request_stop, sig.name)
        connector = aiohttp.TCPConnector(limit=self.settings.max_connections)
        code = 0
        try:
            http_host, http_port = self.settings.http_listen
            self.http = HttpServer(
                self.metrics.registry,
                {
                    "notify": self._ready_notify,
                    "rules": self._ready_rules,
                    "callapi": self._ready_callapi,
                },
                host=http_host,
                port=http_port,
            )
            try:
                await self.http.start()
            except OSError as exc:
                # Usually the port is taken: a restart would only hit it again.
                self.log.error(
                    "http_listen_failed",
                    host=http_host,
                    port=http_port,
                    error=str(exc),
                    hint="another process listens there: change [http] listen",
                )
                self.http = None
                return EX_CONFIG
            self.log.info("http_listening", host=http_host, port=self.http.port)
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
                    on_unhold=self._unhold_outcome,
                    deadline=self.settings.action_deadline,
                )
                try:
                    async with asyncio.TaskGroup() as tg:
                        tasks = [
                            tg.create_task(self._sweep(), name="sweep"),
                            tg.create_task(self._resync_loop(api), name="resync"),
                            tg.create_task(sdnotify.watchdog_loop(), name="watchdog"),
                            tg.create_task(self._timer_loop(), name="timers"),
                        ]
                        if self.state is not None:
                            tasks.append(tg.create_task(self._prune(self.state), name="prune"))
                        if self.settings.notify_url is not None:
                            self.listener = NotifyListener(
                                self.settings.notify_url,
                                self.settings.notify_headers,
                                idle_timeout=self.settings.idle_timeout,
                                on_connect=self._stream_up,
                                on_disconnect=self._stream_down,
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
                        sdnotify.ready(f"{len(self.engine.rules.rules)} rules active")
                        await self._stopping.wait()
                        for task in tasks:
                            task.cancel()
                except* Exception as group:
                    for failure in group.exceptions:
                        self.log.error(
                            "holdd_failed",
                            exc_info=(type(failure), failure, failure.__traceback__),
                        )
                    code = 1
                left = await self.runner.drain(within=self.stop_timeout)
                if left:
                    self.log.warning("holdd_stop_abandoned_requests", count=left)
        finally:
            for sig in signals:
                loop.remove_signal_handler(sig)
            if self.http is not None:
                await self.http.stop()
            if self.state is not None:
                self.state.close()
        self.log.info("holdd_stopped", exit_code=code)
        return code

    # -- readiness, stream state, housekeeping -------------------------------

    def _ready_notify(self) -> tuple[bool, str]:
        if self.listener is not None and self.listener.connected.is_set():
            return True, "notification stream connected"
        if self.webhook_address is not None:
            return True, "webhook listening"
        if self.listener is not None and self.listener.down_since is not None:
            down = time.monotonic() - self.listener.down_since
            return False, f"notification stream down for {down:.0f} s"
        return False, "no notification source running"

    def _ready_rules(self) -> tuple[bool, str]:
        return True, f"{len(self.engine.rules.rules)} rules loaded"

    def _ready_callapi(self) -> tuple[bool, str]:
        if self.api is None:
            return False, "Call API client not started"
        if not self.api.credentials_ok:
            return False, self.api.credentials_problem or "credentials rejected"
        return True, "credentials accepted"

    def _stream_up(self, outage: float | None) -> None:
        self.metrics.stream_up()
        if outage is not None and self.listener is not None and self.listener.reconnects:
            self.metrics.reconnected(self._last_down_reason, outage)
        self.resync_wanted.set()
        self._progressed()

    def _stream_down(self, reason: str) -> None:
        self._last_down_reason = reason
        self.metrics.stream_down()
        self._progressed()

    async def _prune(self, state: StateDb) -> None:
        """Hourly: forget rows older than the retention, in small batches."""
        while True:
            now = self.clock()
            total = 0
            keep = max(self.settings.state_retention, self.engine.rules.longest_cooldown)
            while (
                pruned := state.prune(
                    now - self.settings.state_retention, cooldowns_before=now - keep, batch=1000
                )
            ).total:
                total += pruned.total
                await asyncio.sleep(0)  # let notifications through between batches
            if total:
                self.log.info("state_pruned", rows=total)
            await asyncio.sleep(3600)

    async def _consume(self, listener: NotifyListener) -> None:
        async for raw in listener.messages():
            if isinstance(raw, bytes):
                self._drop(Rejection(RejectReason.BINARY_FRAME, f"{len(raw)} bytes"), "websocket")
            else:
                self._guarded(self.handle, raw, "websocket")
            self._progressed()

    def _guarded(self, handle: Callable[[Any, str], None], payload: Any, source: str) -> None:
        """One message that trips a bug is logged and counted; the stream goes on."""
        try:
            handle(payload, source)
        except Exception:
            self.dropped["internal_error"] = self.dropped.get("internal_error", 0) + 1
            self.metrics.notification("unknown", dropped_reason="internal_error")
            self.log.exception("notification_failed", source=source)

    def _handle_parsed(self, payload: object, source: str) -> None:
        if isinstance(payload, str):
            self.handle(payload, source=source)
            return
        decoded = Decoded()
        decode_value(payload, self.names, decoded)
        self._apply(decoded, source)

    async def _consume_queue(self, queue: asyncio.Queue[tuple[str, object]]) -> None:
        """Webhook payloads, already parsed, through the same pipeline."""
        while True:
            source, payload = await queue.get()
            self._guarded(self._handle_parsed, payload, source)
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
            # Claims a crash left open are settled before any rule runs, so
            # a released claim can be taken again by the changes below.
            recheck = self._resolve_claims(active) if self._unresolved else []
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
            entered = {c.call.call_session_id for c in changes if c.kind is ChangeKind.TALK_ENTERED}
            recheck += self._orphans(entered)
            for call in {c.call_session_id: c for c in recheck}.values():
                if call.call_session_id not in entered and call.state is CallState.TALK:
                    # Still in the Talk episode the crash interrupted: the
                    # rules act on it again (its claim was released).
                    self._on_change(CallChange(ChangeKind.TALK_ENTERED, call, "recovery"))
            self._resynced.set()
            self._progressed()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.settings.resync_interval or None):
                    await self.resync_wanted.wait()

    def _resolve_claims(self, active: list[ActiveCall]) -> list[Call]:
        """Claims left without a result by a crash or a stop: what did the request do?

        Before anything is sent again (holdd-spec section 6), `list.calls`
        says. A hold: the call on hold means it took (its unhold_after and
        cooldown are armed as after any hold); still in Talk means it did
        not, so the claim is released and the call returned for the rules to
        act on again. An unhold: still on hold means it did not take, so it
        is armed to go out now. A call no longer listed has ended.
        """
        assert self.state is not None  # noqa: S101 - claims come from the state db
        by_id = {c.call_session_id: c for c in active}
        now = self.clock()
        recheck: list[Call] = []
        for claim in self._unresolved:
            listed = by_id.get(claim.call_session_id)
            call = self.table.get(claim.call_session_id)
            log = self.log.bind(call_session_id=claim.call_session_id, rule=claim.rule)
            api_state = listed.state if listed is not None else CallState.ENDED
            if claim.action == "hold" and api_state is CallState.TALK and call is not None:
                self.state.release(claim.call_session_id, claim.rule, claim.action)
                log.warning("claim_released", action=claim.action, api_state=api_state.value)
                recheck.append(call)
                continue
            if claim.action == "unhold" and api_state is CallState.HOLD and call is not None:
                self.state.release(claim.call_session_id, claim.rule, claim.action)
                log.warning("claim_released", action=claim.action, api_state=api_state.value)
                self._arm_now(
                    Timer(TimerKind.UNHOLD, call.call_session_id, claim.rule, now, call.episode)
                )
                continue
            if claim.action == "hold" and api_state is CallState.HOLD:
                result = "held"
                if call is not None:
                    self._recommit(call, claim, now)
            elif claim.action == "unhold" and api_state is CallState.TALK:
                result = "unheld"
            else:
                result = f"api_state_{api_state.value.lower()}"
            self.state.resolve(claim.call_session_id, claim.rule, claim.action, result, now)
            log.info("claim_resolved", action=claim.action, result=result)
        self._unresolved = []
        return recheck

    def _orphans(self, entered: set[int]) -> list[Call]:
        """Calls restored in Talk that nothing will act on: no pending timer,
        no claim. A crash between entering Talk and claiming a hold leaves
        them so; the rules run on them once more (the ledger still refuses a
        second hold of any rule that did act)."""
        restored, self._restored = self._restored, set()
        if self.state is None:
            return []
        timed = {timer.call_session_id for timer in self.driver.agenda.timers.values()}
        out = []
        for csid in restored - entered - timed:
            call = self.table.get(csid)
            if call is None or call.state is not CallState.TALK:
                continue
            if not any(c.action == "hold" for c in self.state.claims(csid)):
                out.append(call)
        return out

    def _recommit(self, call: Call, claim: Claim, now: float) -> None:
        """A hold a crash interrupted took: what follows a hold follows it too."""
        rule = self.engine.rules.by_name().get(claim.rule)
        call.fired.add(claim.rule)
        self.driver.agenda.acted[call.call_session_id] = call.episode
        if rule is None:
            return  # the rule was removed since: nothing to arm
        if rule.cooldown is not None:
            contact = digits(call.fields.get("contact_phone_number") or "")
            self.driver.agenda.cooldowns.record_cooldown(rule.name, contact, claim.claimed_at)
        if rule.unhold_after is not None:
            self._arm_now(
                Timer(
                    TimerKind.UNHOLD,
                    call.call_session_id,
                    rule.name,
                    claim.claimed_at + rule.unhold_after,
                    call.episode,
                )
            )

    def _arm_now(self, timer: Timer) -> None:
        self.driver.agenda.timers[timer.key] = timer
        self._arm(timer)

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(self.sweep_every)
            swept = self.table.sweep(self.clock())
            # What the demo and the tests read of a call goes with the call.
            for kept in (self.evaluations, self.outcomes):
                for csid in [c for c in kept if self.table.get(c) is None]:
                    del kept[csid]
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
        self.metrics.notification("unknown", dropped_reason=reason)
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
            self.metrics.notification(n.kind.value)
            self.log.debug(
                "notification_received",
                call_session_id=n.call_session_id,
                kind=n.kind.value,
                state=n.state,
                source=source,
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
        self._trace(
            call.call_session_id,
            TraceKind.EVENT,
            {
                "change": change.kind.value,
                "source": change.source,
                "episode": call.episode,
                "state": call.state.value,
            },
        )
        if self.state is not None:
            if change.kind is ChangeKind.ENDED:
                self.state.delete_call(call.call_session_id)
            else:
                self._save(call)
        self._effects(self.driver.on_change(change, self.clock()))

    def _save(self, call: Call) -> None:
        """Keep what a restart needs of a call: its episode, Talk start, state, fields."""
        if self.state is not None:
            self.state.save_call(
                CallRecord(
                    call.call_session_id,
                    call.episode,
                    call.talk_started_at,
                    call.state,
                    self.clock(),
                    dict(call.fields),
                )
            )

    def _effects(self, effects: list[Effect]) -> None:
        """Carry out what the rule driver says must happen now."""
        for effect in effects:
            log = self.log.bind(call_session_id=effect.call_session_id)
            if isinstance(effect, Hold | Pending | NoHold):
                self._evaluated(effect.evaluation, log)
            if isinstance(effect, Hold):
                decision = effect.decision
                self.metrics.rule_matched(decision.rule.name)
                assert self.runner is not None  # noqa: S101 - set before the stream is read
                key = (decision.call_session_id, decision.rule.name)
                # Before submit: a shadow decision's outcome arrives during it.
                self._submitted[key] = decision
                if not self.runner.submit(decision):
                    self._submitted.pop(key, None)
            elif isinstance(effect, Pending):
                timer = effect.timer
                self._arm(timer)
                log.info(
                    "rule_pending",
                    rule=timer.rule,
                    due_in=round(max(0.0, timer.due_at - self.clock()), 3),
                )
            elif isinstance(effect, Unhold):
                assert self.runner is not None  # noqa: S101
                self._disarm(effect.timer)
                self.runner.submit_unhold(
                    effect.call_session_id, effect.timer.rule, shadow=effect.timer.shadow
                )
            elif isinstance(effect, Cancelled):
                self._disarm(effect.timer)
                log.info(
                    "timer_cancelled",
                    rule=effect.timer.rule,
                    timer=effect.timer.kind.value,
                    reason=effect.reason,
                )

    def _evaluated(
        self, evaluation: Evaluation, log: structlog.typing.FilteringBoundLogger
    ) -> None:
        csid = evaluation.call_session_id
        self.evaluations[csid] = evaluation
        trace = [t.as_dict() for t in evaluation.trace]
        decision = evaluation.decision
        self._trace(
            csid,
            TraceKind.EVALUATION,
            {
                "trace": trace,
                "error": evaluation.error,
                "rule": decision.rule.name if decision else evaluation.rule,
            },
        )
        if evaluation.error is not None:
            log.error("hold_skipped", rule=evaluation.rule, reason=evaluation.error, trace=trace)
        elif decision is None:
            log.info("no_rule_matched", trace=trace)
        else:
            log.info(
                "rule_matched", rule=decision.rule.name, mode=decision.rule.mode.value, trace=trace
            )

    def _arm(self, timer: Timer) -> None:
        if self.state is not None:
            self.state.add_timer(
                StoredTimer(
                    timer.kind,
                    timer.call_session_id,
                    timer.rule,
                    timer.due_at,
                )
            )
        self._timers_changed.set()

    def _disarm(self, timer: Timer) -> None:
        self._forget_stored(timer)
        self._timers_changed.set()

    def _forget_stored(self, timer: Timer) -> None:
        if self.state is not None:
            self.state.remove_timer(timer.kind, timer.call_session_id, timer.rule)

    async def _timer_loop(self) -> None:
        """Fire the driver's timers (`after`, `unhold_after`) when they come due.

        Not before the first resync: timers restored from the state database
        must see the calls as `list.calls` shows them now, not as they were.
        """
        await self._resynced.wait()
        while True:
            self._timers_changed.clear()
            timer = self.driver.agenda.next_timer()
            delay = None if timer is None else max(0.0, timer.due_at - self.clock())
            try:
                async with asyncio.timeout(delay):
                    await self._timers_changed.wait()
            except TimeoutError:
                assert timer is not None  # noqa: S101 - no timeout without a timer
                self._forget_stored(timer)  # consumed, whatever it turns into
                call = self.table.get(timer.call_session_id)
                self._effects(self.driver.on_timer(timer, call, self.clock()))
                self._progressed()

    def _restore(self, state: StateDb) -> None:
        """After a restart: calls in Talk and their pending timers, as they were."""
        now = self.clock()
        calls = {r.call_session_id: r for r in state.load_calls()}
        self._restored = set(calls)
        for record in calls.values():
            self.table.restore(
                record.call_session_id,
                record.state,
                record.episode,
                record.talk_started_at,
                now,
                record.fields,
            )
        rules = self.engine.rules.by_name()
        restored = 0
        for stored in state.timers():
            saved = calls.get(stored.call_session_id)
            rule = rules.get(stored.rule)
            if saved is None or rule is None:
                state.remove_timer(stored.kind, stored.call_session_id, stored.rule)
                continue
            timer = Timer(
                stored.kind,
                stored.call_session_id,
                stored.rule,
                stored.due_at,
                saved.episode,
                rule.mode is Mode.SHADOW,
            )
            self.driver.agenda.timers[timer.key] = timer
            restored += 1
        if calls or restored:
            self.log.info("state_restored", calls=len(calls), timers=restored)

    def _outcome(self, outcome: Outcome) -> None:
        self.outcomes[outcome.call_session_id] = outcome
        decision = self._submitted.pop((outcome.call_session_id, outcome.rule), None)
        call = self.table.get(outcome.call_session_id)
        if decision is not None and call is not None and outcome.result in ("held", "would_hold"):
            # The hold took (or was logged in shadow mode): one rule has acted
            # in this episode; arm its unhold_after, record its cooldown.
            unhold = self.driver.commit(call, decision, self.clock())
            if unhold is not None:
                self._arm(unhold)
            self._save(call)
        action = "would_hold" if outcome.result == "would_hold" else "hold"
        self.metrics.action(action, str(outcome.result), outcome.mnemonic)
        limits = self.api.last_limits if self.api is not None else None
        if limits is not None:
            self.metrics.api_budget(
                minute_remaining=limits.minute_remaining,
                day_remaining=limits.day_remaining,
                minute_limit=limits.minute_limit,
                day_limit=limits.day_limit,
            )
        if outcome.result == "call_gone":
            self.log.info("call_ended", call_session_id=outcome.call_session_id, source="callapi")
        self._trace(
            outcome.call_session_id,
            TraceKind.ACTION,
            {
                "rule": outcome.rule,
                "action": action,
                "result": str(outcome.result),
                "mnemonic": outcome.mnemonic,
                "message": {"type": outcome.message.type, "value": outcome.message.value},
            },
        )
        self._progressed()

    def _unhold_outcome(self, call_session_id: int, rule: str, result: str) -> None:
        self.metrics.action("unhold", result)
        call = self.table.get(call_session_id)
        if call is not None and call.state is not CallState.ENDED:
            self._save(call)
        self._trace(
            call_session_id, TraceKind.ACTION, {"rule": rule, "action": "unhold", "result": result}
        )
        self._progressed()

    def _trace(self, call_session_id: int, kind: TraceKind, payload: dict[str, object]) -> None:
        """One line of the call's decision trace (`holdd explain`)."""
        if self.state is not None:
            self.state.add_trace(call_session_id, kind, payload, self.clock())

    def _progressed(self) -> None:
        tick, self._tick = self._tick, asyncio.Event()
        tick.set()
