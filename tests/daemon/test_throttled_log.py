"""io/throttled.py on a real event loop: a window of `ThrottledLog` ends with
one line saying what it held back, and `LoopErrorLog` turns asyncio's
hundreds of reports of a real EMFILE on accept() into one line."""

from __future__ import annotations

import asyncio
import os
import resource
import socket

import pytest

from holdd.io.throttled import LoopErrorLog, ThrottledLog
from support.logs import LogCapture

pytestmark = pytest.mark.timeout(10)


async def answer_nothing(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.close()


async def test_a_window_ends_with_one_line_saying_what_it_held_back(
    captured: LogCapture,
) -> None:
    per = 0.2
    lines = ThrottledLog(per=per)
    assert lines.warning("webhook_unauthorized", reason="secret_wrong", source="10.0.0.9")
    for _ in range(9):
        assert not lines.warning("webhook_unauthorized", reason="secret_wrong", source="10.0.0.9")
    assert len(captured.events()) == 1
    # The window is time itself: let it pass (the line is written by a loop
    # timer due at its end, which runs before this sleep's).
    await asyncio.sleep(per * 1.5)
    first, summary = captured.events("webhook_unauthorized")
    assert (first["suppressed"], summary["suppressed"]) == (0, 9)
    assert summary["source"] == "10.0.0.9" and summary["level"] == "warning"
    # That line opened a new window: still quiet, then said at close.
    assert not lines.warning("webhook_unauthorized", reason="secret_wrong", source="10.0.0.9")
    lines.close()
    assert [e["suppressed"] for e in captured.events()] == [0, 9, 1]


async def test_a_real_emfile_on_accept_is_logged_once(captured: LogCapture) -> None:
    """The process runs out of file descriptors: asyncio's accept loop fails
    with EMFILE and reports it to the loop's exception handler once per
    attempt (up to the listen backlog's worth in one loop turn), and again
    at each retry a second later. One `loop_error` line, the rest counted."""
    errors = LoopErrorLog()
    errors.install()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    clients: list[socket.socket] = []
    try:
        server = await asyncio.start_server(answer_nothing, "127.0.0.1", 0)
        address = server.sockets[0].getsockname()
        async with server:
            # Every socket this test needs exists before the limit falls, and
            # the limit is the lowest free descriptor number: no new one can
            # be made at all, so accept() is the only call that can fail, and
            # fails every time, whatever else the process has open or closes.
            for _ in range(3):
                client = socket.socket()
                client.setblocking(False)
                clients.append(client)
            probe = os.open(os.devnull, os.O_RDONLY)
            os.close(probe)
            resource.setrlimit(resource.RLIMIT_NOFILE, (probe, hard))
            try:
                loop = asyncio.get_running_loop()
                for client in clients:
                    await loop.sock_connect(client, address)
                async with asyncio.timeout(5):
                    while errors.seen < 2:
                        errors.noticed.clear()
                        await errors.noticed.wait()
            finally:
                resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    finally:
        for client in clients:
            client.close()
        errors.uninstall()
    assert asyncio.get_running_loop().get_exception_handler() is None
    lines = captured.events("loop_error")
    assert lines[0]["reason"] == "socket.accept() out of system resource (errno 24)"
    assert "Too many open files" in lines[0]["error"]
    assert lines[0]["suppressed"] == 0 and lines[0]["level"] == "error"
    assert len(lines) == 2  # the first, and the count said at uninstall
    assert 1 + lines[1]["suppressed"] == errors.seen >= 2
