"""`holdd sim --callapi-listen`: the Call API on a port of its own, taken down
and brought back through the control API, as a user of the simulator would."""

from __future__ import annotations

import aiohttp
import orjson
import pytest

from support.sim import TOKEN
from support.simproc import sim_process

pytestmark = pytest.mark.timeout(30)

LIST_CALLS = orjson.dumps(
    {"jsonrpc": "2.0", "id": 1, "method": "list.calls", "params": {"access_token": TOKEN}}
)


async def test_holdd_sim_refuses_the_call_api_on_request_and_comes_back_on_the_same_port(
    http: aiohttp.ClientSession,
) -> None:
    async with sim_process(TOKEN, "--callapi-listen", "127.0.0.1:0") as sim:
        callapi, control = sim.callapi_url, sim.outage_url
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
    assert sim.process.returncode == 0
