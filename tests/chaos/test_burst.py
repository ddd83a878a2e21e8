"""A burst: 3,000 calls enter Talk within a moment (a large call centre after
an outage), the API answering each hold a few ms late, a pool of 10
connections. Every call is held exactly once; holds wait for a connection
in order, bounded by the action's deadline, never taken for unknown
outcomes; and `list.calls` stays a handful, not one per call."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest_asyncio

from holdd.sim.server import Simulator
from support.chaos import LIMIT, RULES, chaos_config, until
from support.config import write_config
from support.process import DaemonProcess
from support.sim import make_simulator, running

CALLS = 3_000
#: How late the simulated API answers each hold.call, in seconds.
API_DELAY = 0.005


@pytest_asyncio.fixture
async def sim() -> AsyncIterator[Simulator]:
    """No chaos fault layer here: the plain one, and a budget far above the burst."""
    async with running(make_simulator(media_ids=("2034",), limit=LIMIT)) as simulator:
        yield simulator


async def test_a_burst_of_talk_is_held_once_each_with_few_listings(
    sim: Simulator, tmp_path: Path
) -> None:
    # A request timeout well under the time the burst spends queued for a
    # connection: only a queue that does not count against it holds them all.
    text = chaos_config(sim, timeout="1s", callapi="max_connections = 10\n")
    daemon = DaemonProcess(write_config(tmp_path, text, RULES))
    await daemon.start()
    try:
        await daemon.ready(sim)
        listings_before = sum(r.method == "list.calls" for r in sim.requests)
        sim.faults.delay(API_DELAY, n=CALLS * 2, method="hold.call")
        # Every call starts and is answered at once; the notifications go out
        # in two bursts of 3,000 frames each.
        now = time.time()
        account = sim.account
        started, answered = [], []
        for i in range(CALLS):
            number = f"7926{i:07d}"
            call, notes = account.start_call(now, direction="in", contact_phone_number=number)
            started += notes
            answered += account.answer(call.call_session_id, now)
        await sim.send_notifications(*started)
        await sim.send_notifications(*answered)
        calls = [c.call_session_id for c in account.all_calls()]
        await until(sim, lambda: all(account.call(c).hold_count for c in calls), within=45)
    finally:
        assert await daemon.stop() == 0
    holds = [r.params["call_session_id"] for r in sim.requests if r.method == "hold.call"]
    listings = sum(r.method == "list.calls" for r in sim.requests) - listings_before
    unknown = [e for e in daemon.events() if e["event"] == "hold_outcome_unknown"]
    print(f"burst: {len(calls)} calls, {len(holds)} hold.call, {listings} list.calls after start")
    assert len(calls) == CALLS
    assert sorted(holds) == sorted(calls)  # each exactly once
    assert all(account.call(c).hold_count == 1 for c in calls)
    assert not unknown
    assert listings <= 5
