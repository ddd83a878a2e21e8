"""The notification side over real sockets: reconnect backoff, resync after an
outage, duplicates and reordering, bad input."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson

from conftest import TOKEN
from holdd.io.notify import NotifyListener
from holdd.sim.server import Simulator
from inproc import config_text, running_daemon


def holds(sim: Simulator) -> list[int]:
    return [
        r.body["params"]["call_session_id"]
        for r in sim.requests
        if isinstance(r.body, dict)
        and r.body.get("method") == "hold.call"
        and "result" in r.response
    ]


def talk(csid: int, **extra: Any) -> dict[str, Any]:
    return {
        "notification_name": "Начало разговора",
        "call_session_id": csid,
        "direction": "in",
        **extra,
    }


async def test_accept_then_close_is_not_a_tight_loop(sim: Simulator) -> None:
    """A server that accepts and closes at once: attempts follow the backoff."""
    sim.close_on_accept(1011)
    listener = NotifyListener(sim.notify_url, healthy_after=30.0)

    async def consume() -> None:
        async for _ in listener.messages():
            pass

    task = asyncio.create_task(consume())
    await asyncio.sleep(10)  # the observation window itself, not a wait for an event
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    attempts = sim.connection_attempts
    print(f"accept-then-close: {attempts} connection attempts in 10 s")
    assert 3 <= attempts <= 12, attempts
    assert listener.reconnects >= attempts - 1


async def test_outage_call_is_found_and_held_once_by_resync(sim: Simulator, tmp_path: Path) -> None:
    config = config_text(callapi_url=sim.callapi_url, token=TOKEN, notify_url=sim.notify_url)
    async with running_daemon(tmp_path, config) as (daemon, capture):
        await sim.wait_for_clients(1)
        await daemon.wait_for(lambda: daemon.resyncs >= 1)
        # Kill the stream and keep it down.
        sim.refuse_clients()
        await sim.drop_clients(code=1011)
        await daemon.wait_for(lambda: not daemon.listener.connected.is_set())  # type: ignore[union-attr]
        # A call starts and reaches Talk while the stream is down: no notification.
        csid = await sim.start_call(direction="in", contact_phone_number="79260000001")
        await sim.answer(csid)
        assert sim.connected_clients == 0
        # Restore the stream: the reconnect triggers a resync, which finds the call.
        sim.refuse_clients(False)
        await sim.wait_for_requests(1, method="hold.call", timeout=30)
        await daemon.wait_for(lambda: csid in daemon.outcomes, within=10)
        # The stream also delivers a late talk_started for it: no second hold.
        await sim.wait_for_clients(1, timeout=30)
        await sim.send_notifications(talk(csid))
        marker = await sim.start_call(direction="in", contact_phone_number="79260000002")
        await sim.answer(marker)
        await daemon.wait_for(lambda: marker in daemon.outcomes, within=20)
    assert holds(sim) == [csid, marker]
    assert sim.account.call(csid).hold_count == 1
    [found] = [e for e in capture.events("call_talk_started") if e["call_session_id"] == csid]
    assert found["source"] == "resync"
    connected = capture.events("notify_connected")
    assert len(connected) >= 2 and connected[-1]["outage_seconds"] > 0
    assert capture.events("notify_disconnected")


async def test_duplicates_and_reordering_never_double_or_revive(
    sim: Simulator, tmp_path: Path
) -> None:
    config = config_text(callapi_url=sim.callapi_url, token=TOKEN, notify_url=sim.notify_url)
    async with running_daemon(tmp_path, config) as (daemon, capture):
        await sim.wait_for_clients(1)
        await daemon.wait_for(lambda: daemon.resyncs >= 1)
        a = await sim.start_call(direction="in", contact_phone_number="79260000011")
        await sim.answer(a)  # talk_started for A
        await sim.send_notifications(talk(a), talk(a), {**talk(a), "state": "talk"})
        # B: the finish overtakes the start.
        b_call, _ = sim.account.start_call(0.0, direction="in", contact_phone_number="79260000012")
        b = b_call.call_session_id
        sim.account.answer(b, 0.0)  # B really is in Talk at the API
        await sim.send_notifications(
            {"notification_name": "Завершение звонка", "call_session_id": b},
            talk(b),
            talk(b),
        )
        marker = await sim.start_call(direction="in", contact_phone_number="79260000013")
        await sim.answer(marker)
        await daemon.wait_for(lambda: marker in daemon.outcomes, within=20)
    assert holds(sim) == [a, marker]
    assert sim.account.call(a).hold_count == 1
    assert sim.account.call(b).hold_count == 0
    started = [e["call_session_id"] for e in capture.events("call_talk_started")]
    assert started == [a, marker]


async def test_bad_input_is_dropped_counted_and_throttled(sim: Simulator, tmp_path: Path) -> None:
    config = config_text(callapi_url=sim.callapi_url, token=TOKEN, notify_url=sim.notify_url)
    async with running_daemon(tmp_path, config) as (daemon, capture):
        await sim.wait_for_clients(1)
        await sim.send_raw(
            *["not json"] * 40,
            b"\x00\x01binary",
            '{"notification_name": "Начало разговора"}',
            '{"call_session_id": "abc"}',
            '{"call_session_id": 5, "direction": [1]}',
            "[" * 3000 + "]" * 3000,
            '{"call_session_id": 6, "pad": "' + "x" * 300_000 + '"}',
            "42",
        )
        marker = await sim.start_call(direction="in", contact_phone_number="79260000021")
        await sim.answer(marker)
        await daemon.wait_for(lambda: marker in daemon.outcomes, within=20)
        dropped = dict(daemon.dropped)
    assert dropped == {
        "not_json": 41,
        "binary_frame": 1,
        "missing_call_session_id": 1,
        "bad_call_session_id": 1,
        "bad_field_type": 1,
        "too_large": 1,
        "not_object": 1,
    }
    lines = capture.events("notification_dropped")
    by_reason: dict[str, int] = {}
    for line in lines:
        by_reason[line["reason"]] = by_reason.get(line["reason"], 0) + 1
        assert line["detail"]
    assert by_reason["not_json"] == 5  # a flood of 41 logs 5 lines per 10 s
    assert holds(sim) == [marker]  # and the daemon kept serving


async def test_an_unknown_notification_name_is_warned_once_and_counted(
    sim: Simulator, tmp_path: Path
) -> None:
    """UIS sends whatever name the account owner typed: a name that maps to
    no event kind is one WARNING per name, and counted by name in /metrics."""
    config = config_text(callapi_url=sim.callapi_url, token=TOKEN, notify_url=sim.notify_url)
    async with running_daemon(tmp_path, config) as (daemon, capture):
        await sim.wait_for_clients(1)
        await sim.send_raw(
            *[
                orjson.dumps(
                    {"notification_name": "holdd: разговор", "call_session_id": n}
                ).decode()
                for n in (901, 902, 903)
            ],
            orjson.dumps({"notification_name": "other name", "call_session_id": 904}).decode(),
        )
        marker = await sim.start_call(direction="in", contact_phone_number="79260000031")
        await sim.answer(marker)
        await daemon.wait_for(lambda: marker in daemon.outcomes, within=20)
        registry = daemon.metrics.registry
        counted = {
            name: registry.get_sample_value(
                "holdd_notifications_unknown_name_total", {"name": name}
            )
            for name in ("holdd: разговор", "other name")
        }
    warned = capture.events("notification_name_unknown")
    assert [(w["name"], w["level"]) for w in warned] == [
        ("holdd: разговор", "warning"),
        ("other name", "warning"),
    ]
    assert "[notify] events" in warned[0]["hint"]
    assert counted == {"holdd: разговор": 3.0, "other name": 1.0}
    assert holds(sim) == [marker]
