"""What a SIGKILL leaves in the state database, set up exactly, and what the
next start must make of it (the deterministic side of test_sigkill_restart).

Each test writes the state a crash can leave (through the store's `commit`),
puts the call in the state the API would show, starts the daemon on that
database, and checks the call is held exactly once. A marker call, sent
after the daemon's first resync, bounds the wait: once its hold has been
concluded, everything the start-up decided has been submitted.
"""

from __future__ import annotations

import time
from pathlib import Path

from holdd.core.records import CallRecord, Claim, PutClaim, PutTimer, SaveCall
from holdd.core.rules.driver import Timer, TimerKind
from holdd.core.states import CallState
from holdd.io.daemon import Daemon
from holdd.io.store.sqlite import StateDb
from holdd.sim.server import Simulator
from support.chaos import AFTER, RULES, chaos_config
from support.inproc import ready, running_daemon

NOW_NUMBER = "79260000071"
AFTER_NUMBER = "79030000072"


def talking_at_the_api(sim: Simulator, number: str) -> int:
    """A call already in Talk, whose notifications the daemon never got."""
    now = time.time()
    call, _ = sim.account.start_call(now, direction="in", contact_phone_number=number)
    sim.account.answer(call.call_session_id, now)
    return call.call_session_id


def remembered(path: Path, csid: int, number: str, talk_started_at: float) -> StateDb:
    """The state database as the killed daemon left it: the call saved in Talk."""
    state = StateDb.open(path)
    state.commit(
        [
            SaveCall(
                CallRecord(
                    call_session_id=csid,
                    episode=1,
                    talk_started_at=talk_started_at,
                    state=CallState.TALK,
                    updated_at=talk_started_at,
                    fields={"direction": "in", "contact_phone_number": number},
                )
            )
        ]
    )
    return state


async def held_after_start(sim: Simulator, tmp_path: Path, csid: int) -> Daemon:
    """Start the daemon on tmp_path/state.db; return it once `csid` is settled."""
    async with running_daemon(tmp_path, chaos_config(sim), RULES) as (daemon, _capture):
        await ready(daemon, sim)
        marker = await sim.start_call(direction="in", contact_phone_number="79260000079")
        await sim.answer(marker)
        await daemon.wait_for(lambda: marker in daemon.outcomes)
        if csid in daemon.evaluations:
            await daemon.wait_for(lambda: csid in daemon.outcomes, within=AFTER + 5)
    assert sim.account.call(marker).hold_count == 1
    return daemon


async def test_a_released_claim_is_acted_on_again(sim: Simulator, tmp_path: Path) -> None:
    """Killed after the claim, before the request took: the claim is released
    (the API shows the call talking) and the hold sent again, once."""
    csid = talking_at_the_api(sim, NOW_NUMBER)
    now = time.time()
    with remembered(tmp_path / "state.db", csid, NOW_NUMBER, now) as state:
        assert not state.commit([PutClaim(Claim(csid, "vip-now", "hold", now))])
    await held_after_start(sim, tmp_path, csid)
    assert sim.account.call(csid).hold_count == 1


async def test_a_restored_after_timer_fires_on_the_call_as_listed(
    sim: Simulator, tmp_path: Path
) -> None:
    """Killed while an `after` timer was pending, restarted once it is due:
    it fires at start, on the call's remembered variables, and is used up."""
    csid = talking_at_the_api(sim, AFTER_NUMBER)
    started = time.time() - 2 * AFTER
    with remembered(tmp_path / "state.db", csid, AFTER_NUMBER, started) as state:
        state.commit([PutTimer(Timer(TimerKind.AFTER, csid, "sales-after", started + AFTER, 1))])
    daemon = await held_after_start(sim, tmp_path, csid)
    assert sim.account.call(csid).hold_count == 1
    with StateDb.open(tmp_path / "state.db") as state:
        assert state.timers() == []
    assert daemon.outcomes[csid].rule == "sales-after"


async def test_a_call_restored_in_talk_without_a_claim_is_held(
    sim: Simulator, tmp_path: Path
) -> None:
    csid = talking_at_the_api(sim, NOW_NUMBER)
    remembered(tmp_path / "state.db", csid, NOW_NUMBER, time.time()).close()
    await held_after_start(sim, tmp_path, csid)
    assert sim.account.call(csid).hold_count == 1
