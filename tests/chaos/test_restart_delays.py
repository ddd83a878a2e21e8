"""How the daemon fell behind after a start with a backlog, found with the
SIGKILL harness (test_sigkill_restart.py, issue 10). Each test failed on
the daemon before the engine redesign for that reason only; all pass since
(one machine, one transaction per loop turn, timers armed as soon as they
are decided, the decision saved with the call, and a request that waits for
a connection slot is bounded by its action's deadline, not by the request
timeout).

1. Every `after` (and `unhold_after`) timer waits for the first successful
   resync, including those armed from live notifications in this process.
   While list.calls fails, an immediate rule holds at once and an `after`
   rule never does.
2. Every state database write is its own fsynced transaction
   (synchronous=FULL, autocommit): a restored `after` timer costs six of
   them to become a hold (remove_timer, add_trace, claim, finish, add_trace,
   save_call), and the backlog after a restart drains no faster than the
   disk syncs. The test counts commits (the holdd_ledger_write_seconds
   histogram), not time.
3. Every start runs the rules again on every call restored in Talk that no
   rule matched: with no timer and no claim, `_orphans` takes each for a
   call a crash interrupted before its rules ran. Three fsynced writes
   each, inside the first resync, before any timer may fire; after a clean
   stop too. The rules' verdict on them was written (the evaluation trace),
   and a SIGHUP reload does not re-run rules on talking calls either.
4. The one that loses holds: `[callapi] timeout` (aiohttp's total timeout)
   also runs while a request waits for a free connection of the pool
   (`max_connections`). A backlog larger than the pool drains in that time
   makes holds that never left holdd time out; each is taken for an
   unknown outcome, looked up with list.calls (the whole account, queued
   in the same pool), and when `action_deadline` passes it is concluded
   `hold_outcome_unknown` and never sent again. Measured: 2,000 calls in
   Talk at start, the API answering in 50 ms, the chaos config (timeout 5 s,
   max_connections 10, action_deadline 20 s): 988 held, 1,022 concluded
   unknown though the API never received them, 270 list.calls. The test
   below is the small form: 20 holds behind one connection, each answered
   in 50 ms, timeout 200 ms; nothing on the wire ever times out.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

import aiohttp
import pytest

from holdd.core.records import CallRecord, PutTimer, SaveCall
from holdd.core.rules.driver import Timer, TimerKind
from holdd.core.states import CallState
from holdd.io.store.sqlite import StateDb
from holdd.sim.server import Simulator
from support.chaos import AFTER, RULES, chaos_config, until
from support.config import write_config
from support.process import DaemonProcess

#: Restored `after` timers, all due, in the commit count.
RESTORED = 40
#: Calls talking that match no rule, across a restart.
UNMATCHED = 30
#: Holds queued behind one connection, each answered POOL_DELAY late (well
#: within the client's POOL_TIMEOUT): no exchange on the wire ever times out.
POOLED = 20
POOL_DELAY = 0.05
POOL_TIMEOUT = "200ms"
#: Commits one hold may cost: the claim before the request, the result after it.
COMMITS_PER_HOLD = 2


async def commits(daemon: DaemonProcess) -> dict[str, int]:
    """State database writes (each one commit) so far, by operation, from /metrics."""
    event = await daemon.wait_event(lambda e: e["event"] == "http_listening")
    url = f"http://127.0.0.1:{event['port']}/metrics"
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        text = await response.text()
    out = {}
    for line in text.splitlines():
        if line.startswith("holdd_ledger_write_seconds_count{"):
            labels, value = line.rsplit(" ", 1)
            out[labels.split('op="')[1].split('"')[0]] = int(float(value))
    return out


async def test_an_after_rule_acts_while_list_calls_fails(sim: Simulator, tmp_path: Path) -> None:
    # list.calls fails (an outage of that method, or its limit); hold.call works.
    sim.faults.fail_next(10_000, "internal_error", method="list.calls")
    daemon = DaemonProcess(write_config(tmp_path, chaos_config(sim), RULES))
    await daemon.start()
    try:
        await sim.wait_for_clients(1)
        await daemon.wait_count("resync_failed", 1)
        now_call = await sim.start_call(direction="in", contact_phone_number="79260000101")
        await sim.answer(now_call)
        # The immediate rule acts without a resync: the API takes holds.
        await sim.wait_for_requests(1, method="hold.call")
        after_call = await sim.start_call(direction="in", contact_phone_number="79030000102")
        await sim.answer(after_call)
        # The call entered Talk while this daemon listened: its `after` runs
        # from now, whatever list.calls does.
        try:
            await sim.wait_for_requests(2, method="hold.call", timeout=AFTER + 3)
        except TimeoutError:
            failures = sum(e["event"] == "resync_failed" for e in daemon.events())
            pytest.fail(
                f"`after` hold not sent {AFTER + 3:.0f} s after Talk began;"
                f" list.calls failed {failures} times meanwhile"
            )
        assert sim.account.call(after_call).hold_count == 1
    finally:
        assert await daemon.stop() == 0


async def test_a_restored_timer_becomes_a_hold_in_at_most_two_commits(
    sim: Simulator, tmp_path: Path
) -> None:
    # What a SIGKILL leaves: calls in Talk at the API, remembered in Talk with
    # their `after` timers pending and due by now.
    started = time.time() - 2 * AFTER
    path = write_config(tmp_path, chaos_config(sim, log_format="json"), RULES)
    with StateDb.open(tmp_path / "state.db") as state:
        for i in range(RESTORED):
            number = f"790300002{i:02d}"
            call, _ = sim.account.start_call(started, direction="in", contact_phone_number=number)
            sim.account.answer(call.call_session_id, started)
            csid = call.call_session_id
            fields = {"direction": "in", "contact_phone_number": number}
            record = CallRecord(csid, 1, started, CallState.TALK, started, fields)
            timer = Timer(TimerKind.AFTER, csid, "sales-after", started + AFTER, 1)
            state.commit([SaveCall(record), PutTimer(timer)])
    assert "sales-after" in RULES
    daemon = DaemonProcess(path)
    await daemon.start()
    try:
        await daemon.wait_count("hold_sent", RESTORED)
        by_op = await commits(daemon)
    finally:
        assert await daemon.stop() == 0
    assert all(sim.account.call(c).hold_count == 1 for c in sim.account.calls)
    # The hourly prune runs once at start: not the holds' cost.
    per_hold = sum(n for op, n in by_op.items() if op != "prune") / RESTORED
    assert per_hold <= COMMITS_PER_HOLD, f"{per_hold:.1f} commits per hold: {by_op}"


async def test_a_restart_does_not_run_the_rules_again_on_calls_no_rule_matched(
    sim: Simulator, tmp_path: Path
) -> None:
    # At debug: a call's changes and decisions are debug lines.
    path = write_config(tmp_path, chaos_config(sim, log_format="json", log_level="debug"), RULES)
    first = DaemonProcess(path)
    await first.start()
    try:
        await sim.wait_for_clients(1)
        await first.wait_count("resync_done", 1)
        for i in range(UNMATCHED):
            csid = await sim.start_call(direction="in", contact_phone_number=f"700000003{i:02d}")
            await sim.answer(csid)
        await first.wait_count("no_rule_matched", UNMATCHED)
    finally:
        # A clean stop: no crash to recover from.
        assert await first.stop() == 0
    second = DaemonProcess(path)
    await second.start()
    try:
        await second.wait_count("resync_done", 1)
        # The resync's work is done when its line is logged and the loop
        # has turned: /metrics answers from the same loop.
        by_op = await commits(second)
    finally:
        assert await second.stop() == 0
    again = [e for e in second.events() if e["event"] in ("call_talk_started", "no_rule_matched")]
    per_call = sum(n for op, n in by_op.items() if op != "prune") / UNMATCHED
    assert not again, f"{len(again)} lines like {again[0]}; {per_call:.1f} commits a call"


async def test_a_hold_waiting_for_a_connection_is_not_an_unknown_outcome(
    sim: Simulator, tmp_path: Path
) -> None:
    now = time.time()
    for i in range(POOLED):
        number = f"792600004{i:02d}"
        call, _ = sim.account.start_call(now, direction="in", contact_phone_number=number)
        sim.account.answer(call.call_session_id, now)
    # Every hold.call is answered POOL_DELAY late (applied after the wait).
    sim.faults.delay(POOL_DELAY, n=10_000, method="hold.call")
    text = chaos_config(
        sim, timeout=POOL_TIMEOUT, action_deadline="5s", callapi="max_connections = 1\n"
    )
    daemon = DaemonProcess(write_config(tmp_path, text, RULES))
    await daemon.start()
    try:
        calls = list(sim.account.calls)
        with contextlib.suppress(TimeoutError):  # judged below, with the details
            await until(sim, lambda: all(sim.account.call(c).hold_count for c in calls), 10)
    finally:
        assert await daemon.stop() == 0
    events = daemon.events()
    unknown = [e for e in events if e["event"] == "hold_retrying" and e["reason"] == "timeout"]
    lost = [e for e in events if e["event"] == "hold_outcome_unknown"]
    held = sum(sim.account.call(c).hold_count == 1 for c in calls)
    received = sum(r.method == "hold.call" for r in sim.requests)
    assert (held, len(unknown), len(lost)) == (POOLED, 0, 0), (
        f"held {held} of {POOLED}; hold.call received {received}; {len(unknown)} timeouts"
        f" taken for unknown outcomes, no answer on the wire later than {POOL_DELAY} s;"
        f" {len(lost)} concluded hold_outcome_unknown"
    )
