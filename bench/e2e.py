"""End to end over real sockets (bench helper).

The simulator (holdd.sim.server.Simulator on 127.0.0.1:0) pushes
`talk_started` notifications over its websocket; a real `Daemon` (in this
process and event loop, config in a temporary directory) holds each call
with `hold.call`. The same traffic then goes to the ~30-line baseline relay
of relay.py. Everything shares one event loop and one core, as the daemon
does in production.

Two phases per contender:

* flood: `calls` notifications pushed as fast as the simulator can send
  them; holds/s from the first notification to the last `hold.call`, and
  the latency of each call (which here is mostly time spent queued).
* one at a time: the next call starts only when the previous `hold.call`
  has arrived; the latency of the pipeline itself.

Latency: from just before the simulator sends the notification to the
moment its `hold.call` request arrives at the simulator (both on
`time.monotonic()`).
"""

from __future__ import annotations

import asyncio
import os
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import orjson
from aiohttp import web

from corepath import rule_file
from holdd.config.rulefiles import load_rules
from holdd.config.settings import load_settings
from holdd.io import logs
from holdd.io.daemon import Daemon
from holdd.io.store.memory import MemoryStore
from holdd.sim.faults import Handler, RpcFaults
from holdd.sim.server import Simulator
from relay import relay

TOKEN = "bench-permanent-key-5d1e0c"  # noqa: S105 - the simulator's made-up key
#: Budget far above the traffic: the bench measures holdd, not the pacing.
LIMIT = 1_000_000_000


class HoldArrivals(RpcFaults):
    """The simulator's fault layer (no fault armed), noting when each
    `hold.call` arrives and waking a waiter once enough were answered."""

    def __init__(self, sim: Simulator) -> None:
        super().__init__(sim.account)
        self.arrived: dict[int, float] = {}
        self.answered = 0
        self._target = 0
        self._reached = asyncio.Event()

    async def serve(self, request: web.Request, handle: Handler) -> web.StreamResponse:
        at = time.monotonic()
        body = await request.read()  # aiohttp keeps it: serve() reads it again at no cost
        doc = orjson.loads(body)
        csid = doc["params"].get("call_session_id") if doc.get("method") == "hold.call" else None
        if isinstance(csid, int):
            self.arrived.setdefault(csid, at)
        try:
            return await super().serve(request, handle)
        finally:
            if csid is not None:
                self.answered += 1
                if self.answered >= self._target:
                    self._reached.set()

    async def wait_answered(self, n: int, within: float) -> None:
        """Wait until `n` hold.call requests (in all) have been answered."""
        self._target = n
        self._reached.clear()
        if self.answered >= n:
            return
        try:
            async with asyncio.timeout(within):
                await self._reached.wait()
        except TimeoutError:
            raise TimeoutError(f"{self.answered} of {n} hold.call answered in {within} s") from None


@dataclass(slots=True)
class Contender:
    name: str
    flood_calls: int = 0
    flood_seconds: float = 0.0
    flood_latencies: list[float] = field(default_factory=list)
    paced_latencies: list[float] = field(default_factory=list)
    #: Seconds the event loop spent in state database writes during the flood.
    sqlite_seconds: float | None = None
    sqlite_writes: int | None = None

    @property
    def holds_per_second(self) -> float:
        return self.flood_calls / self.flood_seconds

    @property
    def sqlite_share(self) -> float | None:
        if self.sqlite_seconds is None:
            return None
        return self.sqlite_seconds / self.flood_seconds


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100) of `values`, interpolated."""
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[round(q) - 1]


def _simulator() -> tuple[Simulator, HoldArrivals]:
    sim = Simulator(tokens=(TOKEN,), media_ids=("2034",), minute_limit=LIMIT, day_limit=LIMIT)
    arrivals = HoldArrivals(sim)
    sim.faults = arrivals
    return sim, arrivals


async def _push(sim: Simulator, first: int, count: int) -> dict[int, float]:
    """Start `count` calls at the API and send each one's talk notification."""
    sent: dict[int, float] = {}
    for i in range(first, first + count):
        now = time.time()
        call, _ = sim.account.start_call(
            now,
            direction="in",
            virtual_phone_number="74993720692",
            contact_phone_number=f"7926{i:07d}",
        )
        notes = sim.account.answer(call.call_session_id, now)
        sent[call.call_session_id] = time.monotonic()
        await sim.send_notifications(*notes)
    return sent


async def _phases(
    sim: Simulator,
    arrivals: HoldArrivals,
    result: Contender,
    calls: int,
    paced: int,
    on_flood: Callable[[], Awaitable[None]] | None = None,
) -> None:
    sent = await _push(sim, 0, calls)
    await arrivals.wait_answered(calls, within=max(60.0, calls / 20))
    first = min(sent.values())
    last = max(arrivals.arrived[c] for c in sent)
    result.flood_calls = calls
    result.flood_seconds = last - first
    result.flood_latencies = [arrivals.arrived[c] - t for c, t in sent.items()]
    if on_flood is not None:
        await on_flood()
    for i in range(paced):
        [(csid, at)] = (await _push(sim, calls + i, 1)).items()
        await arrivals.wait_answered(calls + i + 1, within=10.0)
        result.paced_latencies.append(arrivals.arrived[csid] - at)
    held = sum(c.hold_count for c in sim.account.calls.values())
    if held != calls + paced:
        raise AssertionError(f"{held} of {calls + paced} calls held: the run is not valid")


async def run_relay(calls: int, paced: int) -> Contender:
    sim, arrivals = _simulator()
    await sim.start()
    result = Contender("baseline relay (relay.py)")
    task = asyncio.create_task(relay(sim.notify_url, sim.callapi_url, TOKEN))
    try:
        await sim.wait_for_clients(1, timeout=10)
        await _phases(sim, arrivals, result, calls, paced)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await sim.stop()
    return result


def _config(directory: Path, sim: Simulator, rules: Path, state: str | None = None) -> Path:
    path = directory / "holdd.toml"
    path.write_text(
        f'[callapi]\nurl = "{sim.callapi_url}"\naccess_token = "{TOKEN}"\ntimeout = "5s"\n\n'
        f'[notify]\nurl = "{sim.notify_url}"\n\n'
        f'[rules]\nfiles = ["{rules.name}"]\n\n'
        + (state or '[state]\npath = "state.db"\n')
        + '\n[http]\nlisten = "127.0.0.1:0"\n\n[log]\nformat = "json"\nlevel = "info"\n',
        encoding="utf-8",
    )
    return path


def _null_stream() -> BinaryIO:
    """Where the daemon's log goes: rendered in full, then thrown away."""
    return Path(os.devnull).open("wb")


def _ledger_writes(daemon: Daemon) -> tuple[float, int]:
    """Seconds and count of state database writes so far (the daemon's own histogram)."""
    seconds = 0.0
    count = 0
    for metric in daemon.metrics.registry.collect():
        if metric.name != "holdd_ledger_write_seconds":
            continue
        for sample in metric.samples:
            if sample.name.endswith("_sum"):
                seconds += sample.value
            elif sample.name.endswith("_count"):
                count += int(sample.value)
    return seconds, count


async def run_daemon(
    calls: int, paced: int, rule_count: int, *, sqlite: bool, state: str | None = None
) -> Contender:
    """The daemon with `rule_count` rules; with the SQLite state database, an
    in-memory ledger, or the `[state]` section `state` (a PostgreSQL url)."""
    sim, arrivals = _simulator()
    await sim.start()
    label = "SQLite state, synchronous=FULL" if sqlite else "in-memory ledger, no state db"
    if state is not None:
        label = "PostgreSQL shared store (one instance)"
    result = Contender(f"holdd daemon, {rule_count} rules, {label}")
    sink = _null_stream()
    try:
        with tempfile.TemporaryDirectory(prefix="holdd-bench-") as tmp:
            directory = Path(tmp)
            settings = load_settings(
                _config(directory, sim, rule_file(directory, rule_count), state)
            )
            logs.configure(fmt="json", level="info", secrets=settings.secrets, stream=sink)
            rules = load_rules(settings.rule_files, settings.tts_max_length)
            durable = sqlite or state is not None
            daemon = Daemon(settings, rules, store=None if durable else MemoryStore())
            task = asyncio.create_task(daemon.run(install_signals=False))
            try:
                await sim.wait_for_clients(1, timeout=20)
                await daemon.wait_for(lambda: daemon.resyncs >= 1, within=20)
                before = _ledger_writes(daemon)

                async def flood_done() -> None:
                    # Every hold concluded (its result written to the ledger too).
                    await daemon.wait_for(lambda: daemon.machine.settled >= calls)
                    if durable:
                        after = _ledger_writes(daemon)
                        result.sqlite_seconds = after[0] - before[0]
                        result.sqlite_writes = after[1] - before[1]

                await _phases(sim, arrivals, result, calls, paced, flood_done)
            finally:
                daemon.request_stop("bench over")
                code = await task
            if code != 0:
                raise AssertionError(f"the daemon exited {code}")
    finally:
        sink.close()
        await sim.stop()
    return result
