"""Live reloads (SIGHUP) of `holdd run`: a broken file keeps the previous rules
acting, and a pending `after` is neither reset nor lost. No wall-time margins:
the order of the daemon's log lines and `rule_pending`'s `due_at` decide."""

from __future__ import annotations

import signal
from pathlib import Path

from holdd.sim.server import Simulator
from support.config import AFTER, VIP, config_text, write_config
from support.process import DaemonProcess
from support.sim import hold_requests


async def test_a_broken_reload_keeps_the_previous_rules_acting(
    sim: Simulator, tmp_path: Path
) -> None:
    path = write_config(tmp_path, config_text(sim, log_format="json", log_level="debug"), VIP)
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


#: An `after` long enough that the SIGHUP sent right after `rule_pending` lands
#: before the rule acts, even on a slow machine.
PAUSE = AFTER.replace('after = "2s"', 'after = "3s"')


async def test_a_sighup_while_an_after_is_pending_neither_resets_nor_loses_it(
    sim: Simulator, tmp_path: Path
) -> None:
    assert PAUSE != AFTER
    path = write_config(tmp_path, config_text(sim, log_format="json", log_level="debug"), PAUSE)
    rules = tmp_path / "rules.d" / "rules.toml"
    daemon = DaemonProcess(path)
    await daemon.start()
    try:
        await daemon.ready(sim)
        # A call that ends before its 3 s are up is never held.
        short = await sim.start_call(direction="in", contact_phone_number="79260000081")
        await sim.answer(short)
        await daemon.wait_event(
            lambda e: e["event"] == "rule_pending" and e["call_session_id"] == short
        )
        await sim.end_call(short)
        await daemon.wait_event(
            lambda e: e["event"] == "timer_cancelled" and e["call_session_id"] == short
        )
        # A call that stays: held when due, a reload while pending notwithstanding.
        csid = await sim.start_call(direction="in", contact_phone_number="79260000082")
        await sim.answer(csid)
        pending = await daemon.wait_event(
            lambda e: e["event"] == "rule_pending" and e["call_session_id"] == csid
        )
        rules.write_text(PAUSE + VIP)  # one more rule: the reload really swaps
        daemon.send(signal.SIGHUP)
        await daemon.wait_event(lambda e: e["event"] == "rules_reloaded")
        sent = await daemon.wait_event(
            lambda e: e["event"] == "hold_sent" and e["call_session_id"] == csid
        )
    finally:
        assert await daemon.stop() == 0
    assert hold_requests(sim, short) == []
    assert sent["rule"] == "pause"
    # The reload came while the rule was pending: logged before the hold was sent.
    events = daemon.events()
    reloaded_at = next(i for i, e in enumerate(events) if e["event"] == "rules_reloaded")
    assert reloaded_at < events.index(sent)
    # The hold reached the API no earlier than the rule was due (the daemon's
    # and the simulator's clocks are the same machine's; 50 ms for rounding).
    [held] = hold_requests(sim, csid)
    assert held.received_at >= pending["due_at"] - 0.05
    # Neither reset nor rescheduled: one pending line, so its due_at never moved.
    assert [e for e in events if e["event"] == "rule_pending" and e["call_session_id"] == csid] == [
        pending
    ]
