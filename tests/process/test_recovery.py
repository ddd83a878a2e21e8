"""Recovery after a stop or a crash: claims left open, `after` and
`unhold_after` timers, and holds cut off at shutdown."""

from __future__ import annotations

import asyncio
import io
import signal
import time
from pathlib import Path

from holdd.config.rulefiles import load_rules
from holdd.config.settings import load_settings
from holdd.io import logs
from holdd.io.daemon import Daemon
from holdd.io.store.sqlite import StateDb
from holdd.sim.server import Simulator
from support.config import AFTER, VIP, config_text, write_config
from support.process import DaemonProcess
from support.sim import hold_requests

UNHOLD = VIP + '\n[rule.then]\nunhold_after = "1s"\n'


async def test_a_hold_killed_before_it_applied_is_sent_once_after_restart(
    sim: Simulator, tmp_path: Path
) -> None:
    path = write_config(tmp_path, config_text(sim, log_format="json", log_level="debug"), VIP)
    first = DaemonProcess(path)
    await first.start()
    try:
        await first.ready(sim)
        # The request hangs and is then dropped unapplied.
        sim.faults.drop_connection(method="hold.call", hang=30.0)
        csid = await sim.start_call(direction="in", contact_phone_number="79260000101")
        await sim.answer(csid)
        await sim.faults.wait_for_attempts(1, method="hold.call", answered=False, timeout=20)
    finally:
        await first.stop(signal.SIGKILL)
    sim.faults.clear()
    assert sim.account.call(csid).hold_count == 0  # the request never took

    second = DaemonProcess(path)
    await second.start()
    try:
        await second.ready(sim)
        await second.wait_event(
            lambda e: e["event"] == "hold_sent" and e["call_session_id"] == csid
        )
    finally:
        assert await second.stop() == 0
    released = [e for e in second.events() if e["event"] == "claim_released"]
    assert [(e["call_session_id"], e["action"]) for e in released] == [(csid, "hold")]
    assert sim.account.call(csid).hold_count == 1


async def test_unhold_after_survives_a_restart(sim: Simulator, tmp_path: Path) -> None:
    path = write_config(tmp_path, config_text(sim, log_format="json", log_level="debug"), UNHOLD)
    first = DaemonProcess(path)
    await first.start()
    try:
        await first.ready(sim)
        csid = await sim.start_call(direction="in", contact_phone_number="79260000102")
        await sim.answer(csid)
        await first.wait_event(lambda e: e["event"] == "hold_sent")
    finally:
        assert await first.stop() == 0
    assert sim.account.call(csid).state.value == "HOLD"
    # Down for longer than unhold_after (the passage of time is the point).
    await asyncio.sleep(1.2)
    second = DaemonProcess(path)
    await second.start()
    try:
        await second.ready(sim)
        await second.wait_event(lambda e: e["event"] == "unhold_sent")
    finally:
        assert await second.stop() == 0
    call = sim.account.call(csid)
    assert (call.state.value, call.hold_count, call.unhold_count) == ("TALK", 1, 1)


async def test_after_counts_from_the_real_talk_start_across_a_restart(
    sim: Simulator, tmp_path: Path
) -> None:
    path = write_config(tmp_path, config_text(sim, log_format="json", log_level="debug"), AFTER)
    first = DaemonProcess(path)
    await first.start()
    try:
        await first.ready(sim)
        csid = await sim.start_call(direction="in", contact_phone_number="79030000103")
        talk_began = time.time()
        await sim.answer(csid)
        await first.wait_event(lambda e: e["event"] == "rule_pending")
    finally:
        assert await first.stop() == 0
    second = DaemonProcess(path)
    await second.start()
    try:
        await second.ready(sim)
        await second.wait_event(lambda e: e["event"] == "hold_sent", within=30)
    finally:
        assert await second.stop() == 0
    [held] = hold_requests(sim, csid)
    held_at = held.received_at
    assert held_at - talk_began >= 2.0
    restored = [e for e in second.events() if e["event"] == "state_restored"]
    assert restored and restored[0]["timers"] == 1
    # Not a new Talk episode: the rule was not evaluated from scratch.
    assert not [e for e in second.events() if e["event"] == "call_talk_started"]


async def test_a_hold_cut_off_at_shutdown_stays_open_for_the_next_start(
    sim: Simulator, tmp_path: Path
) -> None:
    settings = load_settings(write_config(tmp_path, config_text(sim), VIP))
    logs.configure(fmt="json", level="info", stream=io.BytesIO())
    daemon = Daemon(settings, load_rules(settings.rule_files), stop_timeout=0.3)
    task = asyncio.create_task(daemon.run(install_signals=False))
    await sim.wait_for_clients(1)
    sim.faults.delay(30.0, method="hold.call", after_apply=True)
    csid = await sim.start_call(direction="in", contact_phone_number="79260000104")
    await sim.answer(csid)
    await sim.faults.wait_for_attempts(1, method="hold.call", answered=False, timeout=20)
    daemon.request_stop("test")
    assert await asyncio.wait_for(task, 15) == 0
    sim.faults.clear()
    with StateDb.open(settings.state_path) as state:
        pending = state.pending_claims()
    assert [(c.call_session_id, c.rule, c.action, c.result) for c in pending] == [
        (csid, "vip", "hold", None)
    ]
