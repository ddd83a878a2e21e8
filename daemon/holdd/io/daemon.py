"""The daemon: real sockets and a durable store around the machine (shell).

Every input - a notification frame, a webhook post, a `list.calls` listing,
a timer that fell due, a request's result, a rules reload - goes into one
queue. The loop takes what is there (one loop turn), feeds each input to the
machine (core/machine.py), commits the store operations of the whole turn in
one transaction, and only then carries out the rest: log lines, metrics,
timers, and the requests, which the runner sends and whose results come back
as inputs (docs/architecture.md).
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, ParamSpec, TypeVar

import aiohttp

from holdd import __version__
from holdd.callapi import CallApiClient
from holdd.config.rulefiles import load_rules
from holdd.config.settings import Settings, load_settings
from holdd.core.backoff import full_jitter
from holdd.core.calls import CallTable
from holdd.core.commands import Arm, Commands, Outcome, SendHold
from holdd.core.errors import ConfigError, StoreError
from holdd.core.events import Decoded, Rejection, RejectReason, decode, decode_value, event_names
from holdd.core.machine import Machine
from holdd.core.records import ClaimKey, Restored, StoreOp
from holdd.core.rules import Evaluation, RuleSet
from holdd.io import logs, sdnotify
from holdd.io.inputs import Adopt, Frame, HoldDone, Input, Reload, Snapshot, TimerDue, UnholdDone
from holdd.io.metrics import Metrics
from holdd.io.notify import NotifyListener
from holdd.io.runner import Runner
from holdd.io.services import Services
from holdd.io.store.base import Store
from holdd.io.store.opening import open_store, where_fields
from holdd.io.store.postgres import LeaseLost, StoreUnavailable
from holdd.io.store.sqlite import StateDb, StateDbCorrupt, StateDbReplaced
from holdd.io.webhook import WebhookReceiver

#: sysexits.h EX_CONFIG: systemd's RestartPreventExitStatus=78 stops a restart loop.
EX_CONFIG = 78
#: sysexits.h EX_TEMPFAIL: the store could not be written; systemd restarts
#: holdd, which recovers from what the store holds.
EX_TEMPFAIL = 75
#: Inputs handled in one loop turn at most (one transaction).
TURN = 512
#: Requests out from which a SQLite commit runs on the store thread: the
#: hop costs about 0.3 ms, and with fewer requests out there is too little
#: to read meanwhile for the fsync's wait to pay for it.
OFF_LOOP_FROM = 4

_P = ParamSpec("_P")
_R = TypeVar("_R")


class Daemon:
    def __init__(
        self,
        settings: Settings,
        rules: RuleSet,
        *,
        clock: Callable[[], float] = time.time,
        store: Store | None = None,
        stop_timeout: float = 8.0,
        sweep_every: float = 60.0,
        connector: Callable[[], aiohttp.BaseConnector] | None = None,
    ) -> None:
        self.settings = settings
        self.clock = clock
        debug = settings.log_level == "debug"
        self.machine = Machine(rules, event_names(settings.events), debug=debug, full_traces=False)
        self.store: Store | None = store
        self.stop_timeout = stop_timeout
        #: Makes the Call API session's connector (default: a pool of
        #: `max_connections`); a test passes one with its own resolver.
        self.connector = connector or (lambda: aiohttp.TCPConnector(limit=settings.max_connections))
        self.sweep_every = sweep_every
        self.log = logs.Logger("holdd")
        self.metrics = Metrics()
        self.metrics.track_calls(self.machine.table.counts)
        self.inputs: asyncio.Queue[Input] = asyncio.Queue(10_000)
        self._stopping = asyncio.Event()
        # Set and replaced after every loop turn; `wait_for` waits on it.
        self._tick = asyncio.Event()
        self.services = Services(self)
        self.runner: Runner | None = None
        self.api: CallApiClient | None = None
        #: Dropped notifications by reason (also in /metrics).
        self.dropped: dict[str, int] = {}
        self.resyncs = 0
        self._exit_code = 0
        self._backpressure = False
        #: A result taken from the queue while its turn waits one iteration (_loop).
        self._held_back: Input | None = None
        #: Every store call runs on this one thread, one at a time, so a slow
        #: disk or database never stalls the loop, the probes or the watchdog.
        self._store_thread = ThreadPoolExecutor(1, thread_name_prefix="holdd-store")
        #: The last call sent to the store thread: until it is done, every
        #: store call goes there too, so that two never run at once.
        self._threaded: Future[Any] | None = None
        #: Why the store cannot be written, and since when (monotonic): /readyz.
        self.store_trouble: tuple[str, float] | None = None
        self._store_failures = 0

    # -- what tests and the demo read ------------------------------------------

    @property
    def table(self) -> CallTable:
        return self.machine.table

    @property
    def evaluations(self) -> dict[int, Evaluation]:
        return self.machine.evaluations

    @property
    def outcomes(self) -> Mapping[int, Outcome]:
        """The latest hold outcomes (the most recent calls only)."""
        return self.machine.outcomes

    @property
    def listener(self) -> NotifyListener | None:
        return self.services.listener

    @property
    def webhook(self) -> WebhookReceiver | None:
        return self.services.webhook

    @property
    def webhook_address(self) -> tuple[str, int] | None:
        return self.services.webhook_address

    async def wait_for(self, predicate: Callable[[], bool], within: float = 10.0) -> None:
        """Wait until `predicate()` holds, re-checking after every loop turn."""
        async with asyncio.timeout(within):
            while not predicate():
                await self._tick.wait()

    # -- control -------------------------------------------------------------------

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
                kept_rules=len(self.machine.rules.rules),
            )
            sdnotify.ready("reload failed; previous rules active")
            return False
        self.inputs.put_nowait(Reload(rules))
        return True

    async def submit(self, item: Input) -> None:
        """Queue one input. While the queue is full the caller waits: the
        stream's reader stops reading (the server buffers or slows down),
        the webhook's forwarder too (its own queue then answers 503)."""
        if self.inputs.full() and not self._backpressure:
            self._backpressure = True
            self.log.warning(
                "backpressure_on",
                queued=self.inputs.qsize(),
                reason="the loop is behind: reading notifications pauses until it catches up",
            )
        await self.inputs.put(item)

    # -- the loop ------------------------------------------------------------------

    async def run(self, *, install_signals: bool = True) -> int:
        """Serve until stopped; the exit code of `holdd run`."""
        rules = self.machine.rules
        self.log.info(
            "holdd_started",
            version=__version__,
            config=str(self.settings.path),
            rules=len(rules.rules),
            rule_files=len(rules.files),
        )
        owned = self.store is None
        signals = self._install_signals() if install_signals else ()
        store = self.store if self.store is not None else await self._open_store()
        if store is None:
            for sig in signals:
                asyncio.get_running_loop().remove_signal_handler(sig)
            self._store_thread.shutdown(wait=False)
            return self._exit_code or EX_CONFIG
        self.store = store
        try:
            restored = await self._load(store)
        except StoreError as exc:
            if isinstance(exc, StateDbCorrupt):
                # A restart would read the same damaged pages: a person must act.
                self._log_corrupt(exc)
                code = EX_CONFIG
            else:
                # Unreachable just now: systemd starts holdd again (75); anything
                # else a restart cannot fix (78).
                unreachable = isinstance(exc, StoreUnavailable)
                event = "state_unreachable" if unreachable else "state_unusable"
                self.log.error(event, **where_fields(self.settings), error=str(exc))
                code = EX_TEMPFAIL if unreachable else EX_CONFIG
            for sig in signals:
                asyncio.get_running_loop().remove_signal_handler(sig)
            if owned:
                await self.in_store(store.close)
            self._store_thread.shutdown(wait=False)
            return code
        try:
            if not await self.services.start_http():
                return EX_CONFIG
            async with aiohttp.ClientSession(connector=self.connector()) as session:
                self._wire(session)
                await self._carry_out(self.machine.restore(restored, self.clock()))
                code = await self.services.serve(self._loop(), self._stopping) or self._exit_code
                await self._drain()
        finally:
            for sig in signals:
                asyncio.get_running_loop().remove_signal_handler(sig)
            await self.services.stop_http()
            if owned:
                await self.in_store(store.close)
            self._store_thread.shutdown(wait=True)
        self.log.info("holdd_stopped", exit_code=code)
        return code

    async def in_store(self, fn: Callable[_P, _R], *args: _P.args, **kwargs: _P.kwargs) -> _R:
        """Run one store call: on the store thread for a database across the
        network (PostgreSQL: a connect or a lock may take seconds), and while
        the store is being opened; on the loop for the local SQLite file,
        whose waits are bounded by its short busy timeout (a hop to a thread
        costs about 0.3 ms here, twice per held call), unless a call sent to
        the thread (`_write`, under load) may still be running there."""
        threaded = self._threaded
        if (
            self.store is not None
            and not getattr(self.store, "shared", False)
            and (threaded is None or threaded.done())
        ):
            return fn(*args, **kwargs)
        return await self._on_store_thread(fn, *args, **kwargs)

    async def _on_store_thread(
        self, fn: Callable[_P, _R], *args: _P.args, **kwargs: _P.kwargs
    ) -> _R:
        """Run one store call on the store thread (one at a time, in order)."""
        future = self._store_thread.submit(fn, *args, **kwargs)
        self._threaded = future
        return await asyncio.wrap_future(future)

    async def _open_store(self) -> Store | None:
        """Open the store. A database that cannot be reached yet is tried
        again with backoff (logged once) until it answers or holdd is
        stopped; any other problem (a bad file, a newer schema) stops holdd."""
        delays = full_jitter(1.0, 30.0)
        failing = False
        while True:
            try:
                store = await self.in_store(
                    open_store, self.settings, on_write=self.metrics.ledger_written
                )
            except StoreUnavailable as exc:
                if not failing:
                    failing = True
                    self.log.error(
                        "state_unreachable",
                        **where_fields(self.settings),
                        error=str(exc),
                        hint="holdd keeps trying; check the database server and [state] url",
                    )
                if self._stopping.is_set():
                    self._exit_code = EX_TEMPFAIL
                    return None
                await self._pause(next(delays))
                continue
            except StoreError as exc:
                self.log.error("state_unusable", **where_fields(self.settings), error=str(exc))
                return None
            if failing:
                self.log.info("state_reachable", **where_fields(self.settings))
            return store

    async def _pause(self, delay: float) -> None:
        """Sleep `delay` seconds, or less when holdd is asked to stop."""
        try:
            async with asyncio.timeout(delay):
                await self._stopping.wait()
        except TimeoutError:
            pass

    async def _load(self, store: Store) -> Restored:
        now = self.clock()
        rules = self.machine.rules
        keep = max(self.settings.state_retention, rules.longest_cooldown)
        restored = await self.in_store(store.load, cooldowns_since=now - keep)
        pending = sum(c.result is None for c in restored.claims)
        fields: dict[str, object] = dict(where_fields(self.settings))
        instance = getattr(store, "instance", None)
        if instance is not None:
            fields["instance"] = instance
        self.log.info("state_opened", pending_claims=pending, **fields)
        self.metrics.rules_reloaded(True, now, len(rules.rules))
        return restored

    def _install_signals(self) -> tuple[signal.Signals, ...]:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGHUP, self.reload_rules)
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop, sig.name)
        return (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)

    def _wire(self, session: aiohttp.ClientSession) -> None:
        """The Call API client and the runner that reports into the queue."""
        s = self.settings
        self.api = CallApiClient(session, s.callapi_url, s.credentials, s.timeout)
        api = self.api
        self.metrics.track_callapi(api.stats)
        lease_valid = getattr(self.store, "lease_valid", None)
        if lease_valid is not None:
            guard: Callable[[], bool] = lease_valid
            api.send_guard = lambda method: (
                None if method == "list.calls" or guard() else "lease_unconfirmed"
            )
        self.metrics.track_queues(
            self.inputs.qsize, lambda: api.queue_depth, lambda: api.oldest_wait
        )
        self.runner = Runner(
            self.api,
            on_hold=lambda d, v: self.submit(HoldDone(d, v)),
            on_unhold=lambda c, r, v: self.submit(UnholdDone(c, r, v)),
            on_retry=self.metrics.retried,
            deadline=s.action_deadline,
            # Enough to keep every connection busy while some holds sleep out
            # a retry's backoff; a flood waits in the runner's FIFO, not as tasks.
            workers=2 * s.max_connections,
        )
        self.metrics.track_actions(self.runner)

    async def _drain(self) -> None:
        """Requests in flight get `stop_timeout`; their results are recorded."""
        assert self.runner is not None  # noqa: S101 - wired before serving
        left = await self.runner.drain(within=self.stop_timeout)
        if left.total:
            self.log.warning(
                "holdd_stop_abandoned_requests", count=left.total, not_started=left.not_started
            )
        await self._turn()

    async def _loop(self) -> None:
        while True:
            first = await self.inputs.get()
            if isinstance(first, HoldDone | UnholdDone) and self.inputs.empty():
                # A request's result alone sends nothing and waits for no one:
                # the loop runs once more first, so that what arrives with it
                # (the next notification, say) shares its transaction and fsync.
                # Kept aside meanwhile: if the stop cancels the loop here, the
                # last turn (_drain) still records it.
                self._held_back = first
                await asyncio.sleep(0)
                self._held_back = None
            await self._turn(first)
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                # The stop came during the turn's commit, which finished the
                # turn first (`_write`): now the loop stops.
                raise asyncio.CancelledError

    async def _turn(self, first: Input | None = None) -> None:
        """One loop turn: every queued input, one transaction, then the rest."""
        if first is None and self._held_back is not None:
            first, self._held_back = self._held_back, None
        batch = [] if first is None else [first]
        while len(batch) < TURN and not self.inputs.empty():
            batch.append(self.inputs.get_nowait())
        out = Commands()
        for item in batch:
            try:
                out.extend(self._feed(item, self.clock()))
            except Exception:
                # One input that trips a bug is logged and counted; the loop goes on.
                if isinstance(item, Frame):
                    self._count_drop("internal_error")
                    self.log.exception("notification_failed", source=item.source)
                else:
                    self.log.exception("input_failed", input=type(item).__name__)
        await self._carry_out(out)
        self.progressed()
        if self._backpressure and self.inputs.qsize() < self.inputs.maxsize // 2:
            self._backpressure = False
            self.log.info("backpressure_off", queued=self.inputs.qsize())
        # A queue that never empties must not starve timers, probes, the
        # watchdog or the stream's reader: every turn gives them a go.
        await asyncio.sleep(0)

    def progressed(self) -> None:
        """Wake every `wait_for` to check its predicate again."""
        tick, self._tick = self._tick, asyncio.Event()
        tick.set()

    def _feed(self, item: Input, now: float) -> Commands:
        m = self.machine
        if isinstance(item, Frame):
            return m.notifications(self._decode(item), item.source, now)
        if isinstance(item, Snapshot):
            self.resyncs += 1
            return m.snapshot(item.active, item.taken_at, now)
        if isinstance(item, TimerDue):
            return m.timer_due(item.timer, now)
        if isinstance(item, HoldDone):
            self._budget()
            return m.hold_settled(item.decision, item.verdict, now)
        if isinstance(item, UnholdDone):
            return m.unhold_settled(item.call_session_id, item.rule, item.verdict, now)
        if isinstance(item, Adopt):
            return m.adopt(item.adopted, now)
        out = m.reload(item.rules, now)
        self.metrics.rules_reloaded(True, now, len(item.rules.rules))
        sdnotify.ready(f"{len(item.rules.rules)} rules active")
        return out

    def _decode(self, frame: Frame) -> Decoded:
        names = self.machine.names
        payload = frame.payload
        if isinstance(payload, bytes) and frame.source == "websocket":
            return Decoded(
                rejections=[Rejection(RejectReason.BINARY_FRAME, f"{len(payload)} bytes")]
            )
        if isinstance(payload, str | bytes):
            return decode(payload, names)
        decoded = Decoded()
        decode_value(payload, names, decoded)
        return decoded

    async def _carry_out(self, out: Commands) -> None:
        """The store first; nothing is sent before its claim is durable."""
        refused: set[ClaimKey] = set()
        if self._exit_code in (EX_TEMPFAIL, EX_CONFIG):
            return  # the store failed: nothing more is carried out before the stop
        if out.persist and self.store is not None:
            committed = await self._commit(out.persist, len(out.sends))
            if committed is None:
                return
            refused = committed
            self.metrics.store_commits.inc()
        now = self.clock()
        for key in refused:
            out.extend(self.machine.claim_refused(key, now))
        for record in out.logs:
            getattr(self.log, record.level)(record.event, **record.fields)
        for metric in out.metrics:
            self._count(metric.name, metric.labels)
        for change in out.timers:
            if isinstance(change, Arm):
                self.services.arm(change.timer)
        assert self.runner is not None  # noqa: S101 - set before any input is fed
        for send in out.sends:
            if send.key in refused:
                continue
            if isinstance(send, SendHold):
                self.runner.hold(send.decision)
            else:
                self.runner.unhold(send.call_session_id, send.rule)

    async def _commit(self, ops: list[StoreOp], sends: int) -> set[ClaimKey] | None:
        """Write one turn's operations; the claims refused, or None when the
        turn is given up (holdd stops).

        A write that fails is tried again with backoff, the same operations
        (each is idempotent), until it succeeds: nothing of the turn - no
        request, no log line - is carried out before, so nothing is sent
        without its durable claim, and nothing the machine decided is lost.
        Meanwhile the loop takes no input: the stream's reading pauses and
        the webhook answers 503 (backpressure), /readyz says why. A store
        that no trying can mend (the file deleted, replaced or damaged, the
        lease lost) stops holdd instead (`store_lost`).
        """
        assert self.store is not None  # noqa: S101 - the caller checked
        delays = full_jitter(0.2, 5.0)
        while True:
            try:
                refused = await self._write(self.store, ops)
            except (StateDbReplaced, StateDbCorrupt, LeaseLost) as exc:
                self.store_lost(exc, sends)
                return None
            except StoreError as exc:
                self.store_failed(exc, sends)
                if self._stopping.is_set():
                    return None
                await self._pause(next(delays))
                continue
            self.store_ok()
            return refused

    async def _write(self, store: Store, ops: list[StoreOp]) -> set[ClaimKey]:
        """One commit. On the loop for the local SQLite file while few requests
        are out; on the store thread for the shared store, and for SQLite while
        `OFF_LOOP_FROM` requests or more are out (their answers are read while
        the disk syncs).

        A stop that comes while the store thread writes does not cut the turn
        short: its claims are being made durable, so the turn waits for them
        and is carried out (its requests go out within the stop's bound), and
        the loop stops after it (`_loop`).
        """
        threaded = self._threaded
        out = (
            getattr(store, "shared", False)
            or (
                isinstance(store, StateDb)
                and self.runner is not None
                and self.runner.in_flight >= OFF_LOOP_FROM
            )
            or (threaded is not None and not threaded.done())
        )
        if not out:
            return store.commit(ops)
        future = self._store_thread.submit(store.commit, ops)
        self._threaded = future
        written = asyncio.wrap_future(future)
        try:
            return await asyncio.shield(written)
        except asyncio.CancelledError:
            return await written

    def store_failed(self, exc: StoreError, sends: int = 0) -> None:
        """A store write (a commit, a heartbeat) failed: logged once per outage."""
        self._store_failures += 1
        self.progressed()
        if self.store_trouble is not None:
            return
        self.store_trouble = (str(exc), time.monotonic())
        self.metrics.state_write_failures.inc()
        self.log.error(
            "state_write_failed",
            **where_fields(self.settings),
            error=str(exc),
            requests_waiting=sends,
            hint="holdd sends nothing it cannot claim and tries again; check the state"
            " directory's disk space and permissions, or the database server",
        )

    def store_ok(self) -> None:
        if self.store_trouble is None:
            return
        _why, since = self.store_trouble
        self.store_trouble = None
        self.log.info(
            "state_write_recovered",
            **where_fields(self.settings),
            after=round(time.monotonic() - since, 3),
            attempts=self._store_failures,
        )
        self._store_failures = 0

    def store_lost(self, exc: StoreError, sends: int) -> None:
        """The store can no longer be trusted to be ours: stop, sending nothing."""
        if isinstance(exc, LeaseLost):
            # Another instance took this one for dead and adopted its work; a
            # restart rejoins under a new lease.
            self.log.error("lease_lost", error=str(exc), requests_not_sent=sends)
            self._exit_code = EX_TEMPFAIL
            self.request_stop("lease_lost")
            return
        if isinstance(exc, StateDbCorrupt):
            # No write will take, and a restart would find the same damage.
            self._log_corrupt(exc, requests_not_sent=sends)
            self._exit_code = EX_CONFIG
            self.request_stop("state_corrupt")
            return
        # Someone deleted or swapped the file: a restart on an empty ledger
        # could act on calls again, so a person must look (no restart).
        self.log.error(
            "state_replaced",
            error=str(exc),
            requests_not_sent=sends,
            hint="restore the state database, or remove the new one, then start holdd",
        )
        self._exit_code = EX_CONFIG
        self.request_stop("state_replaced")

    def _log_corrupt(self, exc: StoreError, **fields: object) -> None:
        self.log.error(
            "state_corrupt",
            **where_fields(self.settings),
            error=str(exc),
            **fields,
            hint="stop holdd; restore the state database from a backup, or move it (with its"
            " -wal and -shm files) away to start with an empty state, then start holdd",
        )

    def _count(self, name: str, labels: tuple[str, ...]) -> None:
        if name == "notification":
            kind, reason = labels
            if reason:
                self._count_drop(reason, kind)
            else:
                self.metrics.notification(kind)
        elif name == "rule_matched":
            self.metrics.rule_matched(labels[0])
        elif name == "action":
            self.metrics.action(*labels)
        elif name == "unknown_name":
            self.metrics.unknown_name(labels[0])

    def _count_drop(self, reason: str, kind: str = "unknown") -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + 1
        self.metrics.notification(kind, dropped_reason=reason)

    def _budget(self) -> None:
        limits = self.api.last_limits if self.api is not None else None
        if limits is not None:
            self.metrics.api_budget(
                minute_remaining=limits.minute_remaining,
                day_remaining=limits.day_remaining,
                minute_limit=limits.minute_limit,
                day_limit=limits.day_limit,
            )


__all__ = ["EX_CONFIG", "Daemon", "Frame", "Snapshot", "TimerDue"]
