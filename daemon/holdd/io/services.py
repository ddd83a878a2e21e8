"""The daemon's long-running tasks around its loop (shell): the HTTP probes,
the notification stream, the webhook, resync with `list.calls`, timers,
sweeping and pruning. Each only produces inputs for the daemon's queue (or
answers a probe); none changes state itself (docs/architecture.md).

Both HTTP listeners are io/listener.py `Listener`s with the `[http]` guards;
while they run, the loop's exception handler is io/throttled.py's
`LoopErrorLog` (an accept() failing with EMFILE is logged once a minute, not
once a retry).
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import time
from collections.abc import Callable, Coroutine, Iterator
from typing import TYPE_CHECKING, Any

from aiohttp import web

from holdd.callapi import CallApiFailure
from holdd.core.backoff import full_jitter
from holdd.core.errors import StoreError
from holdd.core.rules.driver import Timer, TimerKind
from holdd.io import sdnotify
from holdd.io.http import HttpServer
from holdd.io.inputs import Adopt, Frame, Snapshot, TimerDue
from holdd.io.listener import Limits, Listener
from holdd.io.notify import NotifyListener
from holdd.io.store.postgres import LeaseLost, PgStore
from holdd.io.store.sqlite import StateDbCorrupt
from holdd.io.throttled import LoopErrorLog
from holdd.io.webhook import MAX_BODY, WebhookReceiver

if TYPE_CHECKING:
    from holdd.io.daemon import Daemon


#: While holds are parked, a failed listing is tried again within this many seconds.
_PARKED_RETRY = 5.0
#: The longest single wait of an idle resync task (it loops until its deadline).
_IDLE_STEP = 3600.0


def _parked_backoff() -> Iterator[float]:
    """How soon to list the calls again while holds are parked: 1 s, then
    doubling to 30 s (whatever [notify] resync_interval says)."""
    delay = 1.0
    while True:
        yield delay
        delay = min(delay * 2, 30.0)


class Services:
    def __init__(self, daemon: Daemon) -> None:
        self.d = daemon
        self.http: HttpServer | None = None
        self.listener: NotifyListener | None = None
        self.webhook: WebhookReceiver | None = None
        #: Where the webhook receiver listens once started (port 0 resolved).
        self.webhook_address: tuple[str, int] | None = None
        #: Set to ask for a resync now (the stream reconnected).
        self.resync_wanted = asyncio.Event()
        self._last_down_reason = "start"
        self._heap: list[tuple[float, int, Timer]] = []
        self._armed: dict[tuple[TimerKind, int], Timer] = {}
        self._seq = 0
        self._timers_changed = asyncio.Event()
        self._parked_delays = _parked_backoff()
        self.loop_errors = LoopErrorLog()

    @property
    def limits(self) -> Limits:
        """`[http] header_timeout`, `body_timeout`, `connection_limit`."""
        s = self.d.settings
        return Limits(s.http_header_timeout, s.http_body_timeout, s.http_connection_limit)

    # -- the whole set ---------------------------------------------------------------

    async def serve(self, loop: Coroutine[Any, Any, None], stopping: asyncio.Event) -> int:
        """Run the loop and every task until `stopping`; the exit code."""
        d = self.d
        code = 0
        try:
            async with asyncio.TaskGroup() as tg:
                tasks = [
                    tg.create_task(loop, name="loop"),
                    tg.create_task(self._sweep(), name="sweep"),
                    tg.create_task(self._resync(), name="resync"),
                    tg.create_task(sdnotify.watchdog_loop(), name="watchdog"),
                    tg.create_task(self._timers(), name="timers"),
                ]
                if hasattr(d.store, "prune"):
                    tasks.append(tg.create_task(self._prune(), name="prune"))
                if isinstance(d.store, PgStore):
                    tasks.append(tg.create_task(self._heartbeat(d.store), name="heartbeat"))
                if d.settings.notify_url is not None:
                    self.listener = NotifyListener(
                        d.settings.notify_url,
                        d.settings.notify_headers,
                        idle_timeout=d.settings.idle_timeout,
                        on_connect=self._stream_up,
                        on_disconnect=self._stream_down,
                    )
                    tasks.append(tg.create_task(self._consume(self.listener), name="consume"))
                if d.settings.webhook_listen is not None:
                    tasks.append(tg.create_task(self._serve_webhook(), name="webhook"))
                sdnotify.ready(f"{len(d.machine.rules.rules)} rules active")
                await stopping.wait()
                for task in tasks:
                    task.cancel()
        except* Exception as group:
            for failure in group.exceptions:
                d.log.error(
                    "holdd_failed", exc_info=(type(failure), failure, failure.__traceback__)
                )
            code = 1
        return code

    # -- HTTP probes -------------------------------------------------------------------

    async def start_http(self) -> bool:
        d = self.d
        host, port = d.settings.http_listen
        self.http = HttpServer(
            d.metrics.registry,
            {
                "notify": self._ready_notify,
                "rules": self._ready_rules,
                "callapi": self._ready_api,
                "store": self._ready_store,
                **({"webhook": self._ready_webhook} if d.settings.webhook_listen else {}),
            },
            host=host,
            port=port,
            limits=self.limits,
        )
        d.metrics.track_listener("http", self.http.stats)
        self.loop_errors.install()
        try:
            await self.http.start()
        except OSError as exc:
            # Usually the port is taken: a restart would only hit it again.
            d.log.error(
                "http_listen_failed",
                host=host,
                port=port,
                error=str(exc),
                hint="another process listens there: change [http] listen",
            )
            self.http = None
            return False
        d.log.info("http_listening", host=host, port=self.http.port)
        return True

    async def stop_http(self) -> None:
        try:
            if self.http is not None:
                await self.http.stop()
        finally:
            self.loop_errors.uninstall()

    def _ready_notify(self) -> tuple[bool, str]:
        if self.listener is not None and self.listener.connected.is_set():
            return True, "notification stream connected"
        if self.webhook_address is not None:
            return True, "webhook listening"
        if self.listener is not None and self.listener.down_since is not None:
            down = time.monotonic() - self.listener.down_since
            return False, f"notification stream down for {down:.0f} s"
        return False, "no notification source running"

    def _ready_webhook(self) -> tuple[bool, str]:
        if self.webhook is None or self.webhook_address is None:
            return False, "webhook not listening yet"
        if self.webhook.queue.full():
            return False, (
                f"webhook cannot accept: {self.webhook.queue.qsize()} posts queued,"
                " answering 503 with Retry-After until the daemon catches up"
            )
        return True, "webhook accepting"

    def _ready_rules(self) -> tuple[bool, str]:
        return True, f"{len(self.d.machine.rules.rules)} rules loaded"

    def _ready_store(self) -> tuple[bool, str]:
        d = self.d
        if d.store_trouble is not None:
            why, since = d.store_trouble
            return False, f"state store failing for {time.monotonic() - since:.0f} s ({why})"
        if isinstance(d.store, PgStore):
            if not d.store.lease_valid():
                return False, "lease on the shared store not renewed in time"
            return True, f"shared store, instance {d.store.instance}"
        return True, "state store writable"

    def _ready_api(self) -> tuple[bool, str]:
        api = self.d.api
        if api is None:
            return False, "Call API client not started"
        if not api.credentials_ok:
            return False, api.credentials_problem or "credentials rejected"
        if api.unreachable is not None:
            why, since = api.unreachable
            return False, f"Call API failing for {time.monotonic() - since:.0f} s ({why})"
        return True, "credentials accepted"

    # -- notifications in ----------------------------------------------------------------

    def _stream_up(self, outage: float | None) -> None:
        self.d.metrics.stream_up()
        if outage is not None and self.listener is not None and self.listener.reconnects:
            self.d.metrics.reconnected(self._last_down_reason, outage)
        self.want_resync()

    def _stream_down(self, reason: str) -> None:
        self._last_down_reason = reason
        self.d.metrics.stream_down()
        self.d.progressed()

    async def _consume(self, listener: NotifyListener) -> None:
        async for raw in listener.messages():
            await self.d.submit(Frame(raw, "websocket"))

    async def _serve_webhook(self) -> None:
        d = self.d
        settings = d.settings
        assert settings.webhook_listen is not None  # noqa: S101 - checked by the caller
        assert settings.webhook_secret is not None  # noqa: S101
        queue: asyncio.Queue[tuple[str, object]] = asyncio.Queue(10_000)
        limits = self.limits
        self.webhook = WebhookReceiver(
            settings.webhook_path,
            settings.webhook_secret.reveal(),
            queue,
            body_timeout=limits.body_timeout,
        )
        d.metrics.track_webhook(self.webhook.counts)
        app = web.Application(client_max_size=MAX_BODY)
        self.webhook.routes(app)
        listener = Listener(app, "webhook", limits)
        d.metrics.track_listener("webhook", listener.stats)
        host, port = settings.webhook_listen
        await listener.start(host, port)
        try:
            self.webhook_address = listener.address
            d.log.info(
                "webhook_listening",
                host=self.webhook_address[0],
                port=self.webhook_address[1],
                path=settings.webhook_path,
            )
            while True:
                source, payload = await queue.get()
                await d.submit(Frame(payload, source))
        finally:
            await listener.stop()
            self.webhook.close()

    async def _resync(self) -> None:
        """Reconcile with `list.calls` at start, after every reconnect, on a
        timer, and soon after a hold is parked (docs/operations.md `hold_parked`)."""

        d = self.d
        failures = full_jitter(1.0, 60.0)
        while True:
            self.resync_wanted.clear()
            taken_at = d.clock()
            assert d.api is not None  # noqa: S101 - started before the tasks
            try:
                active = await d.api.list_calls()
            except CallApiFailure as exc:
                delay = next(failures)
                if d.machine.unsettled:
                    delay = min(delay, _PARKED_RETRY)  # parked holds: notice the API's return soon
                d.log.warning("resync_failed", error=str(exc), retry_in=round(delay, 3))
                await self._idle(delay, lambda: _PARKED_RETRY)
                continue
            failures = full_jitter(1.0, 60.0)
            await d.submit(Snapshot(active, taken_at))
            await self._next_resync()

    async def _next_resync(self) -> None:
        """Wait until the next resync is due: asked for (a reconnect, adopted
        claims to settle), parked holds to look at again, or the periodic one.
        With a shared store one instance per interval runs the periodic one."""
        d = self.d
        while True:
            wait = d.settings.resync_interval or None
            if d.machine.unsettled:
                # Holds parked while the API failed: look again soon.
                parked = next(self._parked_delays)
                wait = parked if wait is None else min(wait, parked)
            else:
                self._parked_delays = _parked_backoff()
            await self._idle(wait, lambda: next(self._parked_delays))
            if (
                self.resync_wanted.is_set()
                or d.machine.unsettled
                or not isinstance(d.store, PgStore)
            ):
                return
            # The periodic one: with a shared store, one instance per interval.
            try:
                if await d.in_store(d.store.take_resync, d.settings.resync_interval):
                    return
            except StoreError:
                return  # the store's trouble is the heartbeat's to report

    def want_resync(self) -> None:
        """Ask for a resync now (the resync task waits on loop turns)."""
        self.resync_wanted.set()
        self.d.progressed()

    async def _idle(self, wait: float | None, parked: Callable[[], float]) -> None:
        """Until the next resync: `wait` seconds (None: no limit), or until a
        reconnect asks for one. A hold parked meanwhile (none was when the
        wait began) brings it forward to `parked()` seconds from then: the
        hold waits for a listing, which must not be the periodic one."""
        d = self.d
        loop = asyncio.get_running_loop()
        deadline = None if wait is None else loop.time() + wait
        watching = not d.machine.unsettled

        def woken() -> bool:
            return self.resync_wanted.is_set() or (watching and bool(d.machine.unsettled))

        while not self.resync_wanted.is_set():
            left = _IDLE_STEP if deadline is None else deadline - loop.time()
            if left <= 0:
                return
            try:
                # Re-checked after every loop turn; a reconnect makes one.
                await d.wait_for(woken, within=min(left, _IDLE_STEP))
            except TimeoutError:
                continue
            if watching and d.machine.unsettled:
                watching = False
                soon = loop.time() + parked()
                deadline = soon if deadline is None else min(deadline, soon)

    # -- timers, sweeping, pruning ---------------------------------------------------------

    def arm(self, timer: Timer) -> None:
        self._armed[timer.key] = timer
        self._seq += 1
        heapq.heappush(self._heap, (timer.due_at, self._seq, timer))
        self._timers_changed.set()

    async def _timers(self) -> None:
        """Turn each armed timer into an input when it comes due (the machine
        ignores one disarmed or replaced since)."""
        d = self.d
        while True:
            self._timers_changed.clear()
            while self._heap and self._armed.get(self._heap[0][2].key) != self._heap[0][2]:
                heapq.heappop(self._heap)  # replaced since
            if self._heap and self._heap[0][0] <= d.clock():
                _due, _seq, timer = heapq.heappop(self._heap)
                del self._armed[timer.key]
                await d.submit(TimerDue(timer))
                continue
            delay = None if not self._heap else self._heap[0][0] - d.clock()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._timers_changed.wait()

    async def _sweep(self) -> None:
        d = self.d
        while True:
            await asyncio.sleep(d.sweep_every)
            swept = d.machine.sweep(d.clock())
            if swept:
                d.log.debug("calls_swept", count=len(swept), remaining=len(d.machine.table))

    async def _prune(self) -> None:
        """Hourly: forget rows older than the retention, in small batches,
        letting inputs through between them (SQLite's run on the loop)."""
        d = self.d
        prune = getattr(d.store, "prune")  # noqa: B009 - the caller checked it exists
        while True:
            now = d.clock()
            total = 0
            keep = max(d.settings.state_retention, d.machine.rules.longest_cooldown)
            before = now - d.settings.state_retention
            try:
                while (
                    pruned := await d.in_store(
                        prune, before, cooldowns_before=now - keep, batch=1000
                    )
                ).total:
                    total += pruned.total
                    await asyncio.sleep(0)
            except StateDbCorrupt as exc:
                d.store_lost(exc, 0)  # damaged: holdd stops (exit 78)
                return
            except StoreError as exc:
                d.log.warning("state_prune_failed", error=str(exc))
            if total:
                d.log.info("state_pruned", rows=total)
            await asyncio.sleep(3600)

    async def _heartbeat(self, store: PgStore) -> None:
        """A shared store: renew the lease every third of it, take over the
        work of instances whose lease expired, learn the others' cooldowns
        and how many instances share the account's API budget."""
        d = self.d
        every = store.lease / 3
        while True:
            try:
                beat = await d.in_store(store.heartbeat, d.clock())
            except LeaseLost as exc:
                d.store_lost(exc, 0)
                return
            except StoreError as exc:
                d.store_failed(exc)
                await asyncio.sleep(every)
                continue
            d.store_ok()
            d.metrics.instances_live.set(beat.live)
            if d.api is not None:
                d.api.gate.instances = beat.live
            if beat.cooldowns:
                d.machine.cooldowns_seen(beat.cooldowns)
            adopted = beat.adopted
            if adopted is not None:
                d.metrics.adopted.labels("claim").inc(len(adopted.claims))
                d.metrics.adopted.labels("timer").inc(len(adopted.timers))
                await d.submit(Adopt(adopted))
                # A listing taken after `settle_in` settles their claims, and
                # finds the calls that only the dead instance heard of (a load
                # balancer spreads the webhook posts): the rules act on them here.
                asyncio.get_running_loop().call_later(adopted.settle_in + 0.05, self.want_resync)
            await asyncio.sleep(every)
