"""The Call API's JSON-RPC surface as the simulator answers it (core: no I/O).

What a request must look like and what an error looks like: the documented
error table (docs/callapi.md §5, §3.2), the parameter schemas of the six
simulated methods (§2, §3.2-§3.5) and their checks in the documented order,
the request envelope (§1), and `RecordedRequest`, one line of the request log.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Final, Literal

JsonDict = dict[str, Any]

#: Every error the Call API documents (§5 and §3.2): mnemonic -> (code, message).
#: The messages are the [DOC-2017]/[DOC-CM] texts; `{name}` is filled from
#: `data.params`.
ERRORS: Final[Mapping[str, tuple[int, str]]] = MappingProxyType(
    {
        "parse_error": (-32700, "Invalid JSON was received by the server."),
        "invalid_request": (
            -32600,
            "Invalid Request The JSON sent is not a valid Request object",
        ),
        "method_not_found": (-32601, "The method does not exist / is not available"),
        "data_type_error": (-32602, "Data supplied is of wrong type"),
        "required_parameter_missed": (-32602, "The required parameter has been missed"),
        "invalid_parameter_value": (-32602, "Invalid parameter value"),
        "unexpected_parameters": (-32602, "Unexpected method parameter(s)"),
        "call_session_not_found": (-32602, "Call session not found"),
        "media_file_not_found": (-32602, "The media file with id {media_file_id} not found"),
        "tts_text_exceeded": (
            -32602,
            "The maximum length of Text-to-Speech message is {tts_message_max_length}."
            " The length of your message is {sent_tts_message_length}",
        ),
        "character_encoding_not_allowed": (-32602, "The character encoding must be UTF-8"),
        "access_token_expired": (-32001, "Access token has been expired"),
        "access_token_blocked": (-32001, "Access token has been blocked"),
        "access_token_invalid": (-32001, "Access token is invalid"),
        "auth_error": (-32001, "Login or password is wrong"),
        "ip_not_whitelisted": (-32003, "Your IP {ip} is not whitelisted"),
        "forbidden": (-32003, "Permission denied"),
        "invalid_state": (-32004, "This method can not be called in this state"),
        "component_disabled": (-32008, "Component {component_name} has been disabled"),
        "account_inactive": (
            -32009,
            "Your account has been disabled, contact the support service",
        ),
        "limit_exceeded": (
            -32029,
            "Limit per {limit_type} has been exceeded."
            " Value of current limit per {limit_type} is {limit_max_value}",
        ),
        "internal_error": (-32603, "Internal error, contact the support service"),
        # The UIS spelling, typo included ([DOC-2017], [DOC-CM]; §1).
        "batch_opreations_not_supported": (-32099, "Batch operations not supported"),
        "notifications_not_supported": (-32099, "Notifications not supported"),
    }
)

#: Errors whose responses carry no `metadata.limits` (§6).
ERRORS_WITHOUT_LIMITS: Final = frozenset(
    {
        "parse_error",
        "invalid_request",
        "method_not_found",
        "access_token_expired",
        "access_token_blocked",
        "access_token_invalid",
        "auth_error",
        "ip_not_whitelisted",
    }
)


class RpcError(Exception):
    """A JSON-RPC error the account answers with (§5): a mnemonic and its `data`."""

    def __init__(self, mnemonic: str, data: Mapping[str, Any] | None = None) -> None:
        super().__init__(mnemonic)
        self.mnemonic = mnemonic
        self.data: JsonDict = dict(data or {})


def error_object(mnemonic: str, data: Mapping[str, Any] | None = None) -> JsonDict:
    """The JSON-RPC `error` member for `mnemonic` (§1 Error shape).

    `data` may hold `field`, `value` and `params`; `params` fills the message's
    placeholders.
    """
    code, message = ERRORS[mnemonic]
    extra = dict(data or {})
    for name, value in (extra.get("params") or {}).items():
        message = message.replace("{" + name + "}", str(value))
    return {"code": code, "message": message, "data": {"mnemonic": mnemonic, **extra}}


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """One request the Call API endpoint received and what it answered."""

    received_at: float
    http_status: int
    #: The parsed JSON, or the raw text when it was not JSON.
    body: object
    response: JsonDict

    @property
    def method(self) -> str | None:
        body = self.body
        if isinstance(body, dict) and isinstance(body.get("method"), str):
            return str(body["method"])
        return None

    @property
    def params(self) -> JsonDict:
        body = self.body
        if isinstance(body, dict) and isinstance(body.get("params"), dict):
            return dict(body["params"])
        return {}

    def to_json(self) -> JsonDict:
        return {
            "received_at": self.received_at,
            "http_status": self.http_status,
            "body": self.body,
            "response": self.response,
        }


@dataclass(frozen=True, slots=True)
class _Param:
    """One method parameter as the Call API docs list it."""

    name: str
    kind: Literal["string", "number", "object"]
    required: bool = True
    choices: frozenset[str] = frozenset()
    members: tuple[_Param, ...] = ()


_ACCESS_TOKEN: Final = _Param("access_token", "string")
_CALL_SESSION_ID: Final = _Param("call_session_id", "number")
# §3.2 and §7: {type: "media"|"tts", value: string}, both required.
_CONTACT_MESSAGE: Final = _Param(
    "contact_message",
    "object",
    members=(
        _Param("type", "string", choices=frozenset({"media", "tts"})),
        _Param("value", "string"),
    ),
)

#: The simulated methods and their parameters (§2, §3.2-§3.5), in documented order.
METHODS: Final[Mapping[str, tuple[_Param, ...]]] = MappingProxyType(
    {
        "login.user": (_Param("login", "string"), _Param("password", "string")),
        "logout.user": (_ACCESS_TOKEN,),
        "hold.call": (_ACCESS_TOKEN, _CALL_SESSION_ID, _CONTACT_MESSAGE),
        "unhold.call": (_ACCESS_TOKEN, _CALL_SESSION_ID),
        "list.calls": (
            _ACCESS_TOKEN,
            _Param("direction", "string", required=False, choices=frozenset({"in", "out"})),
            _Param("virtual_phone_number", "string", required=False),
        ),
        "release.call": (_ACCESS_TOKEN, _CALL_SESSION_ID),
    }
)

_ENVELOPE_KEYS: Final = frozenset({"jsonrpc", "id", "method", "params"})


def _validate(given: Mapping[str, Any], schema: tuple[_Param, ...], prefix: str) -> JsonDict:
    """Check `given` against `schema` (§5 -32602 errors); return the values, numbers as int."""
    known = {param.name for param in schema}
    for name in given:
        if name not in known:
            raise RpcError("unexpected_parameters", {"field": prefix + name})
    checked: JsonDict = {}
    for param in schema:
        path = prefix + param.name
        if param.name not in given or (given[param.name] is None and not param.required):
            if param.required:
                # `data.value` is absent when the parameter is missing (§1).
                raise RpcError("required_parameter_missed", {"field": path})
            continue
        checked[param.name] = _check_value(param, given[param.name], path)
    return checked


def _check_value(param: _Param, value: Any, path: str) -> Any:
    if param.kind == "string":
        if not isinstance(value, str):
            raise RpcError("data_type_error", {"field": path, "value": value})
        if param.choices and value not in param.choices:
            raise RpcError("invalid_parameter_value", {"field": path, "value": value})
        return value
    if param.kind == "number":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise RpcError("data_type_error", {"field": path, "value": value})
        if isinstance(value, float):
            if not value.is_integer():
                raise RpcError("invalid_parameter_value", {"field": path, "value": value})
            return int(value)
        return value
    if not isinstance(value, dict):
        raise RpcError("data_type_error", {"field": path, "value": value})
    return _validate(value, param.members, path + ".")


def _is_request_id(value: object) -> bool:
    """§1: `id` is a string or a number."""
    return isinstance(value, str) or (
        isinstance(value, int | float) and not isinstance(value, bool)
    )


def request_id_of(request: object) -> object:
    """The `id` of a parsed request body (§1: no batches, no JSON-RPC notifications).

    Raises RpcError before the id is known; the error answer's id is then null.
    """
    if isinstance(request, list):
        raise RpcError("batch_opreations_not_supported")
    if not isinstance(request, dict):
        raise RpcError("invalid_request")
    if "id" not in request:
        raise RpcError("notifications_not_supported")
    if not _is_request_id(request["id"]):
        raise RpcError("invalid_request")
    return request["id"]


def method_of(request: object) -> tuple[str, JsonDict]:
    """The method and raw params of a request: the envelope's four members (§1)."""
    if (
        not isinstance(request, dict)
        or request.get("jsonrpc") != "2.0"
        or not isinstance(request.get("method"), str)
        or not isinstance(request.get("params"), dict)
        or not _ENVELOPE_KEYS.issuperset(request)
    ):
        raise RpcError("invalid_request")
    method: str = request["method"]
    if method not in METHODS:
        raise RpcError("method_not_found")
    return method, request["params"]


def validate_params(method: str, params: Mapping[str, Any]) -> JsonDict:
    """`params` checked against `method`'s schema (§5 -32602 errors), numbers as int."""
    return _validate(params, METHODS[method], "")


__all__ = [
    "ERRORS",
    "ERRORS_WITHOUT_LIMITS",
    "METHODS",
    "JsonDict",
    "RecordedRequest",
    "RpcError",
    "error_object",
    "method_of",
    "request_id_of",
    "validate_params",
]
