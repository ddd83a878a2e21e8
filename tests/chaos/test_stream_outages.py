"""The notification stream killed and restored 20 times while calls keep coming.

While the stream is down the daemon hears nothing: calls that reach Talk
then are found by the resync that follows every reconnect (list.calls),
calls that end meanwhile are never held, and nothing is held twice.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

from holdd.core.backoff import full_jitter
from holdd.io.notify import NotifyListener
from holdd.sim.server import Simulator
from support.chaos import RULES, ChaosFaults, Traffic, chaos_config, verdict
from support.inproc import ready, running_daemon

OUTAGES = 20
#: Calls made while the stream is down, and while it is up, in each round.
CALLS_DOWN = 4
CALLS_UP = 4


def reconnects_above(listener: NotifyListener, n: int) -> Callable[[], bool]:
    """True once the listener has seen more than `n` disconnects."""
    return lambda: listener.reconnects > n


async def test_stream_killed_and_restored_20_times(sim: Simulator, tmp_path: Path) -> None:
    rng = random.Random(20)
    faults = sim.faults
    assert isinstance(faults, ChaosFaults)
    async with running_daemon(tmp_path, chaos_config(sim), RULES, debug=True) as (daemon, capture):
        await ready(daemon, sim)
        listener = daemon.listener
        assert listener is not None
        # A reconnect backoff for a test that drops the stream 20 times in a
        # few seconds (the daemon's own grows to a minute): every session
        # counts as healthy, and the next attempt comes within 50-400 ms.
        listener.healthy_after = 0.0
        listener.delays = lambda: full_jitter(0.05, 0.4, rng=random.Random(7).random)
        traffic = Traffic(sim, rng)
        async with traffic.flowing():
            for outage in range(OUTAGES):
                await traffic.wait_emitted(traffic.count + CALLS_UP)
                # Kill: new connections are refused until the stream is restored.
                sim.refuse_clients()
                went_down = reconnects_above(listener, listener.reconnects)
                assert await sim.drop_clients(code=(1011, 1001, 1000)[outage % 3]) == 1
                await sim.wait_for_clients(0)
                await daemon.wait_for(went_down)
                await traffic.wait_emitted(traffic.count + CALLS_DOWN)
                # Restore.
                sim.refuse_clients(False)
                await sim.wait_for_clients(1)
            await traffic.wait_emitted(traffic.count + CALLS_UP)
        await daemon.wait_for(traffic.all_held, within=30)
        # Pending `after` timers and requests in flight settle before the
        # daemon stops; anything held wrongly is on the account by then.
    result = verdict(traffic, faults.duplicates)
    print(result.report(f"stream killed and restored {OUTAGES} times, {traffic.count} calls"))
    connected = capture.events("notify_connected")
    print(f"  reconnects: {len(connected) - 1}, resyncs: {daemon.resyncs}")

    assert len(connected) == OUTAGES + 1
    assert result.should_hold > 0
    assert result.held_once == result.should_hold, result.missed[:10]
    assert not result.twice
    assert not result.wrongly_held
    assert not result.duplicates
    # Calls did reach Talk while the stream was down, and the resync found them.
    found = {e["call_session_id"] for e in capture.events("call_talk_started")}
    by_resync = {
        e["call_session_id"] for e in capture.events("call_talk_started") if e["source"] == "resync"
    }
    assert by_resync, "no call was found by a resync: the outages missed the traffic"
    assert found >= set(traffic.expected_held())
