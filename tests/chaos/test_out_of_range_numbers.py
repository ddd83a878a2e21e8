"""One notification with a number too large for 64 bits (found by
fuzz/fuzz_events.py): it must be dropped and counted like any bad input
(holdd-spec section 4), and the daemon must keep serving."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import pytest

from holdd.config.rulefiles import load_rules
from holdd.config.settings import load_settings
from holdd.io import logs
from holdd.io.daemon import Daemon
from holdd.sim.server import Simulator
from support.chaos import RULES, chaos_config
from support.config import write_config
from support.inproc import ready

TALK = '{"notification_name": "Начало разговора", "direction": "in", '


@pytest.mark.parametrize(
    "message",
    [
        TALK + '"call_session_id": "9999999999999999999"}',
        TALK + '"call_session_id": 1e300}',
        TALK + '"call_session_id": 5, "employee_id": 1e30}',
    ],
    ids=["csid-19-digits", "csid-float", "employee-id-float"],
)
async def test_a_number_beyond_64_bits_is_dropped_and_the_daemon_keeps_serving(
    sim: Simulator, tmp_path: Path, message: str
) -> None:
    settings = load_settings(write_config(tmp_path, chaos_config(sim), RULES))
    logs.configure(fmt="json", level="info", stream=io.BytesIO())
    daemon = Daemon(settings, load_rules(settings.rule_files))
    task = asyncio.create_task(daemon.run(install_signals=False))
    try:
        await ready(daemon, sim)
        await sim.send_raw(message)
        marker = await sim.start_call(direction="in", contact_phone_number="79260000002")
        await sim.answer(marker)
        served = asyncio.create_task(daemon.wait_for(lambda: marker in daemon.outcomes))
        await asyncio.wait({task, served}, return_when=asyncio.FIRST_COMPLETED)
        served.cancel()
        assert not task.done(), f"the daemon stopped with exit code {task.result()}"
        assert sim.account.call(marker).hold_count == 1
        assert sum(daemon.dropped.values()) == 1
    finally:
        daemon.request_stop("test over")
        await asyncio.wait_for(task, 15)
