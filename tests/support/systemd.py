"""A fake systemd: the receiving end of $NOTIFY_SOCKET, a real AF_UNIX datagram
socket bound to a path in a short temporary directory or to an abstract address.
Every receive waits on the socket under a deadline."""

from __future__ import annotations

import asyncio
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest


class FakeSystemd:
    """The receiving end of NOTIFY_SOCKET; `messages` keeps what `until` read."""

    def __init__(self, address: str) -> None:
        self.address = address  # as written in NOTIFY_SOCKET
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + address[1:] if address.startswith("@") else address)
        self.sock.settimeout(5)
        self.env = {"NOTIFY_SOCKET": address}
        self.messages: list[str] = []

    def receive(self) -> list[str]:
        """One datagram's fields (blocking, at most 5 s)."""
        return self.sock.recv(4096).decode().split("\n")

    async def areceive(self) -> list[str]:
        """One datagram's fields, waited for on the event loop."""
        self.sock.setblocking(False)
        data = await asyncio.get_running_loop().sock_recv(self.sock, 4096)
        return data.decode().split("\n")

    async def until(self, field: str, within: float = 20.0) -> None:
        """Read datagrams into `messages` until one carries `field`."""
        async with asyncio.timeout(within):
            while not any(field in m.split("\n") for m in self.messages):
                self.messages.append("\n".join(await self.areceive()))

    def first(self, field: str) -> int:
        """The index in `messages` of the first one that carries `field`."""
        return next(i for i, m in enumerate(self.messages) if field in m.split("\n"))

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def short_dir() -> Iterator[Path]:
    # AF_UNIX paths are limited to 107 bytes; pytest's tmp_path can be longer.
    with tempfile.TemporaryDirectory(prefix="sd") as d:
        yield Path(d)


@pytest.fixture
def systemd(short_dir: Path) -> Iterator[FakeSystemd]:
    """A fake systemd listening on a path."""
    fake = FakeSystemd(str(short_dir / "notify"))
    try:
        yield fake
    finally:
        fake.close()
