"""The simulated UIS account behind the built-in simulator (core: no I/O, no clock).

`SimAccount` is a sans-I/O model of one UIS / CoMagic / CallGear account as the
Call API v4.0 shows it (reference `uis-call-api.md`, cited below as §N): its
active call sessions, its access tokens, its media files and its point limits.
It is fed request bodies and the current time, and answers with the JSON-RPC
response the real Call API would send:

    status, response = account.handle(body, now)

The control side of a call (a caller dials in, the operator answers, someone
hangs up) is driven with `start_call`, `answer`, `finish_talk` and `end_call`;
each returns the notifications (§8.3) that UIS would send for it. Notifications
caused by the API itself (`release.call` ends a call) are queued and taken with
`drain_notifications()`.

Choices made where the reference is silent (each is an assumption, §"Open
questions"):

* HTTP status: 200 for every JSON-RPC answer, errors included (open question 5).
* Metadata in errors: `metadata.limits` sits at `error.data.metadata`, and is
  left out exactly for the errors §6 names (`parse_error`, `invalid_request`,
  `method_not_found`, `access_token_*`, `auth_error`, `ip_not_whitelisted`).
* Order of checks: envelope (§1), then parameter syntax (§5: unexpected, then
  missing / wrong type / bad value per parameter in the documented order), then
  the token (§2), then the point budget (§6), then the method's own checks
  (session, media file, TTS length, state), then the effect.
* Points: 1 per successful request of every method (§6, the old CoMagic page).
  The minute and day windows are whole UTC minutes and UTC days.
* `data.value` echoes the JSON value the client sent, whatever its type.
* Only the six methods the daemon uses are simulated: `login.user`,
  `logout.user`, `hold.call`, `unhold.call`, `list.calls`, `release.call`; any
  other method name answers `method_not_found`.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, fields
from datetime import datetime, tzinfo
from types import MappingProxyType
from typing import Any, Final, Literal

import orjson

from holdd.core.states import CallState

JsonDict = dict[str, Any]
#: A notification in the UIS variable form (§8.3): variable name -> JSON value.
Notification = dict[str, Any]
#: `list.calls` start_time: "documented" is `YYYY-MM-DD hh:mm:ss`, "example" is
#: the example's `2016-10-19T12:26:48.418` (§1 Conventions, §3.4).
StartTimeFormat = Literal["documented", "example"]
LegLanguage = Literal["ru", "en"]

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

#: `list.calls` legs[].state texts (§3.4): the [DOC-CM] Russian list and the
#: [DOC-CG] English one, except TALK, where the English example's "Talking" is used.
LEG_STATE_TEXTS: Final[Mapping[str, Mapping[CallState, str]]] = MappingProxyType(
    {
        "ru": MappingProxyType(
            {
                CallState.SESSION: "Дозвон",
                CallState.TALK: "Разговор",
                CallState.HOLD: "На удержании",
                CallState.POST_TALK: "Разъединено",
            }
        ),
        "en": MappingProxyType(
            {
                CallState.SESSION: "Dial",
                CallState.TALK: "Talking",
                CallState.HOLD: "On hold",
                CallState.POST_TALK: "Disconnected",
            }
        ),
    }
)

#: The first call_session_id handed out: the one of the hold.call example (§3.2).
FIRST_CALL_SESSION_ID: Final = 23465781
FIRST_LEG_ID: Final = 287866201
MINUTE: Final = 60
DAY: Final = 86400


class RpcError(Exception):
    """A JSON-RPC error the account answers with (§5): a mnemonic and its `data`."""

    def __init__(self, mnemonic: str, data: Mapping[str, Any] | None = None) -> None:
        super().__init__(mnemonic)
        self.mnemonic = mnemonic
        self.data: JsonDict = dict(data or {})


class SimControlError(Exception):
    """The control side asked for something the simulated account cannot do."""


class CallNotFound(SimControlError):
    """No call with that call_session_id (active or ended)."""


class InvalidTransition(SimControlError):
    """The call is not in a state the requested step can start from."""


class InvalidCallSpec(SimControlError):
    """`start_call` got an unknown field or a value of the wrong type."""


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
class ContactMessage:
    """What `hold.call` plays to the contact (§3.2, §7)."""

    type: str
    value: str


@dataclass(slots=True)
class SimLeg:
    """One participant of a call, as `list.calls` shows it (§3.4)."""

    leg_id: int
    calling_phone_number: str
    called_phone_number: str
    is_operator: bool
    employee_id: int | None
    employee_full_name: str | None
    record_call_enabled: bool
    state: CallState

    def state_text(self, language: LegLanguage) -> str:
        """The localised `legs[].state` text (§3.4)."""
        return LEG_STATE_TEXTS[language][self.state]

    def list_entry(self, language: LegLanguage) -> JsonDict:
        """The leg as an item of `list.calls` `legs[]` (§3.4)."""
        return {
            "leg_id": self.leg_id,
            "calling_phone_number": self.calling_phone_number,
            "called_phone_number": self.called_phone_number,
            "is_operator": self.is_operator,
            "employee_id": self.employee_id,
            "employee_full_name": self.employee_full_name,
            "record_call_enabled": self.record_call_enabled,
            "state": self.state_text(language),
        }


@dataclass(frozen=True, slots=True)
class CallSpec:
    """The fields a simulated call is started with; the defaults are the §3.4 example's."""

    call_session_id: int | None = None
    direction: str = "in"
    virtual_phone_number: str = "74951045771"
    contact_phone_number: str = "74959268686"
    contact_full_name: str | None = None
    employee_id: int | None = 2345
    employee_full_name: str | None = "Тест"
    employee_phone_number: str = "79262444393"
    # None picks by direction: "va" for inbound calls to a virtual number (§8.3);
    # "sip" for outbound calls from an employee's phone is an assumption.
    call_source: str | None = None
    scenario_name: str | None = None
    external_id: str | None = None
    record_call_enabled: bool = False
    tags: tuple[tuple[int, str], ...] = ()

    @classmethod
    def from_fields(cls, given: Mapping[str, object]) -> CallSpec:
        """Check `given` (JSON-like values) and build the spec; InvalidCallSpec if wrong."""
        known = {f.name for f in fields(cls)}
        checked: dict[str, Any] = {}
        for name, value in given.items():
            if name not in known:
                raise InvalidCallSpec(f"unknown call field {name!r}")
            checked[name] = _check_spec_value(name, value)
        return cls(**checked)


_SPEC_OPTIONAL_INTS: Final = frozenset({"call_session_id", "employee_id"})
_SPEC_OPTIONAL_STRS: Final = frozenset(
    {"contact_full_name", "employee_full_name", "call_source", "scenario_name", "external_id"}
)


def _check_spec_value(name: str, value: object) -> object:
    def wrong(expected: str) -> InvalidCallSpec:
        return InvalidCallSpec(f"call field {name!r} must be {expected}, not {value!r}")

    if name in _SPEC_OPTIONAL_INTS:
        if value is None or (isinstance(value, int) and not isinstance(value, bool)):
            return value
        raise wrong("an integer or null")
    if name in _SPEC_OPTIONAL_STRS:
        if value is None or isinstance(value, str):
            return value
        raise wrong("a string or null")
    if name == "direction":
        if value in ("in", "out"):
            return value
        raise wrong('"in" or "out"')
    if name == "record_call_enabled":
        if isinstance(value, bool):
            return value
        raise wrong("a boolean")
    if name == "tags":
        return _check_tags(value, wrong)
    if isinstance(value, str):
        return value
    raise wrong("a string")


def _check_tags(
    value: object, wrong: Callable[[str], InvalidCallSpec]
) -> tuple[tuple[int, str], ...]:
    if not isinstance(value, list | tuple):
        raise wrong("a list of {tag_id, tag_name}")
    tags: list[tuple[int, str]] = []
    for item in value:
        if not isinstance(item, Mapping):
            raise wrong("a list of {tag_id, tag_name}")
        tag_id, tag_name = item.get("tag_id"), item.get("tag_name")
        if not isinstance(tag_id, int) or isinstance(tag_id, bool) or not isinstance(tag_name, str):
            raise wrong("a list of {tag_id, tag_name}")
        tags.append((tag_id, tag_name))
    return tuple(tags)


@dataclass(slots=True)
class SimCall:
    """One simulated call session and what the API did to it."""

    call_session_id: int
    direction: str
    virtual_phone_number: str
    contact_phone_number: str
    contact_full_name: str | None
    employee_id: int | None
    employee_full_name: str | None
    employee_phone_number: str
    call_source: str
    scenario_name: str | None
    external_id: str | None
    tags: tuple[tuple[int, str], ...]
    #: Unix time the session started (SESSION entered).
    start_time: float
    state: CallState
    legs: list[SimLeg]
    held_message: ContactMessage | None = None
    hold_count: int = 0
    unhold_count: int = 0
    answered_at: float | None = None
    talk_finished_at: float | None = None
    ended_at: float | None = None

    @property
    def contact_leg(self) -> SimLeg:
        """Leg (A), the contact: the one `hold.call` plays to (§3.2, §4)."""
        return next(leg for leg in self.legs if not leg.is_operator)

    @property
    def leg_ids(self) -> list[int]:
        return [leg.leg_id for leg in self.legs]

    def enter(self, state: CallState) -> None:
        """Move to `state` and give every leg its matching `list.calls` state (§3.4).

        In HOLD only the contact hears the music (§4: "Playing music to (A)"); the
        operator's leg keeps talking. After the talk every leg is disconnected.
        """
        self.state = state
        for leg in self.legs:
            if state is CallState.HOLD:
                leg.state = CallState.TALK if leg.is_operator else CallState.HOLD
            elif state in (CallState.POST_TALK, CallState.FINISHING, CallState.ENDED):
                leg.state = CallState.POST_TALK
            else:
                leg.state = state

    def snapshot(self, language: LegLanguage = "ru") -> JsonDict:
        """Everything about the call, for the control API and for tests."""
        held = self.held_message
        return {
            "call_session_id": self.call_session_id,
            "state": self.state.value,
            "direction": self.direction,
            "virtual_phone_number": self.virtual_phone_number,
            "contact_phone_number": self.contact_phone_number,
            "contact_full_name": self.contact_full_name,
            "employee_id": self.employee_id,
            "employee_full_name": self.employee_full_name,
            "employee_phone_number": self.employee_phone_number,
            "call_source": self.call_source,
            "scenario_name": self.scenario_name,
            "external_id": self.external_id,
            "tags": [{"tag_id": i, "tag_name": n} for i, n in self.tags],
            "start_time": self.start_time,
            "answered_at": self.answered_at,
            "talk_finished_at": self.talk_finished_at,
            "ended_at": self.ended_at,
            "held_message": None if held is None else {"type": held.type, "value": held.value},
            "hold_count": self.hold_count,
            "unhold_count": self.unhold_count,
            "legs": [
                {
                    **leg.list_entry(language),
                    "state": leg.state.value,
                    "state_text": leg.state_text(language),
                }
                for leg in self.legs
            ],
        }


@dataclass(slots=True)
class PermanentToken:
    """A permanent access key («Доступ по ключу», §2)."""

    valid_until: float | None = None
    expired: bool = False
    blocked: bool = False


@dataclass(frozen=True, slots=True)
class SessionToken:
    """A session key from `login.user`, valid until `expire_at` (§2)."""

    login: str
    expire_at: int


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


class SimAccount:
    """One simulated account: calls, tokens, media files, limits and the request log.

    Every attribute is public so tests (and a later fault layer) can arrange any
    situation directly; `handle` and the call life cycle methods keep them
    consistent.
    """

    def __init__(
        self,
        *,
        tokens: Iterable[str] = ("sim-token",),
        users: Mapping[str, str] | None = None,
        media_ids: Iterable[str] = ("2034", "2561", "3001"),
        tts_max_length: int = 500,
        minute_limit: int = 250,
        day_limit: int = 10000,
        session_ttl: float = 3600.0,
        start_time_format: StartTimeFormat = "documented",
        leg_language: LegLanguage = "ru",
        tz: tzinfo | None = None,
        first_call_session_id: int = FIRST_CALL_SESSION_ID,
        first_leg_id: int = FIRST_LEG_ID,
    ) -> None:
        #: Permanent access keys (§2).
        self.tokens: dict[str, PermanentToken] = {token: PermanentToken() for token in tokens}
        #: login -> password, for `login.user` (§2).
        self.users: dict[str, str] = dict(users or {})
        #: Session keys handed out by `login.user` (§2).
        self.sessions: dict[str, SessionToken] = {}
        #: A session key lives one hour (§2).
        self.session_ttl = session_ttl
        #: Media file ids, as the strings `contact_message.value` carries (§7).
        self.media_ids: set[str] = set(media_ids)
        #: The tariff's «Длина TTS сообщения» (§6).
        self.tts_max_length = tts_max_length
        self.minute_limit = minute_limit
        self.day_limit = day_limit
        #: Points used in the current minute / day window (§6).
        self.minute_used = 0
        self.day_used = 0
        self.start_time_format: StartTimeFormat = start_time_format
        self.leg_language: LegLanguage = leg_language
        #: Time zone of `notification_time` and `start_time`; None: the host's.
        self.tz = tz
        #: Active sessions (every state before ENDED), in the order they started.
        self.calls: dict[int, SimCall] = {}
        #: Sessions that ended, kept for inspection.
        self.ended: dict[int, SimCall] = {}
        #: Every request `handle` answered, in order.
        self.requests: list[RecordedRequest] = []
        self._next_call_session_id = first_call_session_id
        self._next_leg_id = first_leg_id
        self._minute_window: int | None = None
        self._day_window: int | None = None
        self._outbox: list[Notification] = []

    # -- tokens -------------------------------------------------------------

    def add_token(self, token: str, *, valid_until: float | None = None) -> None:
        """Add a permanent key, optionally valid until a unix time (§2)."""
        self.tokens[token] = PermanentToken(valid_until=valid_until)

    def expire_token(self, token: str) -> None:
        """Make a permanent key answer `access_token_expired` (§2)."""
        self.tokens[token].expired = True

    def block_token(self, token: str) -> None:
        """Make a permanent key answer `access_token_blocked` (§2)."""
        self.tokens[token].blocked = True

    # -- the JSON-RPC endpoint ---------------------------------------------

    def handle(self, body: bytes, now: float) -> tuple[int, JsonDict]:
        """Answer one HTTP request body of `POST /v4.0`; record it; return (status, response)."""
        try:
            request: object = orjson.loads(body)
        except orjson.JSONDecodeError:
            # §5: invalid JSON (including bytes that are not UTF-8) -> -32700, id null.
            raw = body.decode("utf-8", errors="replace")
            response = self._error_response(None, RpcError("parse_error"), now)
            self.requests.append(RecordedRequest(now, 200, raw, response))
            return 200, response
        response = self._answer(request, now)
        self.requests.append(RecordedRequest(now, 200, request, response))
        return 200, response

    def drain_notifications(self) -> list[Notification]:
        """Take the notifications that API requests caused (e.g. `release.call`)."""
        taken, self._outbox = self._outbox, []
        return taken

    def _answer(self, request: object, now: float) -> JsonDict:
        request_id: object = None
        try:
            # §1: no batches, no JSON-RPC notifications, the envelope's four members.
            if isinstance(request, list):
                raise RpcError("batch_opreations_not_supported")
            if not isinstance(request, dict):
                raise RpcError("invalid_request")
            if "id" not in request:
                raise RpcError("notifications_not_supported")
            if not _is_request_id(request["id"]):
                raise RpcError("invalid_request")
            request_id = request["id"]
            if (
                request.get("jsonrpc") != "2.0"
                or not isinstance(request.get("method"), str)
                or not isinstance(request.get("params"), dict)
                or not _ENVELOPE_KEYS.issuperset(request)
            ):
                raise RpcError("invalid_request")
            method: str = request["method"]
            if method not in METHODS:
                raise RpcError("method_not_found")
            data = self._call(method, request["params"], now)
        except RpcError as error:
            return self._error_response(request_id, error, now)
        # §1 success shape; §6 metadata.limits in every response.
        return {
            "jsonrpc": "2.0",
            "id": request_id,
            "result": {"data": data, "metadata": {"limits": self.limits(now)}},
        }

    def _error_response(self, request_id: object, error: RpcError, now: float) -> JsonDict:
        obj = error_object(error.mnemonic, error.data)
        if error.mnemonic not in ERRORS_WITHOUT_LIMITS:
            obj["data"]["metadata"] = {"limits": self.limits(now)}
        return {"jsonrpc": "2.0", "id": request_id, "error": obj}

    def _call(
        self, method: str, params: Mapping[str, Any], now: float
    ) -> JsonDict | list[JsonDict]:
        args = _validate(params, METHODS[method], "")
        if method == "login.user":
            if self.users.get(args["login"]) != args["password"]:
                raise RpcError("auth_error")
        else:
            self._authenticate(args["access_token"], now)
        self._check_limits(now)
        data: JsonDict | list[JsonDict]
        match method:
            case "login.user":
                data = self._login(args["login"], now)
            case "logout.user":
                self.sessions.pop(args["access_token"], None)
                # §2: logout.user's example shows the boolean true.
                data = {"success": True}
            case "hold.call":
                data = self._hold(args, now)
            case "unhold.call":
                data = self._unhold(args)
            case "list.calls":
                data = self._list_calls(args)
            case "release.call":
                data = self._release(args, now)
            case _:  # pragma: no cover - METHODS and this match list the same names
                raise RpcError("method_not_found")
        # §6: points are charged for successful requests only.
        self._charge(now)
        return data

    def _authenticate(self, token: str, now: float) -> None:
        permanent = self.tokens.get(token)
        if permanent is not None:
            if permanent.blocked:
                raise RpcError("access_token_blocked")
            if permanent.expired or (
                permanent.valid_until is not None and now >= permanent.valid_until
            ):
                raise RpcError("access_token_expired")
            return
        session = self.sessions.get(token)
        # §2: an unknown key, and a session key past its hour, are both "invalid".
        if session is None:
            raise RpcError("access_token_invalid")
        if now >= session.expire_at:
            del self.sessions[token]
            raise RpcError("access_token_invalid")

    def _login(self, login: str, now: float) -> JsonDict:
        token = secrets.token_hex(36)
        expire_at = int(now + self.session_ttl)
        self.sessions[token] = SessionToken(login=login, expire_at=expire_at)
        return {"access_token": token, "expire_at": expire_at}

    def _active_call(self, call_session_id: int) -> SimCall:
        call = self.calls.get(call_session_id)
        if call is None:
            raise RpcError(
                "call_session_not_found", {"field": "call_session_id", "value": call_session_id}
            )
        return call

    def _hold(self, args: Mapping[str, Any], now: float) -> JsonDict:
        call = self._active_call(args["call_session_id"])
        message = ContactMessage(**args["contact_message"])
        if message.type == "media" and message.value not in self.media_ids:
            raise RpcError(
                "media_file_not_found",
                {"field": "contact_message.value", "params": {"media_file_id": message.value}},
            )
        if message.type == "tts" and len(message.value) > self.tts_max_length:
            raise RpcError(
                "tts_text_exceeded",
                {
                    "field": "contact_message.value",
                    "params": {
                        "tts_message_max_length": self.tts_max_length,
                        "sent_tts_message_length": len(message.value),
                    },
                },
            )
        # §3.2, §4: hold.call only in TALK; a second hold.call is invalid_state.
        if call.state is not CallState.TALK:
            raise RpcError("invalid_state")
        call.enter(CallState.HOLD)
        call.held_message = message
        call.hold_count += 1
        # §3.2: the documented result is the string "true".
        return {"success": "true"}

    def _unhold(self, args: Mapping[str, Any]) -> JsonDict:
        call = self._active_call(args["call_session_id"])
        # §3.3: only after hold.call, in state HOLD.
        if call.state is not CallState.HOLD:
            raise RpcError("invalid_state")
        call.enter(CallState.TALK)
        call.unhold_count += 1
        return {"success": "true"}

    def _list_calls(self, args: Mapping[str, Any]) -> list[JsonDict]:
        direction = args.get("direction")
        number = args.get("virtual_phone_number")
        return [
            self._list_entry(call)
            for call in self.calls.values()
            if (direction is None or call.direction == direction)
            and (number is None or call.virtual_phone_number == number)
        ]

    def _list_entry(self, call: SimCall) -> JsonDict:
        # §3.4 result fields, in the documented order.
        return {
            "call_session_id": call.call_session_id,
            "direction": call.direction,
            "start_time": self._format_start_time(call.start_time),
            "virtual_phone_number": call.virtual_phone_number,
            "contact_phone_number": call.contact_phone_number,
            "external_id": call.external_id,
            "tags": [{"tag_id": i, "tag_name": n} for i, n in call.tags],
            "legs": [leg.list_entry(self.leg_language) for leg in call.legs],
        }

    def _release(self, args: Mapping[str, Any], now: float) -> JsonDict:
        # §3.5: ends the whole session, whatever its state.
        call = self._active_call(args["call_session_id"])
        self._outbox.extend(self._end(call, now))
        return {"success": "true"}

    # -- limits (§6) --------------------------------------------------------

    def limits(self, now: float) -> JsonDict:
        """`metadata.limits` as of `now` (§6); the resets are in seconds."""
        self._roll(now)
        return {
            "day_limit": self.day_limit,
            "day_remaining": max(0, self.day_limit - self.day_used),
            "day_reset": _seconds_to_next(now, DAY),
            "minute_limit": self.minute_limit,
            "minute_remaining": max(0, self.minute_limit - self.minute_used),
            "minute_reset": _seconds_to_next(now, MINUTE),
        }

    def _roll(self, now: float) -> None:
        """Start new minute / day windows when `now` left the current ones."""
        minute, day = math.floor(now / MINUTE), math.floor(now / DAY)
        if self._minute_window is not None and minute != self._minute_window:
            self.minute_used = 0
        if self._day_window is not None and day != self._day_window:
            self.day_used = 0
        self._minute_window, self._day_window = minute, day

    def _check_limits(self, now: float, cost: int = 1) -> None:
        self._roll(now)
        # The day is checked first: backing off for a minute cannot help then.
        if self.day_used + cost > self.day_limit:
            raise RpcError(
                "limit_exceeded",
                {"params": {"limit_type": "day", "limit_max_value": self.day_limit}},
            )
        if self.minute_used + cost > self.minute_limit:
            raise RpcError(
                "limit_exceeded",
                {"params": {"limit_type": "minute", "limit_max_value": self.minute_limit}},
            )

    def _charge(self, now: float, cost: int = 1) -> None:
        self._roll(now)
        self.minute_used += cost
        self.day_used += cost

    # -- call life cycle (the control side) ---------------------------------

    def start_call(self, now: float, /, **fields: object) -> tuple[SimCall, list[Notification]]:
        """A call session starts (§4 `start -> SESSION`): a contact dials in or out.

        `fields` are those of `CallSpec`. Returns the call and the notification
        UIS sends for it (§8.3 «Входящий звонок на виртуальный номер» or
        «Исходящий звонок»).
        """
        spec = CallSpec.from_fields(fields)
        call_session_id = spec.call_session_id
        if call_session_id is None:
            call_session_id = self._new_call_session_id()
        elif call_session_id in self.calls or call_session_id in self.ended:
            raise InvalidCallSpec(f"call_session_id {call_session_id} is already used")
        call = SimCall(
            call_session_id=call_session_id,
            direction=spec.direction,
            virtual_phone_number=spec.virtual_phone_number,
            contact_phone_number=spec.contact_phone_number,
            contact_full_name=spec.contact_full_name,
            employee_id=spec.employee_id,
            employee_full_name=spec.employee_full_name,
            employee_phone_number=spec.employee_phone_number,
            call_source=spec.call_source or ("va" if spec.direction == "in" else "sip"),
            scenario_name=spec.scenario_name,
            external_id=spec.external_id,
            tags=spec.tags,
            start_time=now,
            state=CallState.SESSION,
            legs=self._new_legs(spec),
        )
        self.calls[call_session_id] = call
        if call.direction == "in":
            name = "Входящий звонок на виртуальный номер"
        else:
            name = "Исходящий звонок"
        return call, [self._notification(call, name, "call_started", now)]

    def answer(self, call_session_id: int, now: float) -> list[Notification]:
        """The parties are connected: `SESSION -> TALK` (§4); «Начало разговора» (§8.3)."""
        call = self.call(call_session_id)
        if call.state in (
            CallState.TALK,
            CallState.HOLD,
            CallState.POST_TALK,
            CallState.FINISHING,
            CallState.ENDED,
        ):
            raise InvalidTransition(f"call {call_session_id} cannot be answered in {call.state}")
        call.enter(CallState.TALK)
        call.answered_at = now
        note = self._notification(call, "Начало разговора", "talk_started", now)
        note["leg_ids"] = call.leg_ids
        return [note]

    def finish_talk(self, call_session_id: int, now: float) -> list[Notification]:
        """A leg hangs up: `TALK -> POST_TALK` (§4); «Окончание разговора» (§8.3)."""
        call = self.call(call_session_id)
        if call.state not in (CallState.TALK, CallState.HOLD):
            raise InvalidTransition(f"call {call_session_id} is not talking ({call.state})")
        return self._finish_talk(call, now)

    def end_call(self, call_session_id: int, now: float) -> list[Notification]:
        """The session ends (§4 `FINISHING -> end`); «Завершение звонка» (§8.3).

        A call still talking finishes its talk first, with its own notification.
        """
        call = self.call(call_session_id)
        if call.state is CallState.ENDED:
            raise InvalidTransition(f"call {call_session_id} has already ended")
        return self._end(call, now)

    def call(self, call_session_id: int) -> SimCall:
        """The call with that id, active or ended; CallNotFound if none."""
        call = self.calls.get(call_session_id) or self.ended.get(call_session_id)
        if call is None:
            raise CallNotFound(f"no call {call_session_id}")
        return call

    def all_calls(self) -> list[SimCall]:
        """Active and ended calls, by start time."""
        every = [*self.calls.values(), *self.ended.values()]
        return sorted(every, key=lambda c: (c.start_time, c.call_session_id))

    def _finish_talk(self, call: SimCall, now: float) -> list[Notification]:
        call.enter(CallState.POST_TALK)
        call.talk_finished_at = now
        note = self._notification(call, "Окончание разговора", "talk_finished", now)
        note["talk_time_duration"] = self._talk_time(call, now)
        note["leg_ids"] = call.leg_ids
        return [note]

    def _end(self, call: SimCall, now: float) -> list[Notification]:
        notes = []
        if call.state in (CallState.TALK, CallState.HOLD):
            notes.extend(self._finish_talk(call, now))
        call.enter(CallState.ENDED)
        call.ended_at = now
        del self.calls[call.call_session_id]
        self.ended[call.call_session_id] = call
        note = self._notification(call, "Завершение звонка", "call_finished", now)
        answered = now if call.answered_at is None else call.answered_at
        note["talk_time_duration"] = self._talk_time(call, now)
        note["total_time_duration"] = round(now - call.start_time)
        note["wait_time_duration"] = round(answered - call.start_time)
        note["is_lost"] = call.answered_at is None
        note["tag_names"] = [name for _, name in call.tags] or None
        notes.append(note)
        return notes

    @staticmethod
    def _talk_time(call: SimCall, now: float) -> int:
        if call.answered_at is None:
            return 0
        until = now if call.talk_finished_at is None else call.talk_finished_at
        return round(until - call.answered_at)

    def _new_call_session_id(self) -> int:
        while self._next_call_session_id in self.calls or self._next_call_session_id in self.ended:
            self._next_call_session_id += 1
        call_session_id = self._next_call_session_id
        self._next_call_session_id += 1
        return call_session_id

    def _new_leg_id(self) -> int:
        leg_id = self._next_leg_id
        self._next_leg_id += 1
        return leg_id

    def _new_legs(self, spec: CallSpec) -> list[SimLeg]:
        """Leg (A), the contact, then leg (B), the operator (§3.4 example, §4)."""
        if spec.direction == "in":
            contact_from, contact_to = spec.contact_phone_number, spec.virtual_phone_number
            operator_from = spec.contact_phone_number
        else:
            contact_from, contact_to = spec.virtual_phone_number, spec.contact_phone_number
            operator_from = spec.virtual_phone_number
        contact = SimLeg(
            leg_id=self._new_leg_id(),
            calling_phone_number=contact_from,
            called_phone_number=contact_to,
            is_operator=False,
            employee_id=None,
            employee_full_name=None,
            record_call_enabled=spec.record_call_enabled,
            state=CallState.SESSION,
        )
        operator = SimLeg(
            leg_id=self._new_leg_id(),
            calling_phone_number=operator_from,
            called_phone_number=spec.employee_phone_number,
            is_operator=True,
            employee_id=spec.employee_id,
            employee_full_name=spec.employee_full_name,
            record_call_enabled=spec.record_call_enabled,
            state=CallState.SESSION,
        )
        return [contact, operator]

    # -- formatting ---------------------------------------------------------

    def _notification(self, call: SimCall, name: str, mnemonic: str, now: float) -> Notification:
        """The variables every §8.3 event type carries, for `call`.

        The `notification_mnemonic` values are an assumption: the real ones are
        not publicly documented (§8.3, open question 1). These are the event-kind
        names holdd's spec uses.
        """
        return {
            "notification_name": name,
            "notification_mnemonic": mnemonic,
            "notification_time": self.format_notification_time(now),
            "call_session_id": call.call_session_id,
            "direction": call.direction,
            "virtual_phone_number": call.virtual_phone_number,
            "contact_phone_number": call.contact_phone_number,
            "contact_full_name": call.contact_full_name,
            "employee_id": call.employee_id,
            "employee_full_name": call.employee_full_name,
            "call_source": call.call_source,
            "scenario_name": call.scenario_name,
            "external_id": call.external_id,
        }

    def format_notification_time(self, when: float) -> str:
        """§8.3: `2019-12-16 14:40:47.234`, local time with milliseconds."""
        moment = datetime.fromtimestamp(when, self.tz)
        return f"{moment:%Y-%m-%d %H:%M:%S}.{moment.microsecond // 1000:03d}"

    def _format_start_time(self, when: float) -> str:
        moment = datetime.fromtimestamp(when, self.tz)
        if self.start_time_format == "example":
            # §3.4 example: "2016-10-19T12:26:48.418".
            return f"{moment:%Y-%m-%dT%H:%M:%S}.{moment.microsecond // 1000:03d}"
        # §1 Conventions / §3.4: documented as "YYYY-MM-DD hh:mm:ss".
        return f"{moment:%Y-%m-%d %H:%M:%S}"


def _seconds_to_next(now: float, period: int) -> int:
    """Whole seconds until the next window of `period` seconds starts (at least 1)."""
    return max(1, math.ceil((math.floor(now / period) + 1) * period - now))


__all__ = [
    "DAY",
    "ERRORS",
    "ERRORS_WITHOUT_LIMITS",
    "FIRST_CALL_SESSION_ID",
    "LEG_STATE_TEXTS",
    "METHODS",
    "MINUTE",
    "CallNotFound",
    "CallSpec",
    "ContactMessage",
    "InvalidCallSpec",
    "InvalidTransition",
    "LegLanguage",
    "Notification",
    "PermanentToken",
    "RecordedRequest",
    "RpcError",
    "SessionToken",
    "SimAccount",
    "SimCall",
    "SimControlError",
    "SimLeg",
    "StartTimeFormat",
    "error_object",
]
