"""io/listener.py over real sockets on 127.0.0.1:0: the connection cap (who
makes room, who is refused), the header deadline of an idle keep-alive
connection, a handler that raises."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from holdd.io.listener import Limits, Listener
from support.logs import LogCapture
from support.rawhttp import closed_by_server

pytestmark = pytest.mark.timeout(10)

PING = b"GET /ping HTTP/1.1\r\nHost: holdd\r\n\r\n"


class Held:
    """A route whose requests wait until released: connections inside a request."""

    def __init__(self) -> None:
        self.inside = 0
        self.entered = asyncio.Event()
        self.release = asyncio.Event()

    async def handle(self, _request: web.Request) -> web.Response:
        self.inside += 1
        self.entered.set()
        await self.release.wait()
        return web.Response(text="released")


@contextlib.asynccontextmanager
async def serving(limits: Limits, held: Held | None = None) -> AsyncIterator[Listener]:
    app = web.Application()

    async def ping(_request: web.Request) -> web.Response:
        return web.Response(text="pong")

    async def crash(_request: web.Request) -> web.Response:
        raise RuntimeError("a bug in a handler")

    app.router.add_get("/ping", ping)
    app.router.add_get("/crash", crash)
    if held is not None:
        app.router.add_get("/held", held.handle)
    listener = Listener(app, "test", limits)
    await listener.start("127.0.0.1", 0)
    try:
        yield listener
    finally:
        await listener.stop()


async def answered(
    listener: Listener, request: bytes = PING
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A keep-alive connection that has had one answer (so the listener has
    accepted it), now waiting for its next request head."""
    reader, writer = await asyncio.open_connection(*listener.address)
    writer.write(request)
    async with asyncio.timeout(5):
        await reader.readuntil(b"pong")
    return reader, writer


async def test_past_the_limit_the_longest_waiting_connection_makes_room(
    captured: LogCapture,
) -> None:
    async with serving(Limits(header_timeout=30, connection_limit=3)) as listener:
        a, b, c = [await answered(listener) for _ in range(3)]
        a[1].write(b"GET /ping HTTP/1.1\r\n")  # a slow client now; the oldest waiting
        d = await answered(listener)  # gets in: a makes room
        assert await closed_by_server(a[0], within=5) == b""
        e = await answered(listener)  # b is the oldest waiting now
        assert await closed_by_server(b[0], within=5) == b""
        # c, d and e still talk.
        for reader, writer in (c, d, e):
            writer.write(PING)
            async with asyncio.timeout(5):
                await reader.readuntil(b"pong")
        assert listener.stats.open == 3
        assert listener.stats.closed == {"evicted": 2}
        for _reader, writer in (a, b, c, d, e):
            writer.close()
    lines = captured.events("http_connection_closed")
    assert [(e["reason"], e["listener"], e["source"], e["suppressed"]) for e in lines] == [
        ("evicted", "test", "127.0.0.1", 0),
        ("evicted", "test", "127.0.0.1", 1),  # said at stop
    ]


async def test_when_every_connection_is_inside_a_request_a_new_one_is_refused() -> None:
    held = Held()
    async with serving(Limits(header_timeout=30, connection_limit=2), held) as listener:
        inside = []
        for n in (1, 2):
            reader, writer = await asyncio.open_connection(*listener.address)
            writer.write(b"GET /held HTTP/1.1\r\nHost: holdd\r\n\r\n")
            async with asyncio.timeout(5):
                while held.inside < n:
                    held.entered.clear()
                    await held.entered.wait()
            inside.append((reader, writer))
        reader, writer = await asyncio.open_connection(*listener.address)
        writer.write(PING)
        assert await closed_by_server(reader, within=5) == b""  # no answer: refused
        writer.close()
        assert listener.stats.closed == {"over_limit": 1}
        held.release.set()
        for reader, writer in inside:
            async with asyncio.timeout(5):
                await reader.readuntil(b"released")
            writer.close()


async def test_an_idle_keep_alive_connection_is_closed_after_header_timeout() -> None:
    async with serving(Limits(header_timeout=0.3)) as listener:
        reader, writer = await answered(listener)
        loop = asyncio.get_running_loop()
        started = loop.time()
        assert await closed_by_server(reader, within=5) == b""
        assert loop.time() - started >= 0.25
        writer.close()
        assert listener.stats.closed == {"header_timeout": 1}
        assert listener.stats.open == 0


async def test_a_handler_that_raises_is_logged_once_with_its_traceback(
    captured: LogCapture,
) -> None:
    async with serving(Limits()) as listener:
        for _ in range(5):
            reader, writer = await asyncio.open_connection(*listener.address)
            writer.write(b"GET /crash HTTP/1.1\r\nHost: holdd\r\n\r\n")
            async with asyncio.timeout(5):
                assert (await reader.readline()).startswith(b"HTTP/1.1 500")
            writer.close()
    lines = captured.events("http_handler_failed")
    assert [(e["reason"], e["suppressed"]) for e in lines] == [
        ("RuntimeError", 0),
        ("RuntimeError", 4),  # said at stop
    ]
    assert lines[0]["level"] == "error"
    assert lines[0]["exception"][0]["exc_value"] == "a bug in a handler"
    assert "exception" not in lines[1]
    assert not [e for e in captured.events() if e["event"].startswith("aiohttp")]
