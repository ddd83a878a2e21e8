"""The simulator as a `holdd sim` process of its own, on 127.0.0.1:0 (test
helper). For a test that measures the daemon's memory in its own process:
the simulator's request log, one record per request, grows elsewhere."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import orjson

from support.process import PACKAGE_ROOT
from support.sim import TOKEN


@dataclass(frozen=True, slots=True)
class SimProcess:
    callapi_url: str
    #: The control API's base (`/control/...`).
    control_url: str
    #: Where Call API outages are switched on (POST) and off (DELETE).
    outage_url: str
    process: asyncio.subprocess.Process

    async def methods(self) -> Counter[str]:
        """How many requests of each method the Call API received."""
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"{self.control_url}/requests") as resp,
        ):
            records = orjson.loads(await resp.read())["requests"]
        return Counter(str(r["body"].get("method")) for r in records if isinstance(r["body"], dict))


@contextlib.asynccontextmanager
async def sim_process(token: str = TOKEN, *options: str) -> AsyncIterator[SimProcess]:
    """Run `holdd sim --listen 127.0.0.1:0 --token TOKEN [options]` until the
    block ends (its exit code is then in `process.returncode`)."""
    env = {**os.environ, "PYTHONPATH": PACKAGE_ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        *("-m", "holdd", "sim", "--listen", "127.0.0.1:0", "--token", token, *options),
        stdout=asyncio.subprocess.PIPE,
        env=env,
    )
    try:
        assert proc.stdout is not None
        async with asyncio.timeout(15):
            line = orjson.loads(await proc.stdout.readline())
        assert line["event"] == "sim_listening", line
        control = str(line["control_url"]).removesuffix("/calls")
        yield SimProcess(str(line["callapi_url"]), control, str(line["outage_url"]), proc)
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(15):
            await proc.wait()
