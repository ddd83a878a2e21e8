"""HTTP by hand over real sockets, for the tests of abusive clients: a head
without its body, bytes that are not UTF-8, connections that never finish
their request head."""

from __future__ import annotations

import asyncio
import contextlib
import resource
from collections.abc import AsyncIterator

#: What a slow client sends, and then nothing more: half a request head.
PARTIAL_HEAD = b"POST /uis/notify HTTP/1.1\r\nHost: holdd\r\nX-Slow: "


def raise_nofile_limit() -> int:
    """Raise this process's soft RLIMIT_NOFILE to its hard limit; the new soft limit."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


async def status_of(host: str, port: int, raw: bytes, *, within: float = 5.0) -> tuple[int, bytes]:
    """Send `raw` as it is, read the answer's head: (status, head bytes).
    The connection stays open on our side until the answer has come."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(raw)
        await writer.drain()
        async with asyncio.timeout(within):
            head = await reader.readuntil(b"\r\n\r\n")
        return int(head.split(b" ", 2)[1]), head
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def closed_by_server(reader: asyncio.StreamReader, *, within: float) -> bytes:
    """Wait (at most `within` s) until the server closes the connection; what it sent."""
    received = b""
    async with asyncio.timeout(within):
        while True:
            try:
                chunk = await reader.read(4096)
            except ConnectionResetError:
                return received
            if not chunk:
                return received
            received += chunk


@contextlib.asynccontextmanager
async def slow_clients(
    host: str, port: int, count: int, partial: bytes = PARTIAL_HEAD
) -> AsyncIterator[list[tuple[asyncio.StreamReader, asyncio.StreamWriter]]]:
    """`count` connections opened at once, each sending `partial` and then
    nothing; all closed on exit."""

    async def one() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(partial)
        return reader, writer

    clients = await asyncio.gather(*(one() for _ in range(count)))
    try:
        yield clients
    finally:
        for _reader, writer in clients:
            writer.transport.abort()
