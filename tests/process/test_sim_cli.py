"""`holdd sim --callapi-listen`: the Call API on a port of its own, taken down
and brought back through the control API, as a user of the simulator would."""

from __future__ import annotations

import asyncio
import os
import signal
import sys

import aiohttp
import orjson
import pytest

from support.process import PACKAGE_ROOT

pytestmark = pytest.mark.timeout(30)

LIST_CALLS = orjson.dumps(
    {"jsonrpc": "2.0", "id": 1, "method": "list.calls", "params": {"access_token": "sim-token"}}
)


async def test_holdd_sim_refuses_the_call_api_on_request_and_comes_back_on_the_same_port(
    http: aiohttp.ClientSession,
) -> None:
    env = {**os.environ, "PYTHONPATH": PACKAGE_ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "holdd",
        "sim",
        "--listen",
        "127.0.0.1:0",
        "--callapi-listen",
        "127.0.0.1:0",
        stdout=asyncio.subprocess.PIPE,
        env=env,
    )
    try:
        assert proc.stdout is not None
        async with asyncio.timeout(15):
            line = orjson.loads(await proc.stdout.readline())
        assert line["event"] == "sim_listening"
        callapi, control = line["callapi_url"], line["outage_url"]
        assert callapi.split("/")[2] != control.split("/")[2]  # two ports
        async with http.post(callapi, data=LIST_CALLS) as resp:
            assert resp.status == 200
        async with http.post(control, json={"kind": "refuse"}) as resp:
            assert resp.status == 200
        with pytest.raises(aiohttp.ClientConnectorError):
            async with http.post(callapi, data=LIST_CALLS):
                pass
        async with http.delete(control) as resp:
            assert resp.status == 200
        async with http.post(callapi, data=LIST_CALLS) as resp:
            assert resp.status == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(10):
            code = await proc.wait()
    assert code == 0
