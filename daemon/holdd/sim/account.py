"""The simulated account behind the built-in simulator (core: no I/O, no clock).

`SimAccount` is a sans-I/O model of one UIS / CoMagic / CallGear account as the
Call API v4.0 shows it (`docs/callapi.md`, cited below as §N): its
active call sessions (holdd.sim.switchboard), its access tokens, its media
files and its point limits (holdd.sim.points). It is fed request bodies and
the current time, and answers with the JSON-RPC response the real Call API
would send:

    status, response = account.handle(body, now)

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
* Points: see holdd.sim.points.
* `data.value` echoes the JSON value the client sent, whatever its type.
* Only the six methods the daemon uses are simulated: `login.user`,
  `logout.user`, `hold.call`, `unhold.call`, `list.calls`, `release.call`; any
  other method name answers `method_not_found`.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Any

import orjson

from holdd.core.states import CallState
from holdd.sim.calls import ContactMessage, LegLanguage, SimCall, StartTimeFormat
from holdd.sim.points import PointBudget
from holdd.sim.rpc import (
    ERRORS_WITHOUT_LIMITS,
    JsonDict,
    RecordedRequest,
    RpcError,
    error_object,
    method_of,
    request_id_of,
    validate_params,
)
from holdd.sim.switchboard import FIRST_CALL_SESSION_ID, FIRST_LEG_ID, Switchboard


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


class SimAccount(Switchboard):
    """One simulated account: calls, tokens, media files, limits and the request log.

    The calls and their life cycle are the `Switchboard` this extends; this adds
    the Call API endpoint that reads and changes them. Every attribute is public
    so tests (and the fault layer) can arrange any situation directly; `handle`
    and the call life cycle methods keep them consistent.
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
        super().__init__(
            tz=tz, first_call_session_id=first_call_session_id, first_leg_id=first_leg_id
        )
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
        #: Points per minute and day, and how many are used (§6).
        self.points = PointBudget(minute_limit=minute_limit, day_limit=day_limit)
        self.start_time_format: StartTimeFormat = start_time_format
        self.leg_language: LegLanguage = leg_language
        #: Every request `handle` answered, in order.
        self.requests: list[RecordedRequest] = []

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

    def _answer(self, request: object, now: float) -> JsonDict:
        request_id: object = None
        try:
            request_id = request_id_of(request)
            method, params = method_of(request)
            data = self._call(method, params, now)
        except RpcError as error:
            return self._error_response(request_id, error, now)
        # §1 success shape; §6 metadata.limits in every response.
        return {
            "jsonrpc": "2.0",
            "id": request_id,
            "result": {"data": data, "metadata": {"limits": self.points.limits(now)}},
        }

    def _error_response(self, request_id: object, error: RpcError, now: float) -> JsonDict:
        obj = error_object(error.mnemonic, error.data)
        if error.mnemonic not in ERRORS_WITHOUT_LIMITS:
            obj["data"]["metadata"] = {"limits": self.points.limits(now)}
        return {"jsonrpc": "2.0", "id": request_id, "error": obj}

    def _call(
        self, method: str, params: Mapping[str, Any], now: float
    ) -> JsonDict | list[JsonDict]:
        args = validate_params(method, params)
        if method == "login.user":
            if self.users.get(args["login"]) != args["password"]:
                raise RpcError("auth_error")
        else:
            self._authenticate(args["access_token"], now)
        self.points.check(now)
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
        self.points.charge(now)
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
        self.release(call, now)
        return {"success": "true"}

    def _format_start_time(self, when: float) -> str:
        moment = datetime.fromtimestamp(when, self.tz)
        if self.start_time_format == "example":
            # §3.4 example: "2016-10-19T12:26:48.418".
            return f"{moment:%Y-%m-%dT%H:%M:%S}.{moment.microsecond // 1000:03d}"
        # §1 Conventions / §3.4: documented as "YYYY-MM-DD hh:mm:ss".
        return f"{moment:%Y-%m-%d %H:%M:%S}"


__all__ = ["PermanentToken", "SessionToken", "SimAccount"]
