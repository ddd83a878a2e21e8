"""Where the SQLite file is written (io/daemon.py `_write`): on the event
loop while few requests are out (a hop to a thread would only add to each
call's latency), on the store thread while `OFF_LOOP_FROM` or more are out,
so that their answers are read while the disk syncs; never two store calls
at once; and a stop during such a commit still carries out its turn."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from pathlib import Path

from holdd.core.records import PutClaim, StoreOp
from holdd.io.daemon import OFF_LOOP_FROM
from holdd.io.store.sqlite import StateDb
from holdd.sim.server import Simulator
from support.config import config_text
from support.inproc import ready, running_daemon
from support.sim import hold_requests, talking_call


async def test_a_commit_goes_to_the_store_thread_only_while_requests_are_out(
    sim: Simulator, tmp_path: Path
) -> None:
    async with running_daemon(tmp_path, config_text(sim)) as (daemon, _logs):
        await ready(daemon, sim)
        store = daemon.store
        assert isinstance(store, StateDb)
        real = store.commit
        claims: dict[int, str] = {}
        running = threading.Lock()

        def commit(ops: Sequence[StoreOp]) -> set[tuple[int, str, str]]:
            # Never entered twice at once, whichever thread runs it.
            assert running.acquire(blocking=False), "two store calls at once"
            try:
                for op in ops:
                    if isinstance(op, PutClaim):
                        claims[op.claim.call_session_id] = threading.current_thread().name
                return real(ops)
            finally:
                running.release()

        store.commit = commit  # type: ignore[method-assign]
        loop_thread = threading.current_thread().name
        # The first holds are applied at once and answered 2 s late: out meanwhile.
        sim.faults.delay(2.0, n=OFF_LOOP_FROM, method="hold.call", after_apply=True)
        early = [await talking_call(sim, direction="in") for _ in range(OFF_LOOP_FROM)]
        await sim.faults.wait_for_attempts(OFF_LOOP_FROM, method="hold.call", answered=False)
        second = await talking_call(sim, direction="in")
        await daemon.wait_for(lambda: daemon.machine.settled > OFF_LOOP_FROM, within=10)
        third = await talking_call(sim, direction="in")
        await daemon.wait_for(lambda: daemon.machine.settled > OFF_LOOP_FROM + 1, within=10)
    # Fewer were out for each of the first ones than OFF_LOOP_FROM.
    assert [claims[c] for c in early] == [loop_thread] * OFF_LOOP_FROM
    assert claims[second].startswith("holdd-store")  # OFF_LOOP_FROM holds were out
    assert claims[third] == loop_thread  # all answered: nothing out again
    assert [len(hold_requests(sim, c)) for c in (*early, second, third)] == [1] * len(claims)


async def test_a_stop_during_a_commit_on_the_store_thread_still_sends_its_turn(
    sim: Simulator, tmp_path: Path
) -> None:
    """SIGTERM arrives while a turn's commit runs on the store thread: its
    claim is on disk, so the turn is carried out all the same (the hold goes
    out within the stop's bound) before the loop stops; it is not left for
    the next start to find."""
    async with running_daemon(tmp_path, config_text(sim)) as (daemon, logs):
        await ready(daemon, sim)
        store = daemon.store
        assert isinstance(store, StateDb)
        real = store.commit
        entered, release = threading.Event(), threading.Event()
        held_up: list[int] = []  # the call whose claim's commit waits for `release`

        def commit(ops: Sequence[StoreOp]) -> set[tuple[int, str, str]]:
            if any(isinstance(op, PutClaim) and op.claim.call_session_id in held_up for op in ops):
                entered.set()
                release.wait(10)
            return real(ops)

        store.commit = commit  # type: ignore[method-assign]
        sim.faults.delay(1.0, n=OFF_LOOP_FROM, method="hold.call", after_apply=True)
        early = [await talking_call(sim, direction="in") for _ in range(OFF_LOOP_FROM)]
        await sim.faults.wait_for_attempts(OFF_LOOP_FROM, method="hold.call", answered=False)
        second = await sim.start_call(direction="in")
        held_up.append(second)
        await sim.answer(second)
        assert await asyncio.get_running_loop().run_in_executor(None, entered.wait, 10)
        daemon.request_stop("test: stop during a commit")
        # The stop is under way (it cancels the loop at once) when the first
        # holds' late answers arrive; only then does the commit end.
        await sim.faults.wait_for_attempts(OFF_LOOP_FROM, method="hold.call", answered=True)
        release.set()
    # Every hold went out once; the last one's after the stop began.
    assert [len(hold_requests(sim, c)) for c in (*early, second)] == [1] * (OFF_LOOP_FROM + 1)
    sent = [e["call_session_id"] for e in logs.events("hold_sent")]
    assert sorted(sent) == sorted([*early, second])
