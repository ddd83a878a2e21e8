"""SimAccount, the simulator's core: the Call API answers, checked value by value.

Plain functions, no event loop: request bytes and a `now` in, responses out.
Section numbers (§N) are those of reference/docs/callapi.md.
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest

from holdd.core.states import LEG_STATES, CallState
from holdd.sim import RecordedRequest, SimAccount
from holdd.sim.calls import CallNotFound, InvalidCallSpec, InvalidTransition
from holdd.sim.rpc import error_object

TOKEN = "sim-token"
#: 2023-11-14 22:14:00 UTC, the first second of a minute: 60 s to the minute
#: reset, 6360 s to the day reset.
NOW = 1_700_000_040.0
FIRST_ID = 23465781
LIMITS_FRESH = {
    "day_limit": 10000,
    "day_remaining": 10000,
    "day_reset": 6360,
    "minute_limit": 250,
    "minute_remaining": 250,
    "minute_reset": 60,
}


def make_account(**options: Any) -> SimAccount:
    return SimAccount(tz=UTC, users={"operator": "s3cret"}, **options)


def send(account: SimAccount, request: object, now: float = NOW) -> dict[str, Any]:
    status, response = account.handle(orjson.dumps(request), now)
    assert status == 200
    return response


def call_api(
    account: SimAccount,
    method: str,
    params: dict[str, Any],
    *,
    request_id: object = "req1",
    now: float = NOW,
) -> dict[str, Any]:
    request = {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}
    return send(account, request, now)


def error_of(response: dict[str, Any]) -> dict[str, Any]:
    assert "result" not in response, response
    assert response["jsonrpc"] == "2.0"
    error: dict[str, Any] = response["error"]
    return error


def without_metadata(error: dict[str, Any]) -> dict[str, Any]:
    data = {k: v for k, v in error["data"].items() if k != "metadata"}
    return {**error, "data": data}


def limits_of(response: dict[str, Any]) -> dict[str, Any]:
    if "result" in response:
        limits: dict[str, Any] = response["result"]["metadata"]["limits"]
    else:
        limits = response["error"]["data"]["metadata"]["limits"]
    return limits


def started_call(account: SimAccount, **fields: object) -> int:
    call, _ = account.start_call(NOW - 20, **fields)
    return call.call_session_id


def talking_call(account: SimAccount, **fields: object) -> int:
    call_session_id = started_call(account, **fields)
    account.answer(call_session_id, NOW - 10)
    return call_session_id


def hold_params(call_session_id: object, kind: object = "media", value: object = "2034") -> Any:
    return {
        "access_token": TOKEN,
        "call_session_id": call_session_id,
        "contact_message": {"type": kind, "value": value},
    }


# -- §1 envelope -------------------------------------------------------------


@pytest.mark.parametrize(
    "body", [b"{", b"", b"not json", b"\xff\xfe{}", b'{"id": 1,}', b"[1, NaN]"]
)
def test_invalid_json_is_a_parse_error_with_null_id(body: bytes) -> None:
    account = make_account()
    status, response = account.handle(body, NOW)
    assert status == 200
    assert response == {
        "jsonrpc": "2.0",
        "id": None,
        "error": {
            "code": -32700,
            "message": "Invalid JSON was received by the server.",
            "data": {"mnemonic": "parse_error"},
        },
    }
    assert account.requests == [
        RecordedRequest(NOW, 200, body.decode("utf-8", errors="replace"), response)
    ]


def test_batch_is_refused_with_the_uis_spelling() -> None:
    request = {"jsonrpc": "2.0", "id": 1, "method": "list.calls", "params": {}}
    error = error_of(send(make_account(), [request]))
    assert without_metadata(error) == {
        "code": -32099,
        "message": "Batch operations not supported",
        "data": {"mnemonic": "batch_opreations_not_supported"},
    }


def test_batch_response_has_null_id() -> None:
    request = {"jsonrpc": "2.0", "id": 1, "method": "list.calls", "params": {}}
    assert send(make_account(), [request])["id"] is None


def test_request_without_id_is_a_refused_notification() -> None:
    request = {"jsonrpc": "2.0", "method": "list.calls", "params": {"access_token": TOKEN}}
    response = send(make_account(), request)
    assert response["id"] is None
    assert without_metadata(error_of(response)) == {
        "code": -32099,
        "message": "Notifications not supported",
        "data": {"mnemonic": "notifications_not_supported"},
    }


GOOD = {"jsonrpc": "2.0", "id": "req1", "method": "list.calls", "params": {"access_token": TOKEN}}


@pytest.mark.parametrize(
    ("request_object", "echoed_id"),
    [
        ({**GOOD, "jsonrpc": "1.0"}, "req1"),
        ({**GOOD, "jsonrpc": 2.0}, "req1"),
        ({k: v for k, v in GOOD.items() if k != "jsonrpc"}, "req1"),
        ({k: v for k, v in GOOD.items() if k != "method"}, "req1"),
        ({**GOOD, "method": 5}, "req1"),
        ({k: v for k, v in GOOD.items() if k != "params"}, "req1"),
        ({**GOOD, "params": [TOKEN]}, "req1"),
        ({**GOOD, "params": None}, "req1"),
        ({**GOOD, "extra": True}, "req1"),
        ({**GOOD, "id": None}, None),
        ({**GOOD, "id": True}, None),
        ({**GOOD, "id": {"n": 1}}, None),
        ("list.calls", None),
        (42, None),
    ],
)
def test_malformed_request_objects_are_invalid_requests(
    request_object: object, echoed_id: object
) -> None:
    response = send(make_account(), request_object)
    assert response["id"] == echoed_id
    # §6: no metadata.limits for invalid_request.
    assert error_of(response) == {
        "code": -32600,
        "message": "Invalid Request The JSON sent is not a valid Request object",
        "data": {"mnemonic": "invalid_request"},
    }


@pytest.mark.parametrize("method", ["make.call", "hold_call", "HOLD.CALL", ""])
def test_unknown_method(method: str) -> None:
    response = call_api(make_account(), method, {"access_token": TOKEN}, request_id=7)
    assert response["id"] == 7
    assert error_of(response) == {
        "code": -32601,
        "message": "The method does not exist / is not available",
        "data": {"mnemonic": "method_not_found"},
    }


@pytest.mark.parametrize("request_id", ["req1", 17, 2.5, ""])
def test_success_echoes_the_request_id(request_id: object) -> None:
    response = call_api(
        make_account(), "list.calls", {"access_token": TOKEN}, request_id=request_id
    )
    assert response == {
        "jsonrpc": "2.0",
        "id": request_id,
        "result": {
            "data": [],
            "metadata": {
                "limits": {**LIMITS_FRESH, "day_remaining": 9999, "minute_remaining": 249}
            },
        },
    }


# -- §2 authentication -------------------------------------------------------


def test_login_gives_a_session_key_for_an_hour() -> None:
    account = make_account()
    response = call_api(account, "login.user", {"login": "operator", "password": "s3cret"})
    data = response["result"]["data"]
    assert set(data) == {"access_token", "expire_at"}
    assert isinstance(data["access_token"], str)
    assert data["access_token"]
    assert data["expire_at"] == int(NOW) + 3600
    key = data["access_token"]
    just_before = call_api(account, "list.calls", {"access_token": key}, now=NOW + 3599)
    assert just_before["result"]["data"] == []
    # §2: a session key past its hour is "invalid", not "expired".
    after = call_api(account, "list.calls", {"access_token": key}, now=NOW + 3600)
    assert error_of(after) == {
        "code": -32001,
        "message": "Access token is invalid",
        "data": {"mnemonic": "access_token_invalid"},
    }


def test_each_login_gives_a_new_key() -> None:
    account = make_account()
    params = {"login": "operator", "password": "s3cret"}
    first = call_api(account, "login.user", params)["result"]["data"]["access_token"]
    second = call_api(account, "login.user", params)["result"]["data"]["access_token"]
    assert first != second


@pytest.mark.parametrize(
    "params",
    [{"login": "operator", "password": "wrong"}, {"login": "nobody", "password": "s3cret"}],
)
def test_wrong_login_or_password(params: dict[str, str]) -> None:
    account = make_account()
    assert error_of(call_api(account, "login.user", params)) == {
        "code": -32001,
        "message": "Login or password is wrong",
        "data": {"mnemonic": "auth_error"},
    }
    assert account.sessions == {}


def test_login_needs_both_parameters() -> None:
    error = error_of(call_api(make_account(), "login.user", {"login": "operator"}))
    assert without_metadata(error) == {
        "code": -32602,
        "message": "The required parameter has been missed",
        "data": {"mnemonic": "required_parameter_missed", "field": "password"},
    }


def test_logout_answers_boolean_true_and_drops_the_key() -> None:
    account = make_account()
    login = call_api(account, "login.user", {"login": "operator", "password": "s3cret"})
    key = login["result"]["data"]["access_token"]
    response = call_api(account, "logout.user", {"access_token": key})
    assert response["result"]["data"] == {"success": True}
    assert response["result"]["data"]["success"] is True
    again = call_api(account, "list.calls", {"access_token": key})
    assert error_of(again)["data"] == {"mnemonic": "access_token_invalid"}


def test_logout_with_a_permanent_key_keeps_the_key() -> None:
    account = make_account()
    assert call_api(account, "logout.user", {"access_token": TOKEN})["result"]["data"] == {
        "success": True
    }
    assert "result" in call_api(account, "list.calls", {"access_token": TOKEN})


def test_unknown_key_is_invalid() -> None:
    response = call_api(make_account(), "list.calls", {"access_token": "nope"})
    assert error_of(response) == {
        "code": -32001,
        "message": "Access token is invalid",
        "data": {"mnemonic": "access_token_invalid"},
    }


def test_expired_permanent_key() -> None:
    account = make_account()
    account.expire_token(TOKEN)
    response = call_api(account, "list.calls", {"access_token": TOKEN})
    assert error_of(response) == {
        "code": -32001,
        "message": "Access token has been expired",
        "data": {"mnemonic": "access_token_expired"},
    }


def test_permanent_key_valid_until_a_date() -> None:
    account = make_account()
    account.add_token("dated", valid_until=NOW + 10)
    ok = call_api(account, "list.calls", {"access_token": "dated"}, now=NOW + 9)
    assert "result" in ok
    late = call_api(account, "list.calls", {"access_token": "dated"}, now=NOW + 10)
    assert error_of(late)["data"] == {"mnemonic": "access_token_expired"}


def test_blocked_permanent_key() -> None:
    account = make_account()
    account.block_token(TOKEN)
    response = call_api(account, "list.calls", {"access_token": TOKEN})
    assert error_of(response) == {
        "code": -32001,
        "message": "Access token has been blocked",
        "data": {"mnemonic": "access_token_blocked"},
    }


# -- §5 parameter validation -------------------------------------------------


@pytest.mark.parametrize(
    ("method", "params", "field"),
    [
        ("list.calls", {}, "access_token"),
        ("logout.user", {}, "access_token"),
        ("login.user", {"password": "s3cret"}, "login"),
        ("hold.call", {"access_token": TOKEN, "contact_message": {}}, "call_session_id"),
        ("hold.call", {"access_token": TOKEN, "call_session_id": FIRST_ID}, "contact_message"),
        (
            "hold.call",
            {"access_token": TOKEN, "call_session_id": FIRST_ID, "contact_message": {"value": "1"}},
            "contact_message.type",
        ),
        (
            "hold.call",
            {
                "access_token": TOKEN,
                "call_session_id": FIRST_ID,
                "contact_message": {"type": "media"},
            },
            "contact_message.value",
        ),
        ("unhold.call", {"access_token": TOKEN}, "call_session_id"),
        ("release.call", {"access_token": TOKEN}, "call_session_id"),
    ],
)
def test_required_parameter_missed(method: str, params: dict[str, Any], field: str) -> None:
    account = make_account()
    talking_call(account)
    error = error_of(call_api(account, method, params))
    # §1: data.value is absent when the parameter is missing.
    assert without_metadata(error) == {
        "code": -32602,
        "message": "The required parameter has been missed",
        "data": {"mnemonic": "required_parameter_missed", "field": field},
    }
    assert limits_of({"error": error}) == LIMITS_FRESH


@pytest.mark.parametrize(
    ("params", "field", "value"),
    [
        (hold_params(str(FIRST_ID)), "call_session_id", str(FIRST_ID)),
        (hold_params(True), "call_session_id", True),
        (hold_params(None), "call_session_id", None),
        (hold_params(FIRST_ID, value=2034), "contact_message.value", 2034),
        (hold_params(FIRST_ID, kind=1), "contact_message.type", 1),
        ({**hold_params(FIRST_ID), "contact_message": "2034"}, "contact_message", "2034"),
        ({**hold_params(FIRST_ID), "access_token": 12345}, "access_token", 12345),
    ],
)
def test_data_type_error(params: dict[str, Any], field: str, value: object) -> None:
    account = make_account()
    talking_call(account)
    error = error_of(call_api(account, "hold.call", params))
    assert without_metadata(error) == {
        "code": -32602,
        "message": "Data supplied is of wrong type",
        "data": {"mnemonic": "data_type_error", "field": field, "value": value},
    }
    assert limits_of({"error": error}) == LIMITS_FRESH
    assert account.calls[FIRST_ID].state is CallState.TALK


def test_list_calls_filter_of_the_wrong_type() -> None:
    params = {"access_token": TOKEN, "virtual_phone_number": 74951045771}
    error = error_of(call_api(make_account(), "list.calls", params))
    assert error["data"]["mnemonic"] == "data_type_error"
    assert error["data"]["field"] == "virtual_phone_number"
    assert error["data"]["value"] == 74951045771


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({**hold_params(FIRST_ID), "leg_id": 1}, "leg_id"),
        (
            {**hold_params(FIRST_ID), "contact_message": {"type": "tts", "value": "x", "voice": 1}},
            "contact_message.voice",
        ),
    ],
)
def test_unexpected_parameters(params: dict[str, Any], field: str) -> None:
    account = make_account()
    talking_call(account)
    error = error_of(call_api(account, "hold.call", params))
    assert without_metadata(error) == {
        "code": -32602,
        "message": "Unexpected method parameter(s)",
        "data": {"mnemonic": "unexpected_parameters", "field": field},
    }
    assert account.calls[FIRST_ID].state is CallState.TALK


def test_login_with_an_access_token_is_unexpected() -> None:
    params = {"login": "operator", "password": "s3cret", "access_token": TOKEN}
    error = error_of(call_api(make_account(), "login.user", params))
    assert error["data"]["mnemonic"] == "unexpected_parameters"
    assert error["data"]["field"] == "access_token"


@pytest.mark.parametrize(
    ("method", "params", "field", "value"),
    [
        ("hold.call", hold_params(FIRST_ID, kind="file"), "contact_message.type", "file"),
        ("hold.call", hold_params(FIRST_ID + 0.5), "call_session_id", FIRST_ID + 0.5),
        ("list.calls", {"access_token": TOKEN, "direction": "both"}, "direction", "both"),
    ],
)
def test_invalid_parameter_value(
    method: str, params: dict[str, Any], field: str, value: object
) -> None:
    account = make_account()
    talking_call(account)
    error = error_of(call_api(account, method, params))
    assert without_metadata(error) == {
        "code": -32602,
        "message": "Invalid parameter value",
        "data": {"mnemonic": "invalid_parameter_value", "field": field, "value": value},
    }


def test_a_whole_float_call_session_id_is_a_number() -> None:
    account = make_account()
    talking_call(account)
    response = call_api(account, "hold.call", hold_params(float(FIRST_ID)))
    assert response["result"]["data"] == {"success": "true"}


@pytest.mark.parametrize("method", ["hold.call", "unhold.call", "release.call"])
def test_unknown_call_session(method: str) -> None:
    account = make_account()
    params = (
        hold_params(999)
        if method == "hold.call"
        else {"access_token": TOKEN, "call_session_id": 999}
    )
    error = error_of(call_api(account, method, params))
    assert without_metadata(error) == {
        "code": -32602,
        "message": "Call session not found",
        "data": {"mnemonic": "call_session_not_found", "field": "call_session_id", "value": 999},
    }
    assert limits_of({"error": error}) == LIMITS_FRESH


def test_an_ended_call_session_is_not_found() -> None:
    account = make_account()
    call_session_id = talking_call(account)
    account.end_call(call_session_id, NOW - 1)
    error = error_of(call_api(account, "hold.call", hold_params(call_session_id)))
    assert error["data"]["mnemonic"] == "call_session_not_found"


# -- §3.2 hold.call ----------------------------------------------------------


def test_hold_call_puts_a_talking_call_on_hold() -> None:
    account = make_account()
    call_session_id = talking_call(account)
    response = call_api(account, "hold.call", hold_params(call_session_id))
    assert response == {
        "jsonrpc": "2.0",
        "id": "req1",
        "result": {
            # §3.2: the documented result is the string "true".
            "data": {"success": "true"},
            "metadata": {
                "limits": {**LIMITS_FRESH, "day_remaining": 9999, "minute_remaining": 249}
            },
        },
    }
    call = account.calls[call_session_id]
    assert call.state is CallState.HOLD
    assert call.hold_count == 1
    assert call.held_message is not None
    assert (call.held_message.type, call.held_message.value) == ("media", "2034")
    assert [leg.state_text("ru") for leg in call.legs] == ["На удержании", "Разговор"]


def test_hold_call_with_tts_up_to_the_limit() -> None:
    account = make_account(tts_max_length=10)
    call_session_id = talking_call(account)
    # Ten characters (not bytes): Cyrillic counts one per letter.
    response = call_api(account, "hold.call", hold_params(call_session_id, "tts", "Минуточку!"))
    assert response["result"]["data"] == {"success": "true"}
    assert account.calls[call_session_id].held_message is not None


@pytest.mark.parametrize(
    "state_of",
    [
        lambda a: started_call(a),
        lambda a: (cid := talking_call(a), a.finish_talk(cid, NOW - 1))[0],
    ],
    ids=["SESSION", "POST_TALK"],
)
def test_hold_call_outside_talk_is_invalid_state(state_of: Any) -> None:
    account = make_account()
    call_session_id = state_of(account)
    before = account.calls[call_session_id].state
    error = error_of(call_api(account, "hold.call", hold_params(call_session_id)))
    assert without_metadata(error) == {
        "code": -32004,
        "message": "This method can not be called in this state",
        "data": {"mnemonic": "invalid_state"},
    }
    assert limits_of({"error": error}) == LIMITS_FRESH
    assert account.calls[call_session_id].state is before
    assert account.calls[call_session_id].hold_count == 0


def test_second_hold_call_is_invalid_state_and_does_not_toggle() -> None:
    account = make_account()
    call_session_id = talking_call(account)
    call_api(account, "hold.call", hold_params(call_session_id))
    error = error_of(call_api(account, "hold.call", hold_params(call_session_id)))
    assert error["code"] == -32004
    assert error["data"]["mnemonic"] == "invalid_state"
    assert account.calls[call_session_id].state is CallState.HOLD
    assert account.calls[call_session_id].hold_count == 1
    # Only the successful hold was charged.
    assert limits_of({"error": error})["minute_remaining"] == 249


def test_media_file_not_found() -> None:
    account = make_account()
    call_session_id = talking_call(account)
    error = error_of(call_api(account, "hold.call", hold_params(call_session_id, value="9999")))
    assert without_metadata(error) == {
        "code": -32602,
        "message": "The media file with id 9999 not found",
        "data": {
            "mnemonic": "media_file_not_found",
            "field": "contact_message.value",
            "params": {"media_file_id": "9999"},
        },
    }
    assert account.calls[call_session_id].state is CallState.TALK


def test_tts_text_exceeded() -> None:
    account = make_account(tts_max_length=10)
    call_session_id = talking_call(account)
    error = error_of(call_api(account, "hold.call", hold_params(call_session_id, "tts", "x" * 11)))
    assert without_metadata(error) == {
        "code": -32602,
        "message": (
            "The maximum length of Text-to-Speech message is 10. The length of your message is 11"
        ),
        "data": {
            "mnemonic": "tts_text_exceeded",
            "field": "contact_message.value",
            "params": {"tts_message_max_length": 10, "sent_tts_message_length": 11},
        },
    }
    assert account.calls[call_session_id].state is CallState.TALK


def test_media_ids_are_strings_of_the_account() -> None:
    account = make_account(media_ids=["42"])
    call_session_id = talking_call(account)
    not_found = call_api(account, "hold.call", hold_params(call_session_id, value="2034"))
    assert error_of(not_found)["data"]["params"] == {"media_file_id": "2034"}
    ok = call_api(account, "hold.call", hold_params(call_session_id, value="42"))
    assert ok["result"]["data"] == {"success": "true"}


# -- §3.3 unhold.call --------------------------------------------------------


def test_unhold_call_takes_the_call_off_hold() -> None:
    account = make_account()
    call_session_id = talking_call(account)
    call_api(account, "hold.call", hold_params(call_session_id))
    params = {"access_token": TOKEN, "call_session_id": call_session_id}
    response = call_api(account, "unhold.call", params)
    assert response["result"]["data"] == {"success": "true"}
    call = account.calls[call_session_id]
    assert call.state is CallState.TALK
    assert call.unhold_count == 1
    assert [leg.state_text("ru") for leg in call.legs] == ["Разговор", "Разговор"]


def test_unhold_call_while_talking_is_invalid_state() -> None:
    account = make_account()
    call_session_id = talking_call(account)
    params = {"access_token": TOKEN, "call_session_id": call_session_id}
    error = error_of(call_api(account, "unhold.call", params))
    assert without_metadata(error) == {
        "code": -32004,
        "message": "This method can not be called in this state",
        "data": {"mnemonic": "invalid_state"},
    }
    assert account.calls[call_session_id].state is CallState.TALK


# -- §3.4 list.calls ---------------------------------------------------------


def test_list_calls_shows_a_ringing_call_as_the_reference_lists_it() -> None:
    account = make_account()
    account.start_call(
        NOW,
        direction="in",
        external_id="crm-1",
        tags=[{"tag_id": 456, "tag_name": "Целевой"}],
        record_call_enabled=True,
    )
    response = call_api(account, "list.calls", {"access_token": TOKEN})
    assert response["result"]["data"] == [
        {
            "call_session_id": FIRST_ID,
            "direction": "in",
            "start_time": "2023-11-14 22:14:00",
            "virtual_phone_number": "74951045771",
            "contact_phone_number": "74959268686",
            "external_id": "crm-1",
            "tags": [{"tag_id": 456, "tag_name": "Целевой"}],
            "legs": [
                {
                    "leg_id": 287866201,
                    "calling_phone_number": "74959268686",
                    "called_phone_number": "74951045771",
                    "is_operator": False,
                    "employee_id": None,
                    "employee_full_name": None,
                    "record_call_enabled": True,
                    "state": "Дозвон",
                },
                {
                    "leg_id": 287866202,
                    "calling_phone_number": "74959268686",
                    "called_phone_number": "79262444393",
                    "is_operator": True,
                    "employee_id": 2345,
                    "employee_full_name": "Тест",
                    "record_call_enabled": True,
                    "state": "Дозвон",
                },
            ],
        }
    ]


def leg_states(account: SimAccount) -> list[str]:
    response = call_api(account, "list.calls", {"access_token": TOKEN})
    [entry] = response["result"]["data"]
    return [leg["state"] for leg in entry["legs"]]


@pytest.mark.parametrize(
    ("language", "texts"),
    [
        ("ru", ["Дозвон", "Разговор", "На удержании", "Разговор", "Разъединено"]),
        ("en", ["Dial", "Talking", "On hold", "Talking", "Disconnected"]),
    ],
)
def test_list_calls_leg_states_through_a_call(language: str, texts: list[str]) -> None:
    account = make_account(leg_language=language)
    call_session_id = started_call(account)
    seen = [leg_states(account)]
    account.answer(call_session_id, NOW)
    seen.append(leg_states(account))
    call_api(account, "hold.call", hold_params(call_session_id))
    seen.append(leg_states(account))
    account.finish_talk(call_session_id, NOW)
    seen.append(leg_states(account))
    ringing, talking, held, disconnected = texts[0], texts[1], texts[2], texts[4]
    assert seen == [
        [ringing, ringing],
        [talking, talking],
        [held, texts[3]],
        [disconnected, disconnected],
    ]
    # holdd reads the same texts back into states (states.LEG_STATES).
    assert LEG_STATES[held.lower()] is CallState.HOLD
    assert LEG_STATES[talking.lower()] is CallState.TALK
    assert LEG_STATES[ringing.lower()] is CallState.SESSION
    assert LEG_STATES[disconnected.lower()] is CallState.POST_TALK


def test_list_calls_start_time_in_the_example_form() -> None:
    account = make_account(start_time_format="example")
    account.start_call(NOW + 0.25)
    [entry] = call_api(account, "list.calls", {"access_token": TOKEN})["result"]["data"]
    assert entry["start_time"] == "2023-11-14T22:14:00.250"


def test_list_calls_in_the_account_time_zone() -> None:
    account = SimAccount(tz=ZoneInfo("Europe/Moscow"))
    account.start_call(NOW)
    [entry] = call_api(account, "list.calls", {"access_token": TOKEN})["result"]["data"]
    assert entry["start_time"] == "2023-11-15 01:14:00"


def test_list_calls_filters() -> None:
    account = make_account()
    inbound = started_call(account, direction="in", virtual_phone_number="74950000001")
    outbound = started_call(account, direction="out", virtual_phone_number="74950000002")
    ended = started_call(account, direction="in", virtual_phone_number="74950000001")
    account.end_call(ended, NOW - 1)

    def ids(**filters: str) -> list[int]:
        response = call_api(account, "list.calls", {"access_token": TOKEN, **filters})
        return [entry["call_session_id"] for entry in response["result"]["data"]]

    assert ids() == [inbound, outbound]
    assert ids(direction="in") == [inbound]
    assert ids(direction="out") == [outbound]
    assert ids(virtual_phone_number="74950000002") == [outbound]
    assert ids(direction="in", virtual_phone_number="74950000002") == []


# -- §3.5 release.call -------------------------------------------------------


def test_release_call_ends_a_talking_call_and_queues_its_notifications() -> None:
    account = make_account()
    call_session_id = talking_call(account)
    params = {"access_token": TOKEN, "call_session_id": call_session_id}
    assert call_api(account, "release.call", params)["result"]["data"] == {"success": "true"}
    assert call_session_id not in account.calls
    assert account.ended[call_session_id].state is CallState.ENDED
    notes = account.drain_notifications()
    assert [n["notification_name"] for n in notes] == ["Окончание разговора", "Завершение звонка"]
    assert notes[0]["talk_time_duration"] == 10
    assert account.drain_notifications() == []
    again = call_api(account, "release.call", params)
    assert error_of(again)["data"]["mnemonic"] == "call_session_not_found"


def test_release_of_a_ringing_call_is_a_lost_call() -> None:
    account = make_account()
    call_session_id = started_call(account)
    call_api(account, "release.call", {"access_token": TOKEN, "call_session_id": call_session_id})
    [note] = account.drain_notifications()
    assert note["notification_mnemonic"] == "call_finished"
    assert note["is_lost"] is True
    assert note["talk_time_duration"] == 0
    assert note["wait_time_duration"] == 20


# -- §6 limits ---------------------------------------------------------------


def test_every_success_carries_the_limits_and_costs_one_point() -> None:
    account = make_account()
    first = call_api(account, "list.calls", {"access_token": TOKEN})
    login = call_api(account, "login.user", {"login": "operator", "password": "s3cret"})
    assert limits_of(first) == {**LIMITS_FRESH, "day_remaining": 9999, "minute_remaining": 249}
    assert limits_of(login) == {**LIMITS_FRESH, "day_remaining": 9998, "minute_remaining": 248}


def test_resets_count_down_in_seconds() -> None:
    account = make_account()
    response = call_api(account, "list.calls", {"access_token": TOKEN}, now=NOW + 15.5)
    assert limits_of(response)["minute_reset"] == 45
    assert limits_of(response)["day_reset"] == 6345


def test_failed_requests_are_not_charged() -> None:
    account = make_account()
    call_session_id = started_call(account)
    call_api(account, "hold.call", hold_params(call_session_id))  # invalid_state
    call_api(account, "hold.call", hold_params("x"))  # data_type_error
    call_api(account, "list.calls", {"access_token": "nope"})  # access_token_invalid
    call_api(account, "nope.nope", {})  # method_not_found
    account.handle(b"{", NOW)  # parse_error
    assert (account.points.minute_used, account.points.day_used) == (0, 0)
    assert (
        limits_of(call_api(account, "list.calls", {"access_token": TOKEN}))["minute_remaining"]
        == 249
    )


def test_minute_limit_exceeded_until_the_next_minute() -> None:
    account = make_account(minute_limit=2)
    for _ in range(2):
        assert "result" in call_api(account, "list.calls", {"access_token": TOKEN}, now=NOW + 1)
    error = error_of(call_api(account, "list.calls", {"access_token": TOKEN}, now=NOW + 30))
    assert without_metadata(error) == {
        "code": -32029,
        "message": "Limit per minute has been exceeded. Value of current limit per minute is 2",
        "data": {
            "mnemonic": "limit_exceeded",
            "params": {"limit_type": "minute", "limit_max_value": 2},
        },
    }
    assert limits_of({"error": error}) == {
        **LIMITS_FRESH,
        "day_remaining": 9998,
        "minute_limit": 2,
        "minute_remaining": 0,
        "minute_reset": 30,
        "day_reset": 6330,
    }
    next_minute = call_api(account, "list.calls", {"access_token": TOKEN}, now=NOW + 60)
    assert limits_of(next_minute)["minute_remaining"] == 1
    assert limits_of(next_minute)["day_remaining"] == 9997


def test_limit_exceeded_stops_hold_call_before_it_acts() -> None:
    account = make_account(minute_limit=0)
    call_session_id = talking_call(account)
    error = error_of(call_api(account, "hold.call", hold_params(call_session_id)))
    assert error["data"]["mnemonic"] == "limit_exceeded"
    assert account.calls[call_session_id].state is CallState.TALK


def test_day_limit_exceeded() -> None:
    account = make_account(day_limit=1)
    call_api(account, "list.calls", {"access_token": TOKEN})
    error = error_of(call_api(account, "list.calls", {"access_token": TOKEN}, now=NOW + 120))
    assert error["code"] == -32029
    assert error["message"] == (
        "Limit per day has been exceeded. Value of current limit per day is 1"
    )
    assert error["data"]["params"] == {"limit_type": "day", "limit_max_value": 1}
    assert limits_of({"error": error})["day_remaining"] == 0
    tomorrow = call_api(account, "list.calls", {"access_token": TOKEN}, now=NOW + 6360)
    assert limits_of(tomorrow)["day_remaining"] == 0
    assert limits_of(tomorrow)["day_reset"] == 86400


def test_limit_exceeded_on_login() -> None:
    account = make_account(minute_limit=0)
    response = call_api(account, "login.user", {"login": "operator", "password": "s3cret"})
    assert error_of(response)["data"]["params"] == {"limit_type": "minute", "limit_max_value": 0}
    assert account.sessions == {}


@pytest.mark.parametrize(
    "mnemonic",
    [
        "parse_error",
        "invalid_request",
        "method_not_found",
        "access_token_expired",
        "access_token_blocked",
        "access_token_invalid",
        "auth_error",
    ],
)
def test_errors_outside_the_account_carry_no_limits(mnemonic: str) -> None:
    account = make_account()
    account.add_token("expired")
    account.expire_token("expired")
    account.add_token("blocked")
    account.block_token("blocked")
    requests: dict[str, object] = {
        "parse_error": b"{",
        "invalid_request": {**GOOD, "jsonrpc": "1.0"},
        "method_not_found": {**GOOD, "method": "x.y"},
        "access_token_expired": {**GOOD, "params": {"access_token": "expired"}},
        "access_token_blocked": {**GOOD, "params": {"access_token": "blocked"}},
        "access_token_invalid": {**GOOD, "params": {"access_token": "nope"}},
        "auth_error": {**GOOD, "method": "login.user", "params": {"login": "x", "password": "y"}},
    }
    request = requests[mnemonic]
    body = request if isinstance(request, bytes) else orjson.dumps(request)
    _, response = account.handle(body, NOW)
    assert response["error"]["data"] == {"mnemonic": mnemonic}


# -- the request log -----------------------------------------------------------


def test_every_request_is_recorded_with_its_answer() -> None:
    account = make_account()
    first = call_api(account, "list.calls", {"access_token": TOKEN}, now=NOW)
    second = call_api(account, "hold.call", hold_params(1), now=NOW + 1)
    assert account.requests == [
        RecordedRequest(NOW, 200, {**GOOD}, first),
        RecordedRequest(
            NOW + 1,
            200,
            {"jsonrpc": "2.0", "id": "req1", "method": "hold.call", "params": hold_params(1)},
            second,
        ),
    ]
    assert [r.method for r in account.requests] == ["list.calls", "hold.call"]
    assert account.requests[1].params == hold_params(1)


def test_the_request_log_of_a_batch_has_no_method() -> None:
    account = make_account()
    send(account, [GOOD])
    assert account.requests[0].method is None
    assert account.requests[0].params == {}


# -- call life cycle (control side) and §8.3 notifications ----------------------

COMMON = {
    "call_session_id": FIRST_ID,
    "direction": "in",
    "virtual_phone_number": "74951045771",
    "contact_phone_number": "74959268686",
    "contact_full_name": "Иван Петров",
    "employee_id": 2345,
    "employee_full_name": "Тест",
    "call_source": "va",
    "scenario_name": "Входящие",
    "external_id": None,
}


def test_a_whole_call_notifies_as_uis_does() -> None:
    account = make_account()
    call, started = account.start_call(
        NOW, contact_full_name="Иван Петров", scenario_name="Входящие"
    )
    assert call.call_session_id == FIRST_ID
    assert call.state is CallState.SESSION
    answered = account.answer(FIRST_ID, NOW + 4.5)
    finished = account.finish_talk(FIRST_ID, NOW + 64.5)
    ended = account.end_call(FIRST_ID, NOW + 66)
    assert started == [
        {
            "notification_name": "Входящий звонок на виртуальный номер",
            "notification_mnemonic": "call_started",
            "notification_time": "2023-11-14 22:14:00.000",
            **COMMON,
        }
    ]
    assert answered == [
        {
            "notification_name": "Начало разговора",
            "notification_mnemonic": "talk_started",
            "notification_time": "2023-11-14 22:14:04.500",
            **COMMON,
            "leg_ids": [287866201, 287866202],
        }
    ]
    assert finished == [
        {
            "notification_name": "Окончание разговора",
            "notification_mnemonic": "talk_finished",
            "notification_time": "2023-11-14 22:15:04.500",
            **COMMON,
            "talk_time_duration": 60,
            "leg_ids": [287866201, 287866202],
        }
    ]
    assert ended == [
        {
            "notification_name": "Завершение звонка",
            "notification_mnemonic": "call_finished",
            "notification_time": "2023-11-14 22:15:06.000",
            **COMMON,
            "talk_time_duration": 60,
            "total_time_duration": 66,
            "wait_time_duration": 4,
            "is_lost": False,
            "tag_names": None,
        }
    ]
    assert FIRST_ID not in account.calls
    assert account.ended[FIRST_ID].state is CallState.ENDED
    assert account.call(FIRST_ID).ended_at == NOW + 66


def test_outbound_call_notification() -> None:
    account = make_account()
    _, [note] = account.start_call(NOW, direction="out")
    assert note["notification_name"] == "Исходящий звонок"
    assert note["notification_mnemonic"] == "call_started"
    assert note["direction"] == "out"
    assert note["call_source"] == "sip"


def test_ending_a_talking_call_finishes_the_talk_first() -> None:
    account = make_account()
    call_session_id = talking_call(account)
    notes = account.end_call(call_session_id, NOW)
    assert [n["notification_mnemonic"] for n in notes] == ["talk_finished", "call_finished"]
    assert [n["talk_time_duration"] for n in notes] == [10, 10]


def test_notification_time_is_local_to_the_account() -> None:
    account = SimAccount(tz=ZoneInfo("Europe/Moscow"))
    _, [note] = account.start_call(NOW + 0.25)
    assert note["notification_time"] == "2023-11-15 01:14:00.250"


def test_call_session_ids_count_up_and_can_be_chosen() -> None:
    account = make_account()
    chosen = started_call(account, call_session_id=FIRST_ID + 1)
    assert chosen == FIRST_ID + 1
    assert [started_call(account), started_call(account)] == [FIRST_ID, FIRST_ID + 2]
    with pytest.raises(InvalidCallSpec, match="already used"):
        started_call(account, call_session_id=FIRST_ID)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"colour": "red"}, "unknown call field 'colour'"),
        ({"direction": "sideways"}, "'direction' must be"),
        ({"call_session_id": "1"}, "'call_session_id' must be an integer"),
        ({"employee_id": True}, "'employee_id' must be an integer"),
        ({"contact_phone_number": 7495}, "'contact_phone_number' must be a string"),
        ({"record_call_enabled": "yes"}, "must be a boolean"),
        ({"tags": [{"tag_id": "1", "tag_name": "x"}]}, "'tags' must be a list"),
    ],
)
def test_start_call_checks_its_fields(fields: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidCallSpec, match=message):
        make_account().start_call(NOW, **fields)


def test_control_steps_follow_the_state_diagram() -> None:
    account = make_account()
    call_session_id = started_call(account)
    with pytest.raises(InvalidTransition):
        account.finish_talk(call_session_id, NOW)
    account.answer(call_session_id, NOW)
    with pytest.raises(InvalidTransition):
        account.answer(call_session_id, NOW)
    call_api(account, "hold.call", hold_params(call_session_id))
    account.finish_talk(call_session_id, NOW + 1)  # from HOLD, too
    assert account.calls[call_session_id].state is CallState.POST_TALK
    [note] = account.end_call(call_session_id, NOW + 2)
    assert note["notification_mnemonic"] == "call_finished"
    with pytest.raises(InvalidTransition):
        account.end_call(call_session_id, NOW + 3)
    with pytest.raises(CallNotFound):
        account.answer(999, NOW)


def test_snapshot_for_the_control_api() -> None:
    account = make_account()
    call_session_id = talking_call(account)
    call_api(account, "hold.call", hold_params(call_session_id, "tts", "Минуту"))
    snapshot = account.call(call_session_id).snapshot("en")
    assert snapshot["state"] == "HOLD"
    assert snapshot["held_message"] == {"type": "tts", "value": "Минуту"}
    assert snapshot["hold_count"] == 1
    assert [(leg["state"], leg["state_text"]) for leg in snapshot["legs"]] == [
        ("HOLD", "On hold"),
        ("TALK", "Talking"),
    ]
    orjson.dumps(snapshot)  # JSON-ready


def test_error_object_fills_every_placeholder() -> None:
    assert (
        error_object("limit_exceeded", {"params": {"limit_type": "day", "limit_max_value": 5}})[
            "message"
        ]
        == "Limit per day has been exceeded. Value of current limit per day is 5"
    )


def test_the_account_model_imports_no_event_loop() -> None:
    daemon = Path(__file__).resolve().parents[2] / "daemon"
    code = (
        "import sys, holdd.sim.account\n"
        "bad = {'asyncio', 'aiohttp', 'websockets'} & set(sys.modules)\n"
        "assert not bad, bad\n"
    )
    env = {**os.environ, "PYTHONPATH": str(daemon)}
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
