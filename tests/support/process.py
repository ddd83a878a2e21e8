"""`holdd run` as a real subprocess, its stdout read line by line (test helper)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

import holdd
from holdd.sim.server import Simulator

PACKAGE_ROOT = str(Path(holdd.__file__).resolve().parents[1])


async def explain(config: Path, csid: int) -> str:
    """What `holdd explain -c config csid` prints (it must exit 0)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "holdd",
        "explain",
        "-c",
        str(config),
        str(csid),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={"PYTHONPATH": PACKAGE_ROOT, "PATH": "/usr/bin:/bin"},
    )
    async with asyncio.timeout(30):
        out, err = await process.communicate()
    assert process.returncode == 0, err
    return out.decode()


class DaemonProcess:
    """Runs `python -m holdd run -c CONFIG`; every stdout line is kept as raw bytes."""

    def __init__(self, config: Path, env: dict[str, str] | None = None) -> None:
        self.config = config
        self.extra_env = dict(env or {})
        self.raw: list[bytes] = []
        self.stderr = b""
        self.proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self._tick = asyncio.Event()

    async def start(self) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = PACKAGE_ROOT + os.pathsep + env.get("PYTHONPATH", "")
        env.update(self.extra_env)
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "holdd",
            "run",
            "-c",
            str(self.config),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
        )
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        async for line in self.proc.stdout:
            self.raw.append(line.rstrip(b"\n"))
            tick, self._tick = self._tick, asyncio.Event()
            tick.set()

    def events(self) -> list[dict[str, Any]]:
        out = []
        for line in self.raw:
            doc = orjson.loads(line)
            assert isinstance(doc, dict), line
            out.append(doc)
        return out

    async def wait_event(
        self, predicate: Callable[[dict[str, Any]], bool], within: float = 20.0
    ) -> dict[str, Any]:
        """The first logged event for which `predicate` holds (waits for it)."""
        async with asyncio.timeout(within):
            while True:
                for event in self.events():
                    if predicate(event):
                        return event
                assert self._reader is not None
                if self._reader.done():
                    raise AssertionError(f"holdd exited; stderr: {self.stderr!r}")
                await self._tick.wait()

    async def ready(self, sim: Simulator, within: float = 20.0) -> None:
        """Wait until the daemon's stream client is connected and a resync done."""
        await sim.wait_for_clients(1, timeout=within)
        await self.wait_event(lambda e: e["event"] == "resync_done", within)

    def send(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    async def wait_count(self, event: str, n: int, within: float = 20.0) -> None:
        """Wait until `event` has been logged at least `n` times."""
        async with asyncio.timeout(within):
            while sum(e["event"] == event for e in self.events()) < n:
                assert self._reader is not None
                if self._reader.done():
                    raise AssertionError(f"holdd exited; stderr: {self.stderr!r}")
                await self._tick.wait()

    async def stop(self, sig: int = signal.SIGTERM, within: float = 15.0) -> int:
        assert self.proc is not None and self.proc.stderr is not None
        if self.proc.returncode is None:
            self.proc.send_signal(sig)
        async with asyncio.timeout(within):
            self.stderr = await self.proc.stderr.read()
            code = await self.proc.wait()
            assert self._reader is not None
            await self._reader
        return code

    async def kill(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()
        if self._reader is not None:
            await self._reader
