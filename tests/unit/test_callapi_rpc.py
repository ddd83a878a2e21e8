"""The sans-I/O JSON-RPC part (holdd.callapi.rpc): bytes and a status in, an
outcome out, with no server and no event loop (docs/callapi.md section 1)."""

from __future__ import annotations

import orjson
import pytest

from holdd.callapi.answers import Answer, Limits
from holdd.callapi.failures import (
    CallApiError,
    InvalidState,
    OutcomeUnknown,
    ProtocolError,
    RequestNotSent,
)
from holdd.callapi.rpc import read_reply, request_body

LIMITS = {"minute_limit": 250, "minute_remaining": 249, "minute_reset": 12}


def test_request_body_is_one_json_rpc_object_with_the_params_as_given() -> None:
    body = request_body("hold.call", 7, {"access_token": "k", "call_session_id": 1})
    assert orjson.loads(body) == {
        "jsonrpc": "2.0",
        "method": "hold.call",
        "id": 7,
        "params": {"access_token": "k", "call_session_id": 1},
    }


def test_a_result_becomes_an_answer_with_its_limits() -> None:
    raw = orjson.dumps(
        {
            "jsonrpc": "2.0",
            "id": 3,
            "result": {"data": {"success": "true"}, "metadata": {"limits": LIMITS}},
        }
    )
    reply = read_reply("hold.call", 3, 200, raw)
    assert reply.outcome == Answer(
        {"success": "true"}, Limits(minute_limit=250, minute_remaining=249, minute_reset=12), 3
    )
    assert reply.metadata == {"limits": LIMITS}


@pytest.mark.parametrize("status", [200, 400, 500])
def test_an_error_body_is_typed_by_its_mnemonic_whatever_the_status(status: int) -> None:
    error = {
        "code": -32004,
        "message": "This method can not be called in this state",
        "data": {"mnemonic": "invalid_state", "metadata": {"limits": LIMITS}},
    }
    raw = orjson.dumps({"jsonrpc": "2.0", "id": 3, "error": error})
    reply = read_reply("hold.call", 3, status, raw)
    assert isinstance(reply.outcome, InvalidState)
    assert reply.outcome.limits == Limits(minute_limit=250, minute_remaining=249, minute_reset=12)
    assert reply.metadata == {"limits": LIMITS}


@pytest.mark.parametrize(
    ("status", "raw", "kind", "reason"),
    [
        (429, b"Too Many Requests", RequestNotSent, "http_429"),
        (404, b"<html>not found</html>", ProtocolError, "HTTP 404 without a JSON-RPC answer"),
        (408, b"", OutcomeUnknown, "http_408"),
        (502, b"<html>bad gateway</html>", OutcomeUnknown, "http_502"),
        (200, b'{"jsonrpc": "2.0", "id": 3}', OutcomeUnknown, "bad_answer"),
        (200, b"not json", OutcomeUnknown, "bad_answer"),
    ],
)
def test_a_body_that_is_no_json_rpc_answer_goes_by_the_status(
    status: int, raw: bytes, kind: type[OutcomeUnknown], reason: str
) -> None:
    outcome = read_reply("hold.call", 3, status, raw).outcome
    assert type(outcome) is kind
    assert not isinstance(outcome, CallApiError)
    assert isinstance(outcome, OutcomeUnknown)
    assert outcome.reason == reason


@pytest.mark.parametrize("body", ["result", "error"])
def test_an_answer_to_another_request_is_a_protocol_error(body: str) -> None:
    payload: dict[str, object] = (
        {"result": {"data": {"success": True}}}
        if body == "result"
        else {"error": {"code": -32004, "message": "x", "data": {"mnemonic": "invalid_state"}}}
    )
    raw = orjson.dumps({"jsonrpc": "2.0", "id": 4, **payload})
    outcome = read_reply("hold.call", 3, 200, raw).outcome
    assert type(outcome) is ProtocolError
    assert "answer id '4' is not 3" in outcome.reason


def test_an_error_with_a_null_id_is_still_read() -> None:
    error = {"code": -32700, "message": "Parse error", "data": {"mnemonic": "parse_error"}}
    raw = orjson.dumps({"jsonrpc": "2.0", "id": None, "error": error})
    assert isinstance(read_reply("hold.call", 3, 200, raw).outcome, CallApiError)


def test_limits_read_alike_whatever_the_number_type() -> None:
    """Plain in-range integers take a short cut; every other value is read
    as before: a float is truncated, a bool, text, NaN or a number beyond
    64 bits is taken as not given."""
    raw = {
        "limits": {
            "minute_limit": 250,
            "minute_remaining": 249.9,
            "minute_reset": True,
            "day_limit": 2**63,
            "day_remaining": -(2**63),
            "day_reset": "12",
        }
    }
    assert Limits.parse(raw) == Limits(
        day_limit=None,
        day_remaining=-(2**63),
        day_reset=None,
        minute_limit=250,
        minute_remaining=249,
        minute_reset=None,
    )
    assert Limits.parse({"limits": {"minute_reset": float("nan"), "day_limit": 2**63 - 1}}) == (
        Limits(day_limit=2**63 - 1)
    )
