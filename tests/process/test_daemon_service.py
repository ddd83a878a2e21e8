"""`holdd run` as a service: restarts with the state database, graceful stop,
sd_notify at the right moments, and /readyz following the stream."""

from __future__ import annotations

import signal
import socket
import sqlite3
import time
from pathlib import Path

import aiohttp
import pytest

from holdd.sim.server import Simulator
from support.config import VIP, config_text, write_config
from support.process import DaemonProcess
from support.sim import TOKEN, hold_requests
from support.systemd import FakeSystemd


def config(sim: Simulator, tmp_path: Path) -> Path:
    return write_config(tmp_path, config_text(sim, log_format="json", log_level="debug"), VIP)


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGKILL])
async def test_restart_with_the_same_state_never_holds_twice(
    sim: Simulator, tmp_path: Path, stop_signal: int
) -> None:
    path = config(sim, tmp_path)
    first = DaemonProcess(path)
    await first.start()
    try:
        await first.ready(sim)
        csid = await sim.start_call(direction="in", contact_phone_number="79260000041")
        await sim.answer(csid)
        await first.wait_event(lambda e: e["event"] == "hold_sent")
    finally:
        code = await first.stop(stop_signal)
    assert code == (0 if stop_signal == signal.SIGTERM else -signal.SIGKILL)
    await sim.wait_for_clients(0)
    # Someone takes the call off hold while holdd is down: it is back in Talk.
    sim.account.handle(
        f'{{"jsonrpc":"2.0","id":1,"method":"unhold.call","params":{{"access_token":"{TOKEN}",'
        f'"call_session_id":{csid}}}}}'.encode(),
        time.time(),
    )
    assert sim.account.call(csid).state.value == "TALK"

    second = DaemonProcess(path)
    await second.start()
    try:
        # The resync finds the call in Talk, and the stream repeats talk_started.
        await second.ready(sim)
        await sim.send_notifications(
            {
                "notification_name": "Начало разговора",
                "call_session_id": csid,
                "direction": "in",
                "contact_phone_number": "79260000041",
            }
        )
        marker = await sim.start_call(direction="in", contact_phone_number="79260000042")
        await sim.answer(marker)
        await second.wait_event(
            lambda e: e["event"] == "hold_sent" and e["call_session_id"] == marker
        )
    finally:
        assert await second.stop() == 0
    assert len(hold_requests(sim, csid)) == 1
    assert sim.account.call(csid).hold_count == 1
    second_log = second.events()
    assert not [e for e in second_log if e["event"] == "hold_sent" and e["call_session_id"] == csid]
    # The restarted daemon remembered the call and its Talk episode.
    [restored] = [e for e in second_log if e["event"] == "state_restored"]
    assert restored["calls"] >= 1


async def test_sigterm_finishes_requests_in_flight_and_exits_0(
    sim: Simulator, tmp_path: Path
) -> None:
    daemon = DaemonProcess(config(sim, tmp_path))
    await daemon.start()
    try:
        await daemon.ready(sim)
        sim.faults.delay(2.0, method="hold.call")
        csid = await sim.start_call(direction="in", contact_phone_number="79260000051")
        await sim.answer(csid)
        await sim.faults.wait_for_attempts(1, method="hold.call", answered=False, timeout=20)
    finally:
        started = time.monotonic()
        code = await daemon.stop(signal.SIGTERM)
        took = time.monotonic() - started
    assert code == 0
    assert took < 10
    assert sim.account.call(csid).hold_count == 1  # the request in flight was completed
    events = [e["event"] for e in daemon.events()]
    assert (
        events.index("holdd_stopping") < events.index("hold_sent") < events.index("holdd_stopped")
    )


async def test_sd_notify_ready_watchdog_reloading_stopping(
    sim: Simulator, tmp_path: Path, systemd: FakeSystemd
) -> None:
    daemon = DaemonProcess(config(sim, tmp_path), env={**systemd.env, "WATCHDOG_USEC": "400000"})
    await daemon.start()
    try:
        await systemd.until("READY=1")
        await systemd.until("WATCHDOG=1")
        daemon.send(signal.SIGHUP)
        await systemd.until("RELOADING=1")
        await daemon.wait_event(lambda e: e["event"] == "rules_reloaded")
    finally:
        code = await daemon.stop(signal.SIGTERM)
        await systemd.until("STOPPING=1")
    assert code == 0
    reloading = systemd.messages[systemd.first("RELOADING=1")].split("\n")
    assert any(f.startswith("MONOTONIC_USEC=") for f in reloading)
    # READY=1 again after the reload, then STOPPING=1 last.
    after_reload = systemd.messages[systemd.first("RELOADING=1") + 1 :]
    assert any("READY=1" in m.split("\n") for m in after_reload)
    assert systemd.first("READY=1") < systemd.first("RELOADING=1") < systemd.first("STOPPING=1")
    assert sum("WATCHDOG=1" in m.split("\n") for m in systemd.messages) >= 1


async def test_readyz_follows_the_stream(sim: Simulator, tmp_path: Path) -> None:
    daemon = DaemonProcess(config(sim, tmp_path))
    await daemon.start()
    try:
        await daemon.ready(sim)
        port = (await daemon.wait_event(lambda e: e["event"] == "http_listening"))["port"]
        url = f"http://127.0.0.1:{port}"
        async with aiohttp.ClientSession() as http:

            async def status() -> tuple[int, str]:
                async with http.get(url + "/readyz") as resp:
                    return resp.status, await resp.text()

            assert (await status())[0] == 200
            async with http.get(url + "/healthz") as resp:
                assert resp.status == 200
            sim.refuse_clients()
            await sim.drop_clients(code=1011)
            await daemon.wait_event(lambda e: e["event"] == "notify_disconnected")
            code, body = await status()
            assert code == 503 and "notification stream down" in body
            async with http.get(url + "/metrics") as resp:
                text = await resp.text()
            assert "holdd_notify_connected 0.0" in text
            sim.refuse_clients(False)
            await daemon.wait_count("notify_connected", 2)
            assert (await status())[0] == 200
            async with http.get(url + "/metrics") as resp:
                text = await resp.text()
            assert "holdd_notify_connected 1.0" in text
            assert "holdd_notify_reconnects_total" in text
    finally:
        assert await daemon.stop() == 0


async def test_sigkill_with_a_hold_in_flight_resolves_the_claim_before_sending(
    sim: Simulator, tmp_path: Path
) -> None:
    """The claim row is written before the request; killed before the answer,
    the restarted daemon asks list.calls what happened instead of resending."""
    path = config(sim, tmp_path)
    first = DaemonProcess(path)
    await first.start()
    try:
        await first.ready(sim)
        sim.faults.delay(30.0, method="hold.call", after_apply=True)
        csid = await sim.start_call(direction="in", contact_phone_number="79260000061")
        await sim.answer(csid)
        await sim.faults.wait_for_attempts(1, method="hold.call", answered=False, timeout=20)
    finally:
        await first.stop(signal.SIGKILL)
    sim.faults.clear()
    assert sim.account.call(csid).hold_count == 1  # applied; the answer never arrived

    second = DaemonProcess(path)
    await second.start()
    try:
        await second.ready(sim)
        resolved = await second.wait_event(lambda e: e["event"] == "claim_resolved")
        await sim.send_notifications(
            {
                "notification_name": "Начало разговора",
                "call_session_id": csid,
                "direction": "in",
                "contact_phone_number": "79260000061",
            }
        )
        marker = await sim.start_call(direction="in", contact_phone_number="79260000062")
        await sim.answer(marker)
        await second.wait_event(
            lambda e: e["event"] == "hold_sent" and e["call_session_id"] == marker
        )
    finally:
        assert await second.stop() == 0
    assert (resolved["call_session_id"], resolved["result"]) == (csid, "held")
    assert sim.account.call(csid).hold_count == 1
    assert len(hold_requests(sim, csid)) == 1


async def test_the_ledger_alone_refuses_a_second_hold(sim: Simulator, tmp_path: Path) -> None:
    """The last line of defence: the daemon has forgotten the call (its row
    is gone), the API shows it in Talk again, the rules match again - and the
    fired-once claim in the state database still refuses a second hold."""
    path = config(sim, tmp_path)
    first = DaemonProcess(path)
    await first.start()
    try:
        await first.ready(sim)
        csid = await sim.start_call(direction="in", contact_phone_number="79260000111")
        await sim.answer(csid)
        await first.wait_event(lambda e: e["event"] == "hold_sent")
    finally:
        assert await first.stop() == 0
    with sqlite3.connect(tmp_path / "state.db") as db:
        db.execute("DELETE FROM calls")
    sim.account.handle(
        f'{{"jsonrpc":"2.0","id":1,"method":"unhold.call","params":{{"access_token":"{TOKEN}",'
        f'"call_session_id":{csid}}}}}'.encode(),
        time.time(),
    )
    second = DaemonProcess(path)
    await second.start()
    try:
        await second.ready(sim)
        skipped = await second.wait_event(lambda e: e["event"] == "hold_skipped")
    finally:
        assert await second.stop() == 0
    assert (skipped["call_session_id"], skipped["reason"]) == (csid, "already_claimed")
    assert sim.account.call(csid).hold_count == 1


async def test_a_taken_http_port_is_one_json_line_and_exit_78(
    sim: Simulator, tmp_path: Path
) -> None:
    """Seen under systemd: a port already in use must not crash-loop with a
    raw traceback; one error line says what to change."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        path = config(sim, tmp_path)
        path.write_text(
            path.read_text().replace('listen = "127.0.0.1:0"', f'listen = "127.0.0.1:{port}"')
        )
        daemon = DaemonProcess(path)
        await daemon.start()
        code = await daemon.stop(sig=0)
    assert code == 78
    failed = [e for e in daemon.events() if e["event"] == "http_listen_failed"]
    assert failed and failed[0]["port"] == port and "[http] listen" in failed[0]["hint"]
    assert daemon.stderr == b""
