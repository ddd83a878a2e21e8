"""The simulator's fault knobs (holdd.sim.faults), seen by a plain HTTP client:
what the client gets, and whether the account applied the request."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import orjson
import pytest

from holdd.core.states import CallState
from holdd.sim.faults import RpcFaults
from holdd.sim.server import Simulator
from support.sim import LOGIN, PASSWORD, TOKEN

# Every test's log is captured (support/logs.py), as an operator would read it.
pytestmark = [pytest.mark.timeout(30), pytest.mark.usefixtures("captured")]

HEADERS = {"Content-Type": "application/json; charset=UTF-8"}


async def post(
    http: aiohttp.ClientSession, sim: Simulator, method: str, **params: Any
) -> tuple[int, bytes]:
    body = {
        "jsonrpc": "2.0",
        "id": 7,
        "method": method,
        "params": {"access_token": TOKEN, **params},
    }
    async with http.post(sim.callapi_url, data=orjson.dumps(body), headers=HEADERS) as r:
        return r.status, await r.read()


async def hold(http: aiohttp.ClientSession, sim: Simulator, csid: int) -> tuple[int, bytes]:
    message = {"type": "media", "value": "2034"}
    return await post(http, sim, "hold.call", call_session_id=csid, contact_message=message)


async def talking(sim: Simulator) -> int:
    csid = await sim.start_call()
    await sim.answer(csid)
    return csid


async def test_fail_next_hits_only_its_method_and_count(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    csid = await talking(sim)
    sim.faults.fail_next(2, "internal_error", method="hold.call")
    assert sim.faults.armed == 2
    _, listed = await post(http, sim, "list.calls")
    assert "result" in orjson.loads(listed)
    for _ in range(2):
        status, raw = await hold(http, sim, csid)
        answer = orjson.loads(raw)
        assert status == 200 and answer["id"] == 7
        assert answer["error"]["code"] == -32603
        assert answer["error"]["data"]["mnemonic"] == "internal_error"
        # Section 6: limits in the error, as the account would put them.
        assert answer["error"]["data"]["metadata"]["limits"]["minute_limit"] == 250
    _, raw = await hold(http, sim, csid)
    assert orjson.loads(raw)["result"]["data"] == {"success": "true"}
    assert [r.what for r in sim.faults.log] == [
        "passed",
        "failed:internal_error",
        "failed:internal_error",
        "passed",
    ]
    # The account saw only what passed.
    assert [r.method for r in sim.requests] == ["list.calls", "hold.call"]
    assert sim.faults.armed == 0


async def test_made_up_errors_need_a_code_and_token_errors_carry_no_limits(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    with pytest.raises(ValueError, match="give its code"):
        sim.faults.fail_next(1, "tag_not_found")
    sim.faults.fail_next(1, "tag_not_found", code=-32602, field="tag_id", value=5)
    sim.faults.fail_next(1, "access_token_blocked")
    first = orjson.loads((await post(http, sim, "list.calls"))[1])["error"]
    assert first["code"] == -32602
    assert first["data"]["mnemonic"] == "tag_not_found"
    assert (first["data"]["field"], first["data"]["value"]) == ("tag_id", 5)
    assert "metadata" in first["data"]
    second = orjson.loads((await post(http, sim, "list.calls"))[1])["error"]
    assert second["data"] == {"mnemonic": "access_token_blocked"}  # section 6: no limits


@pytest.mark.parametrize("after_apply", [False, True])
async def test_http_500_is_an_html_page_before_or_after_applying(
    sim: Simulator, http: aiohttp.ClientSession, after_apply: bool
) -> None:
    csid = await talking(sim)
    sim.faults.http_500(1, after_apply=after_apply)
    status, raw = await hold(http, sim, csid)
    assert status == 500 and raw.startswith(b"<html>")
    call = sim.account.call(csid)
    assert call.hold_count == int(after_apply)
    assert call.state is (CallState.HOLD if after_apply else CallState.TALK)
    assert sim.faults.log[0].what == f"http_500_{'after' if after_apply else 'before'}_apply"
    assert sim.faults.log[0].applied is after_apply


@pytest.mark.parametrize("after_apply", [False, True])
async def test_drop_connection_gives_no_answer(
    sim: Simulator, http: aiohttp.ClientSession, after_apply: bool
) -> None:
    csid = await talking(sim)
    sim.faults.drop_connection(1, after_apply=after_apply)
    with pytest.raises(aiohttp.ClientConnectionError):
        await hold(http, sim, csid)
    assert sim.account.call(csid).hold_count == int(after_apply)
    # The next request on the same session is served normally.
    assert "result" in orjson.loads((await post(http, sim, "list.calls"))[1])


async def test_delay_answers_late_and_clear_cuts_it_short(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    sim.faults.delay(0.2, method="list.calls")
    status, _ = await post(http, sim, "list.calls")
    [late] = sim.faults.log
    assert status == 200 and late.done_at is not None and late.done_at - late.at >= 0.19
    sim.faults.delay(30, method="list.calls")
    async with asyncio.TaskGroup() as tg:
        slow = tg.create_task(post(http, sim, "list.calls"))
        # The slow one has arrived and is being held back...
        await sim.faults.wait_for_attempts(2, method="list.calls", answered=False, timeout=5)
        assert sim.faults.log[1].done_at is None
        sim.faults.clear()  # ...until the delay is cut short.
    assert slow.result()[0] == 200
    [_, cut] = await sim.faults.wait_for_attempts(2, method="list.calls", timeout=5)
    assert cut.what == "delayed_before_apply" and cut.done_at is not None
    assert cut.done_at - cut.at < 5


async def test_answer_rewrites_and_account_knobs(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    sim.faults.override_limits(minute_reset=2)
    sim.faults.deprecate_version(spelling="deprecated")
    answer = orjson.loads((await post(http, sim, "list.calls"))[1])
    metadata = answer["result"]["metadata"]
    assert metadata["limits"]["minute_reset"] == 2
    assert metadata["api_version"]["current_version_deprecated"] is True
    # The account's own record is not rewritten.
    assert "api_version" not in sim.requests[0].response["result"]["metadata"]

    sim.faults.set_minute_limit(1, used=1)
    refused = orjson.loads((await post(http, sim, "list.calls"))[1])
    assert refused["error"]["data"]["mnemonic"] == "limit_exceeded"
    assert refused["error"]["data"]["metadata"]["limits"]["minute_reset"] == 2

    sim.faults.set_session_ttl(5)
    body = {"jsonrpc": "2.0", "id": 1, "method": "login.user"}
    body["params"] = {"login": LOGIN, "password": PASSWORD}
    sim.faults.set_minute_limit(100, used=0)
    async with http.post(sim.callapi_url, data=orjson.dumps(body), headers=HEADERS) as r:
        login = orjson.loads(await r.read())["result"]["data"]
    assert login["expire_at"] - sim.requests[-1].received_at <= 5
    assert sim.faults.expire_sessions() == 1
    assert sim.account.sessions == {}


def test_account_knobs_need_an_account() -> None:
    with pytest.raises(RuntimeError, match="attach"):
        RpcFaults().set_session_ttl(1)
    with pytest.raises(ValueError, match="at least one"):
        RpcFaults().http_500(0)
