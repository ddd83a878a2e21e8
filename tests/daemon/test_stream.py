"""The notification side over real sockets: reconnect backoff, resync after an
outage, duplicates and reordering, bad input."""

from __future__ import annotations

import asyncio
import itertools
import random
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson

from holdd.core.backoff import full_jitter
from holdd.io.notify import NotifyListener
from holdd.sim.server import Simulator
from support.config import config_text
from support.inproc import ready, running_daemon


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


class RecordingPolicy:
    """The listener's backoff policy (`delays`), recorded: how often the policy
    was started anew, which delays the listener took from it, and how many
    connections the server had seen at each. The planned delays are recorded,
    not slept: the listener gets 0 s for each, so the test takes no time, and
    after `n` of them one long delay parks it until it is cancelled."""

    def __init__(self, sim: Simulator, plan: Callable[[], Iterator[float]], n: int) -> None:
        self.sim = sim
        self.plan = plan
        self.n = n
        self.starts = 0
        self.taken: list[float] = []
        self.attempts_seen: list[int] = []
        self.done = asyncio.Event()

    def __call__(self) -> Iterator[float]:
        self.starts += 1
        return self._delays(self.plan())

    def _delays(self, planned: Iterator[float]) -> Iterator[float]:
        for delay in planned:
            self.taken.append(delay)
            self.attempts_seen.append(self.sim.connection_attempts)
            if len(self.taken) >= self.n:
                self.done.set()
                yield 3600.0
            else:
                yield 0.0


def seeded_policy() -> Iterator[float]:
    return full_jitter(0.5, 60.0, rng=random.Random(7).random)


async def run_listener(sim: Simulator, policy: RecordingPolicy, healthy_after: float) -> int:
    """Let a listener meet `sim` until it has taken `policy.n` delays; its reconnects."""
    listener = NotifyListener(sim.notify_url, healthy_after=healthy_after, delays=policy)

    async def consume() -> None:
        async for _ in listener.messages():
            pass

    task = asyncio.create_task(consume())
    try:
        async with asyncio.timeout(20):
            await policy.done.wait()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    return listener.reconnects


async def test_accept_then_close_is_not_a_tight_loop(sim: Simulator) -> None:
    """A server that accepts and closes at once: every reconnect waits the next
    delay of one backoff sequence, never restarted by the short sessions (the
    websockets loop restarts it on every handshake: ecosystem.md section 3.3)."""
    sim.close_on_accept(1011)
    policy = RecordingPolicy(sim, seeded_policy, n=8)

    reconnects = await run_listener(sim, policy, healthy_after=30.0)

    assert policy.starts == 1
    # The delays are the policy's, in order: the growing full-jitter sequence.
    assert policy.taken == list(itertools.islice(seeded_policy(), 8))
    # One connection per delay: no attempt goes out without waiting first.
    assert policy.attempts_seen == list(range(1, 9))
    assert reconnects == 8


async def test_a_session_that_lived_long_enough_restarts_the_backoff(sim: Simulator) -> None:
    """The counterpart, so that the test above can fail: sessions that count as
    healthy (healthy_after=0) start the backoff sequence anew every time."""
    sim.close_on_accept(1011)
    policy = RecordingPolicy(sim, seeded_policy, n=4)

    reconnects = await run_listener(sim, policy, healthy_after=0.0)

    assert policy.starts == 1 + 4
    assert policy.taken == [next(seeded_policy())] * 4
    assert policy.attempts_seen == [1, 2, 3, 4]
    assert reconnects == 4


async def test_outage_call_is_found_and_held_once_by_resync(sim: Simulator, tmp_path: Path) -> None:
    config = config_text(sim)
    async with running_daemon(tmp_path, config, debug=True) as (daemon, capture):
        await ready(daemon, sim)
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
    config = config_text(sim)
    async with running_daemon(tmp_path, config, debug=True) as (daemon, capture):
        await ready(daemon, sim)
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
    config = config_text(sim)
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
    config = config_text(sim)
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
