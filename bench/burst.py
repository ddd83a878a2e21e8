"""A burst (bench helper): `calls` calls already in Talk when the daemon
starts, so its first `list.calls` finds them all at once (a large call
centre after an outage); the API answers each `hold.call` `delay` seconds
late; `max_connections` = `pool`. Counts what the operator would: calls held
exactly once, `hold.call` requests, `list.calls` requests, and the seconds
from the daemon's start to the last hold.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from corepath import rule_file
from e2e import LIMIT, TOKEN, _null_stream
from holdd.config.rulefiles import load_rules
from holdd.config.settings import load_settings
from holdd.io import logs
from holdd.io.daemon import Daemon
from holdd.sim.server import Simulator


@dataclass(frozen=True, slots=True)
class BurstResult:
    calls: int
    held_once: int
    hold_requests: int
    listings: int
    seconds: float


async def run_burst(calls: int = 5_000, delay: float = 0.005, pool: int = 10) -> BurstResult:
    sim = Simulator(tokens=(TOKEN,), media_ids=("2034",), minute_limit=LIMIT, day_limit=LIMIT)
    await sim.start()
    sink = _null_stream()
    try:
        now = time.time()
        for i in range(calls):
            call, _ = sim.account.start_call(
                now, direction="in", contact_phone_number=f"7926{i:07d}"
            )
            sim.account.answer(call.call_session_id, now)
        sim.faults.delay(delay, n=calls * 2, method="hold.call")
        with tempfile.TemporaryDirectory(prefix="holdd-burst-") as tmp:
            directory = Path(tmp)
            rules = rule_file(directory, 10)
            config = directory / "holdd.toml"
            config.write_text(
                f'[callapi]\nurl = "{sim.callapi_url}"\naccess_token = "{TOKEN}"\n'
                f'timeout = "5s"\nmax_connections = {pool}\n\n'
                f'[notify]\nurl = "{sim.notify_url}"\n\n[rules]\nfiles = ["{rules.name}"]\n\n'
                '[state]\npath = "state.db"\n\n[http]\nlisten = "127.0.0.1:0"\n',
                encoding="utf-8",
            )
            settings = load_settings(config)
            logs.configure(fmt="json", level="info", secrets=settings.secrets, stream=sink)
            daemon = Daemon(settings, load_rules(settings.rule_files))
            started = time.monotonic()
            task = asyncio.create_task(daemon.run(install_signals=False))
            try:
                async with asyncio.timeout(max(120.0, calls / 20)):
                    await daemon.wait_for(lambda: daemon.machine.settled >= calls, within=1e9)
                took = time.monotonic() - started
            finally:
                daemon.request_stop("bench over")
                await task
        requests = sim.requests
        return BurstResult(
            calls,
            sum(c.hold_count == 1 for c in sim.account.calls.values()),
            sum(r.method == "hold.call" for r in requests),
            sum(r.method == "list.calls" for r in requests),
            took,
        )
    finally:
        sink.close()
        await sim.stop()


def fsync_seconds(samples: int = 50) -> float:
    """The median time of one durable SQLite commit here (WAL, synchronous=FULL):
    the floor under a durable claim, measured in the same run."""
    import sqlite3
    import statistics

    with tempfile.TemporaryDirectory(prefix="holdd-fsync-") as tmp:
        conn = sqlite3.connect(Path(tmp) / "f.db", isolation_level=None)
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute("CREATE TABLE t (x INTEGER)")
            times = []
            for i in range(samples):
                start = time.perf_counter()
                conn.execute("INSERT INTO t VALUES (?)", (i,))
                times.append(time.perf_counter() - start)
        finally:
            conn.close()
    return statistics.median(times)
