"""The simulator's Call API outages, seen by a plain aiohttp client: until
switched off, the endpoint hangs, answers a proxy's HTML 502 page, or
refuses connections on its own port (bound again, the same port, when the
outage ends), while the notification stream and the control API stay up.
Nothing met by an outage is applied."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest

from holdd.sim.faults import Outage
from holdd.sim.server import Simulator
from support.sim import TOKEN, make_simulator, running, talking_call

pytestmark = pytest.mark.timeout(15)


@pytest.fixture
async def apart() -> AsyncIterator[Simulator]:
    async with running(make_simulator(), apart=True) as simulator:
        yield simulator


def hold(csid: int) -> bytes:
    params = {
        "access_token": TOKEN,
        "call_session_id": csid,
        "contact_message": {"type": "media", "value": "2034"},
    }
    return orjson.dumps({"jsonrpc": "2.0", "id": 1, "method": "hold.call", "params": params})


async def post(http: aiohttp.ClientSession, sim: Simulator, body: bytes) -> tuple[int, str, Any]:
    timeout = aiohttp.ClientTimeout(total=5)
    async with http.post(sim.callapi_url, data=body, timeout=timeout) as resp:
        return resp.status, resp.content_type, await resp.read()


async def test_the_call_api_on_its_own_port_leaves_the_main_port_without_it(
    apart: Simulator, http: aiohttp.ClientSession
) -> None:
    assert apart.callapi_url != apart.url + "/v4.0"
    async with http.post(apart.url + "/v4.0", data=b"{}") as resp:
        assert resp.status == 404
    csid = await talking_call(apart, direction="in")
    status, _, body = await post(http, apart, hold(csid))
    assert status == 200
    assert orjson.loads(body)["result"]["data"]["success"] in ("true", True)


async def test_html_outage_answers_502_pages_until_it_ends(
    apart: Simulator, http: aiohttp.ClientSession
) -> None:
    csid = await talking_call(apart, direction="in")
    period = await apart.begin_outage(Outage.HTML)
    for _ in range(3):
        status, content_type, body = await post(http, apart, hold(csid))
        assert (status, content_type) == (502, "text/html")
        assert b"502 Bad Gateway" in body
    assert apart.account.call(csid).hold_count == 0
    ended = await apart.end_outage()
    assert ended is period
    assert period.ended is not None
    assert period.ended >= period.started
    assert (await post(http, apart, hold(csid)))[0] == 200
    assert apart.account.call(csid).hold_count == 1
    assert [r.what for r in apart.faults.log] == ["outage_html"] * 3 + ["passed"]


async def test_hang_outage_never_answers_and_applies_nothing(
    apart: Simulator, http: aiohttp.ClientSession
) -> None:
    csid = await talking_call(apart, direction="in")
    await apart.begin_outage("hang")
    timeout = aiohttp.ClientTimeout(total=0.3)
    with pytest.raises(TimeoutError):
        async with http.post(apart.callapi_url, data=hold(csid), timeout=timeout):
            pass
    await apart.faults.wait_for_attempts(1, answered=False)
    await apart.end_outage()
    # The hung request lets go at the end of the outage, unapplied.
    [record] = await apart.faults.wait_for_attempts(1)
    assert record.what == "outage_hang"
    assert not record.applied
    assert apart.account.call(csid).hold_count == 0
    assert (await post(http, apart, hold(csid)))[0] == 200


async def test_refuse_outage_closes_the_port_and_binds_the_same_one_again(
    apart: Simulator, http: aiohttp.ClientSession
) -> None:
    url = apart.callapi_url
    csid = await talking_call(apart, direction="in")
    await apart.begin_outage(Outage.REFUSE)
    # The notification stream's and the control API's port stays up.
    async with http.get(apart.url + "/control/calls") as resp:
        assert resp.status == 200
    with pytest.raises(aiohttp.ClientConnectorError):
        await post(http, apart, hold(csid))
    await apart.end_outage()
    assert apart.callapi_url == url
    assert (await post(http, apart, hold(csid)))[0] == 200
    assert apart.account.call(csid).hold_count == 1


async def test_refusing_needs_the_call_api_on_its_own_port(sim: Simulator) -> None:
    with pytest.raises(RuntimeError, match="callapi_port"):
        await sim.begin_outage(Outage.REFUSE)
    assert sim.faults.outage is None


async def test_the_control_api_switches_an_outage_on_and_off(
    apart: Simulator, http: aiohttp.ClientSession
) -> None:
    control = apart.url + "/control/outage"
    async with http.post(control, json={"kind": "sleep"}) as resp:
        assert resp.status == 400
    async with http.post(control, json={"kind": "refuse"}) as resp:
        assert (resp.status, await resp.json()) == (200, {"kind": "refuse"})
    async with http.post(control, json={"kind": "html"}) as resp:
        assert resp.status == 409  # one outage at a time
    with pytest.raises(aiohttp.ClientConnectorError):
        await post(http, apart, hold(1))
    async with http.delete(control) as resp:
        answer = await resp.json()
    assert resp.status == 200
    assert answer["kind"] == "refuse"
    assert answer["seconds"] >= 0
    async with http.delete(control) as resp:
        assert resp.status == 409  # none going on


async def test_an_error_can_echo_the_access_token(
    apart: Simulator, http: aiohttp.ClientSession
) -> None:
    apart.faults.fail_next(1, "forbidden", echo_token=True)
    _, _, body = await post(http, apart, hold(1))
    error = orjson.loads(body)["error"]
    assert TOKEN in error["message"]
    assert error["data"]["params"]["received"] == TOKEN
