"""sd_notify against a fake systemd (support/systemd.py): a real AF_UNIX
datagram socket, bound to a path in a temporary directory or to an abstract
address, standing in for $NOTIFY_SOCKET. Every receive waits on the socket
under a deadline."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from holdd.io import sdnotify
from support.systemd import FakeSystemd

pytestmark = pytest.mark.timeout(10)


@pytest.fixture(params=["path", "abstract"])
def systemd(request: pytest.FixtureRequest, short_dir: Path) -> Iterator[FakeSystemd]:
    if request.param == "path":
        fake = FakeSystemd(str(short_dir / "notify"))
    else:
        fake = FakeSystemd(f"@holdd-test-{uuid.uuid4().hex}")
    try:
        yield fake
    finally:
        fake.close()


def test_without_notify_socket_everything_is_a_no_op() -> None:
    env: dict[str, str] = {}
    assert sdnotify.socket_address(env) is None
    assert not sdnotify.notify("READY=1", environ=env)
    assert not sdnotify.ready(environ=env)
    assert not sdnotify.reloading(environ=env)
    assert not sdnotify.stopping(environ=env)
    assert not sdnotify.status("x", environ=env)
    assert not sdnotify.watchdog(environ=env)
    assert not sdnotify.notify("READY=1", environ={"NOTIFY_SOCKET": "vsock:2:1234"})


def test_a_missing_socket_is_not_an_error(short_dir: Path) -> None:
    assert not sdnotify.ready(environ={"NOTIFY_SOCKET": str(short_dir / "gone")})


def test_ready_with_status(systemd: FakeSystemd) -> None:
    assert sdnotify.ready("3 rules loaded", environ=systemd.env)
    assert systemd.receive() == ["READY=1", "STATUS=3 rules loaded"]
    assert sdnotify.ready(environ=systemd.env)
    assert systemd.receive() == ["READY=1"]


def test_reloading_carries_monotonic_usec(systemd: FakeSystemd) -> None:
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert sdnotify.reloading(environ=systemd.env)
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    fields = systemd.receive()
    assert fields[0] == "RELOADING=1"
    key, _, value = fields[1].partition("=")
    assert key == "MONOTONIC_USEC"
    assert before <= int(value) <= after


def test_stopping_and_status(systemd: FakeSystemd) -> None:
    assert sdnotify.stopping("finishing 2 requests", environ=systemd.env)
    assert systemd.receive() == ["STOPPING=1", "STATUS=finishing 2 requests"]
    # A newline in the text would forge a field: it is folded.
    assert sdnotify.status("stream down\nREADY=1", environ=systemd.env)
    assert systemd.receive() == ["STATUS=stream down READY=1"]


def test_the_real_environment_is_read_by_default(
    systemd: FakeSystemd, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", systemd.address)
    assert sdnotify.watchdog()
    assert systemd.receive() == ["WATCHDOG=1"]


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, None),
        ({"WATCHDOG_USEC": "30000000"}, 30.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}, 30.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid() + 1)}, None),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "x"}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
    ],
)
def test_watchdog_interval(env: dict[str, str], expected: float | None) -> None:
    assert sdnotify.watchdog_interval(env) == expected


async def test_watchdog_loop_pings_at_half_the_interval(systemd: FakeSystemd) -> None:
    """The delay is injected: each ping waits for the test to let it go."""
    env = {**systemd.env, "WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}
    delays: asyncio.Queue[float] = asyncio.Queue()
    gate: asyncio.Queue[None] = asyncio.Queue()

    async def sleep(seconds: float) -> None:
        delays.put_nowait(seconds)
        await gate.get()

    async with asyncio.timeout(5), asyncio.TaskGroup() as tg:
        task = tg.create_task(sdnotify.watchdog_loop(environ=env, sleep=sleep))
        for _ in range(3):
            assert await systemd.areceive() == ["WATCHDOG=1"]
            assert await delays.get() == 15.0
            gate.put_nowait(None)
        assert await systemd.areceive() == ["WATCHDOG=1"]
        task.cancel()
    assert task.cancelled()  # CancelledError is not swallowed


async def test_watchdog_loop_with_the_real_clock(systemd: FakeSystemd) -> None:
    env = {**systemd.env, "WATCHDOG_USEC": "20000"}  # 20 ms: a ping every 10 ms
    async with asyncio.timeout(5), asyncio.TaskGroup() as tg:
        task = tg.create_task(sdnotify.watchdog_loop(environ=env))
        received = [await systemd.areceive() for _ in range(3)]
        task.cancel()
    assert received == [["WATCHDOG=1"]] * 3


async def test_watchdog_loop_ends_at_once_without_a_watchdog(systemd: FakeSystemd) -> None:
    async with asyncio.timeout(5):
        await sdnotify.watchdog_loop(environ=systemd.env)
    systemd.sock.setblocking(False)
    with pytest.raises(BlockingIOError):
        systemd.sock.recv(4096)  # nothing was sent
