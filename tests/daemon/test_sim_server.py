"""The simulator's network side: a real server on 127.0.0.1:0, real HTTP and websocket clients.

Nothing here sleeps to wait for something: the tests wait on the simulator's
conditions (`wait_for_clients`, `wait_for_requests`) or on the client's own
receive, each under a deadline.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from holdd.core.states import CallState
from holdd.sim import Simulator

pytestmark = pytest.mark.timeout(10)

TOKEN = "sim-token"
FIRST_ID = 23465781
JSON_HEADERS = {"Content-Type": "application/json; charset=UTF-8"}


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    async with Simulator(users={"operator": "s3cret"}) as simulator:
        yield simulator


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def call_api(
    http: aiohttp.ClientSession,
    sim: Simulator,
    method: str,
    params: dict[str, Any],
    request_id: object = "req1",
) -> dict[str, Any]:
    request = {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}
    async with http.post(sim.callapi_url, data=orjson.dumps(request), headers=JSON_HEADERS) as r:
        assert r.status == 200
        assert r.content_type == "application/json"
        response: dict[str, Any] = orjson.loads(await r.read())
        return response


async def receive(ws: ClientConnection) -> dict[str, Any]:
    async with asyncio.timeout(5):
        message = await ws.recv()
    assert isinstance(message, str), "notifications are text messages"
    note: dict[str, Any] = orjson.loads(message)
    return note


def hold_params(call_session_id: int) -> dict[str, Any]:
    return {
        "access_token": TOKEN,
        "call_session_id": call_session_id,
        "contact_message": {"type": "media", "value": "2034"},
    }


async def test_addresses(sim: Simulator) -> None:
    assert sim.url.startswith("http://127.0.0.1:")
    port = int(sim.url.rsplit(":", 1)[1])
    assert port > 0
    assert sim.callapi_url == f"http://127.0.0.1:{port}/v4.0"
    assert sim.notify_url == f"ws://127.0.0.1:{port}/notify"


async def test_not_running_has_no_address() -> None:
    simulator = Simulator()
    with pytest.raises(RuntimeError, match="not running"):
        _ = simulator.url
    await simulator.stop()  # stopping what never ran is harmless


async def test_cannot_start_twice(sim: Simulator) -> None:
    with pytest.raises(RuntimeError, match="already running"):
        await sim.start()


async def test_hold_call_over_http(sim: Simulator, http: aiohttp.ClientSession) -> None:
    call_session_id = await sim.start_call()
    await sim.answer(call_session_id)
    response = await call_api(http, sim, "hold.call", hold_params(call_session_id))
    assert response["id"] == "req1"
    assert response["result"]["data"] == {"success": "true"}
    assert response["result"]["metadata"]["limits"]["minute_remaining"] == 249
    assert sim.account.calls[call_session_id].state is CallState.HOLD
    [recorded] = sim.requests
    assert recorded.body == {
        "jsonrpc": "2.0",
        "id": "req1",
        "method": "hold.call",
        "params": hold_params(call_session_id),
    }
    assert recorded.response == response


async def test_errors_come_with_http_200(sim: Simulator, http: aiohttp.ClientSession) -> None:
    response = await call_api(http, sim, "list.calls", {"access_token": "nope"})
    assert response["error"]["code"] == -32001
    assert response["error"]["data"] == {"mnemonic": "access_token_invalid"}
    async with http.post(sim.callapi_url, data=b"{", headers=JSON_HEADERS) as r:
        assert r.status == 200
        body = orjson.loads(await r.read())
    assert body["id"] is None
    assert body["error"]["data"] == {"mnemonic": "parse_error"}
    assert sim.requests[-1].body == "{"


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
async def test_callapi_takes_post_only(
    sim: Simulator, http: aiohttp.ClientSession, method: str
) -> None:
    async with http.request(method, sim.callapi_url) as r:
        assert r.status == 405
    assert sim.requests == []


async def test_notifications_reach_every_client_in_order(sim: Simulator) -> None:
    async with connect(sim.notify_url) as first, connect(sim.notify_url) as second:
        await sim.wait_for_clients(2)
        assert sim.connected_clients == 2
        call_session_id = await sim.start_call(contact_full_name="Иван Петров")
        await sim.answer(call_session_id)
        await sim.end_call(call_session_id)
        for ws in (first, second):
            notes = [await receive(ws) for _ in range(4)]
            assert [n["notification_mnemonic"] for n in notes] == [
                "call_started",
                "talk_started",
                "talk_finished",
                "call_finished",
            ]
            assert [n["notification_name"] for n in notes] == [
                "Входящий звонок на виртуальный номер",
                "Начало разговора",
                "Окончание разговора",
                "Завершение звонка",
            ]
            assert {n["call_session_id"] for n in notes} == {call_session_id}
            assert notes[0]["contact_full_name"] == "Иван Петров"
            assert notes[1]["leg_ids"] == sim.account.call(call_session_id).leg_ids


async def test_clients_that_leave_are_forgotten(sim: Simulator) -> None:
    async with connect(sim.notify_url):
        await sim.wait_for_clients(1)
    await sim.wait_for_clients(0)
    assert sim.connected_clients == 0
    await sim.start_call()  # broadcasting to nobody is fine


async def test_release_call_is_notified_before_the_answer(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    call_session_id = await sim.start_call()
    await sim.answer(call_session_id)
    async with connect(sim.notify_url) as ws:
        await sim.wait_for_clients(1)
        params = {"access_token": TOKEN, "call_session_id": call_session_id}
        response = await call_api(http, sim, "release.call", params)
        assert response["result"]["data"] == {"success": "true"}
        notes = [await receive(ws), await receive(ws)]
    assert [n["notification_mnemonic"] for n in notes] == ["talk_finished", "call_finished"]
    assert sim.account.call(call_session_id).state is CallState.ENDED


async def test_wait_for_requests_of_one_method(sim: Simulator, http: aiohttp.ClientSession) -> None:
    call_session_id = await sim.start_call()
    await sim.answer(call_session_id)
    async with asyncio.TaskGroup() as tg:
        waiting = tg.create_task(sim.wait_for_requests(1, method="hold.call", timeout=5))
        await call_api(http, sim, "list.calls", {"access_token": TOKEN})
        assert not waiting.done()
        await call_api(http, sim, "hold.call", hold_params(call_session_id))
    [hold] = waiting.result()
    assert hold.method == "hold.call"
    assert hold.params["call_session_id"] == call_session_id
    assert len(await sim.wait_for_requests(2)) == 2


async def test_wait_for_requests_gives_up_at_its_deadline(sim: Simulator) -> None:
    with pytest.raises(TimeoutError, match=r"0 of 1 hold\.call requests"):
        await sim.wait_for_requests(1, method="hold.call", timeout=0.05)


async def test_the_clock_is_injectable(http: aiohttp.ClientSession) -> None:
    async with Simulator(clock=lambda: 1_700_000_040.0) as simulator:
        call_session_id = await simulator.start_call()
        await call_api(http, simulator, "list.calls", {"access_token": TOKEN})
        assert simulator.requests[0].received_at == 1_700_000_040.0
        assert simulator.account.call(call_session_id).start_time == 1_700_000_040.0


async def test_stop_closes_the_notification_stream() -> None:
    simulator = Simulator()
    await simulator.start()
    try:
        async with connect(simulator.notify_url) as ws:
            await simulator.wait_for_clients(1)
            await simulator.stop()
            with pytest.raises(ConnectionClosed):
                await receive(ws)
            assert ws.close_code == 1001
    finally:
        await simulator.stop()


# -- the control API over HTTP ---------------------------------------------------


async def control(
    http: aiohttp.ClientSession, sim: Simulator, method: str, path: str, body: object = None
) -> tuple[int, dict[str, Any]]:
    data = None if body is None else orjson.dumps(body)
    async with http.request(method, sim.url + path, data=data) as r:
        assert r.content_type == "application/json"
        payload: dict[str, Any] = orjson.loads(await r.read())
        return r.status, payload


async def test_control_api_drives_a_call(sim: Simulator, http: aiohttp.ClientSession) -> None:
    async with connect(sim.notify_url) as ws:
        await sim.wait_for_clients(1)
        status, created = await control(
            http, sim, "POST", "/control/calls", {"direction": "out", "employee_id": 7}
        )
        assert (status, created) == (200, {"call_session_id": FIRST_ID})
        started = await receive(ws)
        assert started["notification_name"] == "Исходящий звонок"
        assert started["employee_id"] == 7

        status, answered = await control(http, sim, "POST", f"/control/calls/{FIRST_ID}/answer")
        assert (status, answered) == (200, {"call_session_id": FIRST_ID, "state": "TALK"})
        assert (await receive(ws))["notification_mnemonic"] == "talk_started"

        status, listed = await control(http, sim, "GET", "/control/calls")
        assert status == 200
        [call] = listed["calls"]
        assert (call["call_session_id"], call["state"], call["direction"]) == (
            FIRST_ID,
            "TALK",
            "out",
        )
        assert [leg["state_text"] for leg in call["legs"]] == ["Разговор", "Разговор"]

        path = f"/control/calls/{FIRST_ID}/finish_talk"
        assert (await control(http, sim, "POST", path))[1]["state"] == "POST_TALK"
        assert (await receive(ws))["notification_mnemonic"] == "talk_finished"
        assert (await control(http, sim, "POST", f"/control/calls/{FIRST_ID}/end"))[1][
            "state"
        ] == "ENDED"
        assert (await receive(ws))["notification_mnemonic"] == "call_finished"

    _, listed = await control(http, sim, "GET", "/control/calls")
    assert [c["state"] for c in listed["calls"]] == ["ENDED"]


async def test_control_api_lists_the_recorded_requests(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    response = await call_api(http, sim, "list.calls", {"access_token": TOKEN}, request_id=3)
    status, listed = await control(http, sim, "GET", "/control/requests")
    assert status == 200
    [recorded] = listed["requests"]
    assert recorded["http_status"] == 200
    assert recorded["body"]["method"] == "list.calls"
    assert recorded["response"] == response
    assert isinstance(recorded["received_at"], float)


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("POST", "/control/calls/999/answer", None, 404),
        ("POST", "/control/calls/abc/answer", None, 404),
        ("POST", "/control/calls", {"colour": "red"}, 400),
        ("POST", "/control/calls", ["direction"], 400),
    ],
)
async def test_control_api_refusals(
    sim: Simulator,
    http: aiohttp.ClientSession,
    method: str,
    path: str,
    body: object,
    status: int,
) -> None:
    data = None if body is None else orjson.dumps(body)
    async with http.request(method, sim.url + path, data=data) as r:
        assert r.status == status


async def test_control_api_refuses_invalid_json_and_wrong_steps(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    async with http.post(sim.url + "/control/calls", data=b"{") as r:
        assert r.status == 400
        assert "invalid JSON" in orjson.loads(await r.read())["error"]
    call_session_id = await sim.start_call()
    status, body = await control(http, sim, "POST", f"/control/calls/{call_session_id}/finish_talk")
    assert status == 409
    assert "not talking" in body["error"]
