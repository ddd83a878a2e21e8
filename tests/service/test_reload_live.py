"""Live reloads (SIGHUP) of `holdd run`: a broken file keeps the previous rules
acting, and a pending `after` is neither reset nor lost."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

from conftest import TOKEN
from daemonproc import AFTER, VIP, DaemonProcess, hold_requests, write_config
from holdd.sim.server import Simulator


async def test_a_broken_reload_keeps_the_previous_rules_acting(
    sim: Simulator, tmp_path: Path
) -> None:
    path = write_config(
        tmp_path, callapi_url=sim.callapi_url, notify_url=sim.notify_url, token=TOKEN, rules=VIP
    )
    rules = tmp_path / "rules.d" / "rules.toml"
    daemon = DaemonProcess(path)
    await daemon.start()
    try:
        await sim.wait_for_clients(1, timeout=20)
        rules.write_text(VIP.replace("contact_phone_number", "contact_phone"))
        daemon.send(signal.SIGHUP)
        failed = await daemon.wait_event(lambda e: e["event"] == "rules_reload_failed")
        # The previous rules still act.
        csid = await sim.start_call(direction="in", contact_phone_number="79260000071")
        await sim.answer(csid)
        held = await daemon.wait_event(lambda e: e["event"] == "hold_sent")
        # A good file again, with a changed rule and a new one.
        rules.write_text(VIP.replace("7926*", "7916*") + VIP.replace('"vip"', '"vip2"'))
        daemon.send(signal.SIGHUP)
        reloaded = await daemon.wait_event(lambda e: e["event"] == "rules_reloaded")
    finally:
        assert await daemon.stop() == 0
    line = VIP.splitlines().index('contact_phone_number = "7926*"') + 1
    assert any(
        p.startswith(f"{rules}:{line}:") and "contact_phone" in p for p in failed["problems"]
    ), failed
    assert failed["files"] == [str(rules)]
    assert (held["call_session_id"], held["rule"]) == (csid, "vip")
    assert (reloaded["added"], reloaded["removed"], reloaded["changed"]) == (["vip2"], [], ["vip"])


async def test_after_holds_no_earlier_than_2s_and_a_sighup_does_not_reset_it(
    sim: Simulator, tmp_path: Path
) -> None:
    path = write_config(
        tmp_path, callapi_url=sim.callapi_url, notify_url=sim.notify_url, token=TOKEN, rules=AFTER
    )
    rules = tmp_path / "rules.d" / "rules.toml"
    daemon = DaemonProcess(path)
    await daemon.start()
    try:
        await sim.wait_for_clients(1, timeout=20)
        await daemon.wait_event(lambda e: e["event"] == "resync_done")
        # A call that ends before its 2 s are up is never held.
        short = await sim.start_call(direction="in", contact_phone_number="79260000081")
        await sim.answer(short)
        await daemon.wait_event(
            lambda e: e["event"] == "rule_pending" and e["call_session_id"] == short
        )
        await sim.end_call(short)
        await daemon.wait_event(
            lambda e: e["event"] == "timer_cancelled" and e["call_session_id"] == short
        )
        # A call that stays: held at 2 s, a reload in between notwithstanding.
        csid = await sim.start_call(direction="in", contact_phone_number="79260000082")
        talk_began = time.time()
        await sim.answer(csid)
        await daemon.wait_event(
            lambda e: e["event"] == "rule_pending" and e["call_session_id"] == csid
        )
        rules.write_text(AFTER + VIP)  # one more rule: the reload really swaps
        # Half-way through the 2 s (the point of this test is the passage of time).
        await asyncio.sleep(max(0.0, talk_began + 1.0 - time.time()))
        daemon.send(signal.SIGHUP)
        await daemon.wait_event(lambda e: e["event"] == "rules_reloaded")
        reload_at = time.time()
        await daemon.wait_event(
            lambda e: e["event"] == "hold_sent" and e["call_session_id"] == csid
        )
    finally:
        assert await daemon.stop() == 0
    assert hold_requests(sim, short) == []
    [held] = hold_requests(sim, csid)
    held_at = held.received_at
    assert reload_at - talk_began < 2.0  # the reload came while the rule was pending
    assert held_at - talk_began >= 2.0
    # Had the reload restarted the 2 s, the hold would come 2 s after it.
    assert held_at < reload_at + 2.0
    pending = [
        e for e in daemon.events() if e["event"] == "rule_pending" and e["call_session_id"] == csid
    ]
    assert len(pending) == 1
