"""One notification with a number too large for 64 bits (found by
fuzz/fuzz_events.py): it must be dropped and counted like any bad input
(holdd-spec section 4), with the reason `number_out_of_range`, and the
daemon must keep serving. In an answer of the Call API such a number is
named once in the log and never used: the `list.calls` entry it identifies
is skipped, a limit of ages is no limit (core/events.py, callapi/rpc.py)."""

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
from support.config import config_text, write_config
from support.inproc import ready, running_daemon
from support.sim import talking_call

TALK = '{"notification_name": "Начало разговора", "direction": "in", '


@pytest.mark.parametrize(
    "message",
    [
        TALK + '"call_session_id": "9999999999999999999"}',
        TALK + '"call_session_id": 1e300}',
        TALK + '"call_session_id": 5, "employee_id": 1e30}',
        TALK + '"call_session_id": 5, "communication_id": 18446744073709551615}',
        TALK + '"call_session_id": 5, "contact_phone_number": 79260000000000000000000}',
    ],
    ids=["csid-19-digits", "csid-float", "employee-id-float", "other-u64", "phone-too-wide"],
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
        assert daemon.dropped == {"number_out_of_range": 1}
    finally:
        daemon.request_stop("test over")
        await asyncio.wait_for(task, 15)


async def test_numbers_beyond_64_bits_in_answers_are_named_and_never_used(
    sim: Simulator, tmp_path: Path
) -> None:
    # A call whose id no signed 64-bit integer holds, talking before the daemon starts.
    wide = await talking_call(sim, call_session_id=2**64 - 1, direction="in")
    # Every answer says: no point left this minute, back in 2**64 - 1 seconds.
    sim.faults.override_limits(minute_remaining=0, minute_reset=2**64 - 1)
    async with running_daemon(tmp_path, config_text(sim)) as (daemon, capture):
        await ready(daemon, sim)
        marker = await talking_call(sim, direction="in", contact_phone_number="79260000003")
        await daemon.wait_for(lambda: marker in daemon.outcomes)
        assert daemon.outcomes[marker].result == "held"
    assert sim.account.call(marker).hold_count == 1
    assert sim.account.call(wide).hold_count == 0
    skipped = [e["reason"] for e in capture.events("callapi_list_entry_skipped")]
    assert skipped
    assert set(skipped) == {"number_out_of_range"}  # once per listing
    named = {(e["method"], e["field"]) for e in capture.events("callapi_number_out_of_range")}
    assert named == {
        ("list.calls", "result.data[].call_session_id"),
        ("list.calls", "result.metadata.limits.minute_reset"),
        ("hold.call", "result.metadata.limits.minute_reset"),
    }
    # Once per field, however many answers carried it.
    assert len(capture.events("callapi_number_out_of_range")) == len(named)
