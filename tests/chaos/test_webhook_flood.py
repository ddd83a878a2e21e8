"""A flood on the webhook: thousands of notifications "talk started" with the
right secret, for calls the Call API does not know (a leaked secret, or a
misconfigured notification replaying garbage). Each is a rule match and a
hold; the work stays bounded: the holds wait in the runner's FIFO for its
2 x max_connections workers instead of being one task each, each ends at
the first answer (`call_session_not_found`: not retried, no look-up), the
`list.calls` stay a handful, and once the ended calls are swept the memory
is back where it began.

The daemon runs in this process (its tasks and its heap are counted here);
the simulator runs as `holdd sim` in a process of its own, so that its log of
every request does not count as the daemon's memory. HOLDD_FLOOD=20000 gives
the figures of docs/operations.md section 10 (5,000 by default).
"""

from __future__ import annotations

import asyncio
import gc
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import orjson

from holdd.config.rulefiles import load_rules
from holdd.config.settings import load_settings
from holdd.core.machine import RECENT
from holdd.io import logs
from holdd.io.daemon import Daemon, Frame
from support.config import MEDIA_RULE, config_text, write_config
from support.logs import EventCounts
from support.sim import TOKEN
from support.simproc import sim_process

FLOOD = int(os.environ.get("HOLDD_FLOOD", "5000"))
MAX_CONNECTIONS = 10
#: Concurrent posts, as a busy notification server (or an attacker) sends them.
POSTERS = 32
SECRET = "flood-webhook-secret-5e1d"
WEBHOOK = f'\n[webhook]\nlisten = "127.0.0.1:0"\npath = "/uis/notify"\nsecret = "{SECRET}"\n'
#: Call ids no call of the simulator has.
FIRST_ID = 7_000_000_000
#: A small flood first, so that the baseline is taken with every code path
#: of the flood run once (the interpreter's caches, the libraries' lazy parts).
WARM_UP = 300
#: Allocated blocks (sys.getallocatedblocks) the heap may be above its baseline
#: after the sweep: a few hundred were seen, whatever the flood's size.
MARGIN = 3_000


def rss_mib() -> float:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS in /proc/self/status")


@dataclass(slots=True)
class Peak:
    tasks: int = 0
    running: int = 0
    queued: int = 0
    rss: float = 0.0


def daemon_tasks() -> int:
    """The loop's tasks but the test's own (the posters and this test)."""
    return sum(
        not t.get_name().startswith("flood-") and t is not asyncio.current_task()
        for t in asyncio.all_tasks()
    )


async def turns_over(daemon: Daemon) -> None:
    """Wait until every loop turn begun so far is over, its objects released:
    a marker goes in behind them (a message that is not JSON, dropped and
    counted), and its turn ends after theirs."""
    dropped = daemon.dropped.get("not_json", 0)
    await daemon.submit(Frame(b"flood-marker", "webhook"))
    await daemon.wait_for(lambda: daemon.dropped.get("not_json", 0) > dropped)


async def post_all(url: str, first: int, count: int, statuses: dict[int, int]) -> None:
    """POST `count` notifications "talk started" for the calls from `first` on."""
    ids = iter(range(first, first + count))
    connector = aiohttp.TCPConnector(limit=POSTERS)
    async with aiohttp.ClientSession(connector=connector) as http:

        async def poster() -> None:
            for csid in ids:
                body = orjson.dumps(
                    {
                        "secret": SECRET,
                        "notification_name": "talk_started",
                        "call_session_id": csid,
                        "direction": "in",
                        "contact_phone_number": f"7926{csid % 10_000_000:07d}",
                    }
                )
                while True:
                    async with http.post(
                        url, data=body, headers={"Content-Type": "application/json"}
                    ) as resp:
                        statuses[resp.status] = statuses.get(resp.status, 0) + 1
                    if resp.status != 503:
                        break
                    # The queue is full (Retry-After: 1): back off as UIS does.
                    await asyncio.sleep(0.05)

        async with asyncio.TaskGroup() as tg:
            for n in range(POSTERS):
                tg.create_task(poster(), name=f"flood-poster-{n}")


async def test_a_webhook_flood_for_unknown_calls_stays_bounded_and_leaves_nothing(
    tmp_path: Path,
) -> None:
    async with sim_process() as sim:
        text = config_text(
            callapi_url=sim.callapi_url,
            stream=False,
            token=TOKEN,
            callapi=f"max_connections = {MAX_CONNECTIONS}\n",
            state=str(tmp_path / "state.db"),
            extra=WEBHOOK,
        )
        settings = load_settings(write_config(tmp_path, text, MEDIA_RULE))
        counts = EventCounts()
        logs.configure(fmt="json", level="info", secrets=settings.secrets, stream=counts)
        daemon = Daemon(settings, load_rules(settings.rule_files))
        task = asyncio.create_task(daemon.run(install_signals=False))
        try:
            await daemon.wait_for(
                lambda: daemon.webhook_address is not None and daemon.resyncs >= 1
            )
            host, port = daemon.webhook_address or ("", 0)
            runner = daemon.runner
            assert runner is not None
            url = f"http://{host}:{port}/uis/notify"
            statuses: dict[int, int] = {}
            await post_all(url, FIRST_ID - WARM_UP, WARM_UP, statuses)
            await daemon.wait_for(lambda: daemon.machine.settled >= WARM_UP, within=30)
            daemon.machine.table.ended_ttl = 0.0
            daemon.machine.sweep(daemon.clock())
            daemon.machine.table.ended_ttl = 600.0
            await turns_over(daemon)
            gc.collect()
            tasks0, rss0, blocks0 = daemon_tasks(), rss_mib(), sys.getallocatedblocks()
            peak = Peak(tasks0, 0, 0, rss0)

            def settled() -> bool:
                """Sampled after every loop turn of the daemon."""
                peak.tasks = max(peak.tasks, daemon_tasks())
                peak.running = max(peak.running, runner.in_flight - runner.queued)
                peak.queued = max(peak.queued, runner.queued)
                peak.rss = max(peak.rss, rss_mib())
                return daemon.machine.settled >= WARM_UP + FLOOD and runner.in_flight == 0

            began = time.monotonic()
            posting = asyncio.create_task(
                post_all(url, FIRST_ID, FLOOD, statuses), name="flood-posting"
            )
            await daemon.wait_for(settled, within=120)
            took = time.monotonic() - began
            await posting
            # Ten minutes later in production: the ended calls are swept.
            daemon.machine.table.ended_ttl = 0.0
            daemon.machine.sweep(daemon.clock())
            await turns_over(daemon)
            gc.collect()
            tasks1, rss1, blocks1 = daemon_tasks(), rss_mib(), sys.getallocatedblocks()
            machine = daemon.machine
            left = (len(machine.table), len(machine.evaluations), len(machine.outcomes))
            open_claims = len(machine.book.open)
        finally:
            daemon.request_stop("test over")
            async with asyncio.timeout(15):
                code = await task
        methods = await sim.methods()
    workers = 2 * MAX_CONNECTIONS
    print(
        f"\nwebhook flood: {FLOOD} talk_started for unknown calls (after {WARM_UP} to warm"
        f" up), settled in {took:.1f} s"
        f" (answers {statuses}); hold.call {methods['hold.call']},"
        f" list.calls {methods['list.calls']}; daemon tasks {tasks0} before,"
        f" {peak.tasks} at most, {tasks1} after (actions at once <= {peak.running},"
        f" queued <= {peak.queued}); RSS {rss0:.0f} MiB before, {peak.rss:.0f} at most,"
        f" {rss1:.0f} after the sweep; allocated blocks {blocks0} before, {blocks1} after"
        f" ({blocks1 - blocks0:+d})"
    )
    assert code == 0
    assert statuses.get(202) == WARM_UP + FLOOD
    # Each hold sent once, answered call_session_not_found, never retried.
    assert methods["hold.call"] == WARM_UP + FLOOD
    assert counts.counts["hold_call_gone"] == WARM_UP + FLOOD
    assert counts.counts["hold_retrying"] == 0 and counts.counts["hold_parked"] == 0
    assert methods["list.calls"] <= 5
    # Bounded by the connections, not by the flood: the runner's 2 x
    # max_connections workers, aiohttp's body writer of each Call API request
    # (one per connection), two per posting connection on the webhook's
    # listener (its handler and the request's).
    assert peak.running <= workers
    assert peak.tasks <= tasks0 + workers + MAX_CONNECTIONS + 2 * POSTERS + 2
    assert tasks1 <= tasks0 + 1
    # Nothing of the flood left once its calls are swept.
    assert left == (0, 0, 0) and open_claims == 0
    assert RECENT < FLOOD
    # Back within about 1% of the baseline (interpreter and library caches);
    # one object left per notification would be FLOOD more, a Call a dozen.
    assert blocks1 - blocks0 < MARGIN, "memory not back to its baseline"
