"""The runner's bounded pool (io/runner.py): claimed holds wait in a FIFO for
its workers and go out oldest first, never more at once than there are
workers; at a stop, `drain` cancels what the workers carry out and counts
what never started. Both keep their claims open: the next start settles
them with `list.calls` (docs/operations.md `holdd_stop_abandoned_requests`)."""

from __future__ import annotations

import aiohttp
import pytest

from holdd.sim.server import Simulator
from support.callapi import Harness, decision, make_client
from support.sim import talking_call

pytestmark = [pytest.mark.timeout(60), pytest.mark.usefixtures("captured")]


async def test_no_more_holds_at_once_than_workers_oldest_first_and_drain_counts_the_rest(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    harness = Harness(make_client(sim, http, timeout=60.0), workers=2)
    runner = harness.runner
    calls = [await talking_call(sim, direction="in") for _ in range(5)]
    # Every hold.call hangs until the test is over: the workers stay busy.
    sim.faults.delay(60.0, n=len(calls), method="hold.call")
    for csid in calls:
        harness.submit(decision(csid))
    assert (runner.in_flight, runner.queued) == (5, 5)
    arrived = await sim.faults.wait_for_attempts(2, method="hold.call", answered=False)
    assert [r.call_session_id for r in arrived] == calls[:2]
    assert (runner.in_flight, runner.queued) == (5, 3)

    left = await runner.drain(within=0.2)

    assert (left.cancelled, left.not_started, left.total) == (2, 3, 5)
    assert (runner.in_flight, runner.queued) == (0, 0)
    assert [r.call_session_id for r in sim.faults.attempts("hold.call")] == calls[:2]
    assert harness.verdicts == []  # nothing settled: the claims stay open


async def test_a_worker_that_ran_dry_is_replaced_by_the_next_hold(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    """The last worker ended when the FIFO was empty; the next hold starts one."""
    harness = Harness(make_client(sim, http), workers=1)
    first, second = [await talking_call(sim, direction="in") for _ in range(2)]
    assert (await harness.hold(decision(first))).result == "held"
    assert harness.runner.in_flight == 0
    assert (await harness.hold(decision(second))).result == "held"
    assert [sim.account.call(c).hold_count for c in (first, second)] == [1, 1]
