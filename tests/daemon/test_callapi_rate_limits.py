"""Points per minute and per day (docs/callapi.md section 6): the client waits
out `limit_exceeded`, slows down before the budget runs out, and never waits
past an action's deadline."""

from __future__ import annotations

import asyncio
import itertools

import aiohttp
import pytest

from holdd.callapi import Limits, Pacing, RateGate, RateLimitWait
from holdd.sim.server import Simulator
from support.callapi import Harness, VirtualTime, decision, make_client
from support.logs import LogCapture
from support.sim import TOKEN, talking_call

# Every test's log is captured (support/logs.py), as an operator would read it.
pytestmark = [pytest.mark.timeout(60), pytest.mark.usefixtures("captured")]


class RecordingSleep:
    """The client's gate sleep: real, but the test can see that a wait began."""

    def __init__(self) -> None:
        self.waits: list[float] = []
        self.started = asyncio.Event()

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.started.set()
        await asyncio.sleep(seconds)


async def test_limit_exceeded_holds_every_request_until_minute_reset_and_loses_nothing(
    sim: Simulator, http: aiohttp.ClientSession, captured: LogCapture
) -> None:
    """Acceptance 4: minute_reset = 2 -> the next hold.call no earlier than 2 s later."""
    sleep = RecordingSleep()
    harness = Harness(make_client(sim, http, sleep=sleep))
    first, second = await talking_call(sim), await talking_call(sim)
    sim.faults.fail_next(1, "limit_exceeded", method="hold.call", limits={"minute_reset": 2})

    harness.submit(decision(first))
    async with asyncio.timeout(10):
        await sleep.started.wait()  # the first hold is waiting for the reset
    harness.submit(decision(second))
    outcomes = await harness.outcomes.wait(2)

    assert sorted((o.call_session_id, o.result) for o in outcomes) == [
        (first, "held"),
        (second, "held"),
    ]
    limited, *later = sim.faults.attempts("hold.call")
    assert limited.what == "failed:limit_exceeded"
    assert limited.done_at is not None
    assert len(later) == 2
    assert all(r.what == "passed" and r.at - limited.done_at >= 1.99 for r in later)
    for csid in (first, second):
        assert sim.account.call(csid).hold_count == 1
    [line] = captured.events("callapi_rate_limited")
    assert (line["limit_type"], line["wait"], line["call_session_id"]) == ("minute", 2.0, first)
    assert harness.client.stats.rate_limited == {"minute": 1}


async def test_a_day_limit_past_the_deadline_fails_fast_without_requests(
    sim: Simulator, http: aiohttp.ClientSession, captured: LogCapture
) -> None:
    harness = Harness(make_client(sim, http), deadline=10)
    first, second = await talking_call(sim), await talking_call(sim)
    sim.faults.fail_next(
        1,
        "limit_exceeded",
        method="hold.call",
        params={"limit_type": "day", "limit_max_value": 10000},
        limits={"day_remaining": 0, "day_reset": 3600},
    )

    one = await harness.hold(decision(first))
    two = await harness.hold(decision(second))

    assert [(o.result, o.mnemonic, o.attempts) for o in (one, two)] == [
        ("rate_limited", "limit_exceeded", 1),
        ("rate_limited", "limit_exceeded", 0),
    ]
    assert len(sim.faults.attempts("hold.call")) == 1
    failed = captured.events("hold_failed")
    assert [(e["level"], e["reason"], e["call_session_id"]) for e in failed] == [
        ("error", "rate_limited", first),
        ("error", "rate_limited", second),
    ]


async def test_a_low_budget_spreads_the_remaining_points(
    sim: Simulator, http: aiohttp.ClientSession, captured: LogCapture
) -> None:
    """2 points left, 1 s to the reset: one request every 0.5 s."""
    client = make_client(sim, http)
    sim.faults.override_limits(minute_remaining=2, minute_reset=1)
    for _ in range(3):
        await client.list_calls()
    starts = [r.at for r in sim.faults.attempts("list.calls")]
    assert [b - a >= 0.5 * 0.99 for a, b in itertools.pairwise(starts)] == [True] * 2
    assert client.last_limits is not None and client.last_limits.minute_remaining == 2
    [slow] = captured.events("callapi_slowing_down")
    assert (slow["limit_type"], slow["spacing"]) == ("minute", 0.5)

    sim.faults.clear()
    await client.list_calls()
    assert captured.events("callapi_pace_restored")
    assert client.gate.spacing == 0


#: 07:59:59.0 UTC on 2027-01-15: one second before a minute (not a day) ends.
MINUTE_59 = 1_800_000_000.0 - 1.0


async def test_a_spent_minute_waits_for_the_accounts_own_reset(
    http: aiohttp.ClientSession, captured: LogCapture
) -> None:
    """The real account: 1 point a minute, the first hold at xx:xx:59.0. The
    account, the client and the runner share a virtual clock, so the first
    hold is in the old minute however long the machine takes to send it."""
    clock = VirtualTime(MINUTE_59)
    async with Simulator(tokens=(TOKEN,), clock=clock.time) as sim:
        sim.faults.attach(sim.account)
        sim.faults.set_minute_limit(1)
        client = make_client(sim, http, monotonic=clock.monotonic, sleep=clock.sleep)
        harness = Harness(client, monotonic=clock.monotonic, sleep=clock.sleep)
        first, second = await talking_call(sim), await talking_call(sim)

        one = await harness.hold(decision(first))
        two = await harness.hold(decision(second))

        assert (one.result, two.result) == ("held", "held")
        holds = sim.faults.attempts("hold.call")
        assert [r.what for r in holds] == ["passed", "passed"]  # never limit_exceeded
        arrived = [r.received_at for r in sim.requests if r.method == "hold.call"]
        # The second waited exactly for the account's minute_reset (1 s), no longer.
        assert arrived == [MINUTE_59, MINUTE_59 + 1.0]
        assert [s for s in clock.sleeps if s > 0] == [1.0]
        assert not captured.events("callapi_rate_limited")


def test_the_gate_hands_out_start_times_one_after_another() -> None:
    now = [100.0]
    gate = RateGate(Pacing(), lambda: now[0])
    assert gate.reserve("x", None) == 0
    gate.observe(Limits(minute_limit=100, minute_remaining=4, minute_reset=2))
    # 4 points for 2 s: 0.5 s apart, queued even when asked at the same moment.
    assert [gate.reserve("x", None) for _ in range(3)] == [0.5, 1.0, 1.5]
    with pytest.raises(RateLimitWait) as waited:
        gate.reserve("x", deadline=101.0)
    assert waited.value.limit_type == "minute"
    now[0] = 103.0  # past the window that set the spacing
    assert gate.reserve("x", None) == 0
    assert gate.block("minute", 0) == 1.0  # never sooner than the floor
    assert gate.block("day", None) == 3600.0
    gate.observe(Limits(minute_remaining=0, minute_reset=30))
    assert gate.reserve("x", None) == 3600.0


def test_limit_exceeded_without_a_reset_waits_for_the_last_known_reset_aged() -> None:
    """Not a flat minute: the reset the latest metadata.limits gave, minus the time since."""
    now = [100.0]
    gate = RateGate(Pacing(), lambda: now[0])
    gate.observe(Limits(minute_limit=100, minute_remaining=40, minute_reset=20))
    now[0] = 112.0
    assert gate.block("minute", None) == pytest.approx(8.0)
    assert gate.blocked_until == pytest.approx(120.0)
    # A window it has heard nothing of falls back to the flat wait.
    assert gate.block("day", None) == Pacing().day_fallback


def test_instances_sharing_the_account_each_spend_their_share() -> None:
    """Several instances on one shared store (docs/operations.md "Several
    instances"): the points left are the account's, so with three live
    instances each spaces its requests three times as far apart."""
    now = [100.0]
    alone, shared = RateGate(Pacing(), lambda: now[0]), RateGate(Pacing(), lambda: now[0])
    shared.instances = 3
    for gate in (alone, shared):
        gate.observe(Limits(minute_limit=100, minute_remaining=4, minute_reset=2))
        gate.reserve("x", None)
    assert alone.reserve("x", None) == 0.5
    assert shared.reserve("x", None) == 1.5
