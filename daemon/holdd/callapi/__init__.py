"""Call API v4.0 client: JSON-RPC 2.0 over one pooled aiohttp session (shell).

Every request is one JSON-RPC object POSTed to the versioned URL with
`access_token` inside `params` (uis-call-api.md section 1). What the client
does for every request, so that its callers do not have to:

* **Errors** are typed by `code` + `data.mnemonic`, never by message text,
  because the texts differ between the UIS, CoMagic and CallGear docs
  (section 5). `ERROR_KINDS` classifies every mnemonic of the reference into
  a `Policy` (retry, do-not-retry, re-login, rate-limit, call-gone,
  check-state) with an operator hint; docs/errors.md is the same table for
  humans, and a test keeps the two in agreement. An unknown mnemonic is kept,
  counted and logged, and gets the policy of its code group.
* **Credentials** (section 2, holdd.callapi.auth): a permanent key, or session keys
  from `login.user` renewed before `expire_at` and again when the API rejects
  them (the failed request is then sent once more). A permanent key that is
  rejected sets `credentials_ok = False` with a reason (one ERROR line, no
  loop), so /readyz can say so.
* **Limits** (section 6): `metadata.limits` of every answer (success, and
  `error.data.metadata`) is read; requests are spread out as the minute or
  day budget runs low, and after `limit_exceeded` nothing is sent until the
  reset. Waits never run past the caller's deadline (`RateLimitWait`).
* **One request per call**: never two requests in flight for the same
  `call_session_id`.

What the client does not do is retry: `hold.call` is not idempotent, so the
caller (holdd.io.runner) decides. An exchange whose outcome is unknown
(timeout, dropped connection, HTTP 5xx without a JSON-RPC body) raises
`OutcomeUnknown`; one that certainly never reached the API raises
`RequestNotSent`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
import re
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from types import MappingProxyType
from typing import Any, Final

import aiohttp
import orjson
import structlog

from holdd.callapi.auth import PermanentKey, SessionKey, SessionKeys, TokenSource
from holdd.config.settings import LoginPassword, Secret
from holdd.core.errors import HolddError
from holdd.core.events import as_int
from holdd.core.rules.model import ContactMessage
from holdd.core.states import LEG_STATES, CallState

_HEADERS: Final[Mapping[str, str]] = MappingProxyType(
    {"Content-Type": "application/json; charset=UTF-8", "Accept": "application/json"}
)

#: Parameters whose values are secrets: an error's `data.value` echoing one of
#: them (section 1: "`data.value` echoes what the client sent") is dropped.
_SECRET_FIELDS: Final = frozenset({"access_token", "password", "login"})


# -- what every error means ----------------------------------------------------


class Policy(StrEnum):
    """What holdd does about an error answer."""

    #: A server fault: send again after a backoff, inside the action's deadline.
    RETRY = "retry"
    #: The request itself is wrong (or the account is): sending it again cannot help.
    DO_NOT_RETRY = "do-not-retry"
    #: The key was refused: with login + password, log in again and resend once.
    RELOGIN = "re-login"
    #: Out of points: send nothing until the minute (or day) resets.
    RATE_LIMIT = "rate-limit"
    #: The call session is over: drop it.
    CALL_GONE = "call-gone"
    #: The call is not in the state the method needs: look at it with list.calls.
    CHECK_STATE = "check-state"


@dataclass(frozen=True, slots=True)
class ErrorKind:
    """One row of the classification table."""

    mnemonic: str
    #: The codes the reference gives it (two where the docs disagree).
    codes: tuple[int, ...]
    policy: Policy
    #: What an operator should do about it.
    hint: str
    #: The daemon cannot work until a human acts (credentials, IP, account):
    #: the client reports it in `credentials_ok` / `credentials_problem`.
    alert: bool = False
    #: The rule that asked for the request is misconfigured (counted per rule).
    rule_problem: bool = False
    #: False for a mnemonic the reference does not list (classified by its code).
    known: bool = True


def _kinds(*rows: ErrorKind) -> Mapping[str, ErrorKind]:
    return MappingProxyType({row.mnemonic: row for row in rows})


_NOT_OURS = "not expected from the methods holdd calls (start.* / other methods); report it"
_HOLDD_BUG = "holdd sent a malformed request: report a holdd bug with the request id and time"

#: Every error mnemonic of the reference: section 5 (common errors and "also
#: seen in per-method lists"), section 3.2 (`hold.call`), section 3.3
#: (`unhold.call`), section 1 (-32099 in both spellings). docs/errors.md
#: shows the same table; tests/callapi/test_errors_table.py keeps them equal.
ERROR_KINDS: Final[Mapping[str, ErrorKind]] = _kinds(
    # Section 5, common errors.
    ErrorKind("parse_error", (-32700,), Policy.DO_NOT_RETRY, _HOLDD_BUG),
    ErrorKind("invalid_request", (-32600,), Policy.DO_NOT_RETRY, _HOLDD_BUG),
    ErrorKind(
        "method_not_found",
        (-32601,),
        Policy.DO_NOT_RETRY,
        "the method is not available at this URL: check [callapi] url (host and /v4.0)",
    ),
    ErrorKind(
        "data_type_error",
        (-32602,),
        Policy.DO_NOT_RETRY,
        "a parameter has the wrong type (see field): report a holdd bug",
    ),
    ErrorKind(
        "required_parameter_missed",
        (-32602,),
        Policy.DO_NOT_RETRY,
        "a required parameter is missing (see field): report a holdd bug",
    ),
    ErrorKind(
        "invalid_parameter_value",
        (-32602,),
        Policy.DO_NOT_RETRY,
        "a parameter value was refused (see field and value): check the rule's [rule.hold]",
        rule_problem=True,
    ),
    ErrorKind(
        "unexpected_parameters",
        (-32602,),
        Policy.DO_NOT_RETRY,
        "the API does not know a parameter (see field): check the API version in [callapi] url",
    ),
    ErrorKind(
        "call_session_not_found",
        (-32602,),
        Policy.CALL_GONE,
        "the call ended before the request arrived; nothing to do",
    ),
    ErrorKind(
        "access_token_expired",
        (-32001,),
        Policy.RELOGIN,
        "the permanent key's validity date has passed: issue a new key in the user's"
        " settings and update [callapi] access_token",
        alert=True,
    ),
    ErrorKind(
        "access_token_blocked",
        (-32001,),
        Policy.RELOGIN,
        "the key is blocked: issue a new key in the user's settings and update [callapi]",
        alert=True,
    ),
    ErrorKind(
        "access_token_invalid",
        (-32001,),
        Policy.RELOGIN,
        "the key is not known to the API: check [callapi] access_token (or login)",
        alert=True,
    ),
    ErrorKind(
        "auth_error",
        (-32001,),
        Policy.DO_NOT_RETRY,
        "login.user refused the login or password: check [callapi] login and password",
        alert=True,
    ),
    ErrorKind(
        "ip_not_whitelisted",
        (-32003,),
        Policy.DO_NOT_RETRY,
        "add this host's address to the account's API allow-list (Administrator > Account"
        " > Security, tab API)",
        alert=True,
    ),
    ErrorKind(
        "forbidden",
        (-32003,),
        Policy.DO_NOT_RETRY,
        "the API user lacks the right for this method: grant it in the account's user settings",
    ),
    ErrorKind(
        "component_disabled",
        (-32008,),
        Policy.DO_NOT_RETRY,
        "enable the component 'Call API: call management' in the account's tariff options",
        alert=True,
    ),
    ErrorKind(
        "account_inactive",
        (-32009,),
        Policy.DO_NOT_RETRY,
        "the account is disabled: contact the provider's support",
        alert=True,
    ),
    ErrorKind(
        "limit_exceeded",
        (-32029,),
        Policy.RATE_LIMIT,
        "the account's Call API points per minute or day are used up: holdd waits for the"
        " reset; raise the limits in the account's tariff options if this recurs",
    ),
    ErrorKind(
        "internal_error",
        (-32603,),
        Policy.RETRY,
        "the Call API failed internally; holdd retries. If it persists, contact support"
        " with the request id and time",
    ),
    ErrorKind("batch_opreations_not_supported", (-32099,), Policy.DO_NOT_RETRY, _HOLDD_BUG),
    ErrorKind("batch_operations_not_supported", (-32099,), Policy.DO_NOT_RETRY, _HOLDD_BUG),
    ErrorKind("notifications_not_supported", (-32099,), Policy.DO_NOT_RETRY, _HOLDD_BUG),
    # Sections 3.2 / 3.3 (hold.call, unhold.call) and "also seen".
    ErrorKind(
        "invalid_state",
        (-32004,),
        Policy.CHECK_STATE,
        "the call was not in Talk when the request arrived (hold.call works only in Talk);"
        " holdd looks at the call with list.calls once",
    ),
    ErrorKind(
        "media_file_not_found",
        (-32602,),
        Policy.DO_NOT_RETRY,
        "the rule's media id is not a media file of this account: check it against"
        " get.media_files in the Data API",
        rule_problem=True,
    ),
    ErrorKind(
        "tts_text_exceeded",
        (-32602,),
        Policy.DO_NOT_RETRY,
        "the TTS text is longer than the tariff allows: shorten the rule's tts, or set"
        " [callapi] tts_max_length to the tariff's limit so holdd check catches it",
        rule_problem=True,
    ),
    ErrorKind(
        "character_encoding_not_allowed",
        (-32602,),
        Policy.DO_NOT_RETRY,
        "the TTS text must be UTF-8: fix the rule's tts text",
        rule_problem=True,
    ),
    ErrorKind("invalid_parameters_combination", (-32602,), Policy.DO_NOT_RETRY, _NOT_OURS),
    ErrorKind("virtual_phone_number_not_found", (-32007,), Policy.DO_NOT_RETRY, _NOT_OURS),
    ErrorKind("scenario_not_found", (-32602, -32007), Policy.DO_NOT_RETRY, _NOT_OURS),
    ErrorKind("employee_not_found", (-32602,), Policy.DO_NOT_RETRY, _NOT_OURS),
    ErrorKind("no_active_phone_number", (-32602,), Policy.DO_NOT_RETRY, _NOT_OURS),
    ErrorKind("own_virtual_phone_number_not_allowed", (-32602,), Policy.DO_NOT_RETRY, _NOT_OURS),
    ErrorKind("contact_in_blacklist", (-32002, -32602), Policy.DO_NOT_RETRY, _NOT_OURS),
    ErrorKind("tag_not_found", (-32602,), Policy.DO_NOT_RETRY, _NOT_OURS),
    ErrorKind("duplicate_tag", (-32602,), Policy.DO_NOT_RETRY, _NOT_OURS),
    ErrorKind("leg_not_found", (-32602,), Policy.DO_NOT_RETRY, _NOT_OURS),
    ErrorKind("coach_not_found", (-32602,), Policy.DO_NOT_RETRY, _NOT_OURS),
    ErrorKind("record_already_started", (-32602,), Policy.DO_NOT_RETRY, _NOT_OURS),
    ErrorKind("record_already_stopped", (-32602,), Policy.DO_NOT_RETRY, _NOT_OURS),
    ErrorKind("duplicate_contact", (-32602,), Policy.DO_NOT_RETRY, _NOT_OURS),
    ErrorKind("talk_option_not_found", (-32602,), Policy.DO_NOT_RETRY, _NOT_OURS),
)

#: The policy of a mnemonic the reference does not list, by its code group
#: (section 5 "Code groups"); any other code is not retried.
CODE_GROUP_POLICY: Final[Mapping[int, Policy]] = MappingProxyType(
    {
        -32001: Policy.RELOGIN,
        -32004: Policy.CHECK_STATE,
        -32029: Policy.RATE_LIMIT,
        -32603: Policy.RETRY,
    }
)


def classify(code: int, mnemonic: str) -> ErrorKind:
    """The row for `code` + `mnemonic`; an unknown pair is classified by its code."""
    kind = ERROR_KINDS.get(mnemonic)
    if kind is not None and code in kind.codes:
        return kind
    return ErrorKind(
        mnemonic,
        (code,),
        CODE_GROUP_POLICY.get(code, Policy.DO_NOT_RETRY),
        f"error {code} {mnemonic} is not in the API reference: report it to the holdd"
        " maintainers with the request id",
        alert=code == -32001,
        known=False,
    )


# -- answers -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Limits:
    """`metadata.limits` of an answer (section 6); reset values in seconds."""

    day_limit: int | None = None
    day_remaining: int | None = None
    day_reset: int | None = None
    minute_limit: int | None = None
    minute_remaining: int | None = None
    minute_reset: int | None = None

    @classmethod
    def parse(cls, metadata: object) -> Limits | None:
        if not isinstance(metadata, dict):
            return None
        raw = metadata.get("limits")
        if not isinstance(raw, dict):
            return None
        values: dict[str, int | None] = {}
        for name in cls.__dataclass_fields__:
            value = raw.get(name)
            number = value if isinstance(value, int | float) else None
            ok = number is not None and not isinstance(number, bool) and math.isfinite(number)
            values[name] = int(number) if ok and number is not None else None
        return cls(**values)


@dataclass(frozen=True, slots=True)
class Answer:
    data: Any
    limits: Limits | None
    request_id: int


def succeeded(data: object) -> bool:
    """`result.data.success`: the docs show the string "true", accept the boolean."""
    if not isinstance(data, dict):
        return False
    success = data.get("success")
    return success is True or (isinstance(success, str) and success.strip().lower() == "true")


# -- failures ------------------------------------------------------------------


class CallApiFailure(HolddError):
    """Base of everything a Call API request can end in other than an answer."""


class CallApiError(CallApiFailure):
    """A JSON-RPC error answer. `mnemonic` (with `code`) is what holdd acts on.

    Subclasses, by `kind.policy`: `ServerFault` (retry), `RequestRefused`
    (do-not-retry), `TokenRejected` (re-login), `LimitExceeded` (rate-limit),
    `CallGone` (call-gone), `InvalidState` (check-state).
    """

    def __init__(
        self,
        method: str,
        code: int,
        mnemonic: str,
        message: str,
        *,
        field: str | None = None,
        value: object = None,
        params: Mapping[str, Any] | None = None,
        limits: Limits | None = None,
        kind: ErrorKind | None = None,
    ) -> None:
        super().__init__(f"{method}: {code} {mnemonic}: {message}")
        self.method = method
        self.code = code
        self.mnemonic = mnemonic
        self.message = message
        self.field = field
        # Never keep an echo of a secret parameter (section 1: data.value).
        self.value = None if field in _SECRET_FIELDS else value
        self.params = dict(params or {})
        self.limits = limits
        self.kind = kind if kind is not None else classify(code, mnemonic)

    @property
    def policy(self) -> Policy:
        return self.kind.policy

    def as_log(self) -> dict[str, object]:
        out: dict[str, object] = {
            "method": self.method,
            "code": self.code,
            "mnemonic": self.mnemonic,
            "error_message": self.message,
        }
        if self.field is not None:
            out["field"] = self.field
        if self.value is not None:
            out["value"] = self.value
        if self.params:
            out["params"] = self.params
        return out


class ServerFault(CallApiError):
    """`internal_error` and its kind: the request failed; sending it again may work."""


class RequestRefused(CallApiError):
    """The API refused the request for a reason that a resend cannot change."""


class TokenRejected(CallApiError):
    """-32001: the `access_token` was refused (section 2)."""


class LimitExceeded(CallApiError):
    """-32029 `limit_exceeded` (section 6)."""

    @property
    def limit_type(self) -> str:
        """ "minute" or "day" (`data.params.limit_type`); "minute" when not given."""
        value = self.params.get("limit_type")
        return value if value in ("minute", "day") else "minute"


class CallGone(CallApiError):
    """`call_session_not_found`: the session is over (or never was)."""


class InvalidState(CallApiError):
    """-32004 `invalid_state`: the call is not in a state the method accepts (section 4)."""


_ERROR_CLASSES: Final[Mapping[Policy, type[CallApiError]]] = MappingProxyType(
    {
        Policy.RETRY: ServerFault,
        Policy.DO_NOT_RETRY: RequestRefused,
        Policy.RELOGIN: TokenRejected,
        Policy.RATE_LIMIT: LimitExceeded,
        Policy.CALL_GONE: CallGone,
        Policy.CHECK_STATE: InvalidState,
    }
)


class OutcomeUnknown(CallApiFailure):
    """No JSON-RPC answer: the request may or may not have been applied
    (timeout, dropped connection, HTTP 5xx without a JSON-RPC body).

    The subclasses know more: `RequestNotSent` (certainly not applied) and
    `ProtocolError` (something other than the Call API answered). Code that
    catches only this base class treats them as unknown, which is always
    the safe side for a method that is not idempotent.
    """

    def __init__(self, method: str, reason: str, detail: str = "") -> None:
        super().__init__(f"{method}: {reason}" + (f": {detail}" if detail else ""))
        self.method = method
        #: "timeout", "connection", "http_<status>", "bad_answer"; for the
        #: subclasses, see theirs.
        self.reason = reason


class RequestNotSent(OutcomeUnknown):
    """The request certainly did not reach the API; sending it later is safe."""

    def __init__(self, method: str, reason: str, detail: str = "") -> None:
        super().__init__(method, f"not sent: {reason}", detail)
        #: "connect", "http_429", "login_<reason>", "rate_limited".
        self.reason = reason


class RateLimitWait(RequestNotSent):
    """The rate limit holds requests back past the caller's deadline (section 6)."""

    def __init__(self, method: str, wait: float, limit_type: str) -> None:
        super().__init__(method, "rate_limited", f"{limit_type} limit: next slot in {wait:.1f} s")
        self.wait = wait
        self.limit_type = limit_type


class ProtocolError(OutcomeUnknown):
    """The answer is not one the Call API gives (an HTTP 4xx page, a malformed
    result, a rejected TLS certificate): sending it again will not help."""

    def __init__(self, method: str, reason: str) -> None:
        super().__init__(method, reason)


def make_error(method: str, raw: object) -> CallApiError:
    """The typed error for a JSON-RPC `error` member (section 1 Error shape)."""
    if not isinstance(raw, dict):
        return RequestRefused(method, 0, "unknown", repr(raw)[:200])
    data = raw.get("data")
    if not isinstance(data, dict):
        data = {}
    code = raw.get("code")
    code = code if isinstance(code, int) and not isinstance(code, bool) else 0
    mnemonic = data.get("mnemonic")
    mnemonic = mnemonic if isinstance(mnemonic, str) and mnemonic else "unknown"
    kind = classify(code, mnemonic)
    params = data.get("params")
    field_name = data.get("field")
    return _ERROR_CLASSES[kind.policy](
        method,
        code,
        mnemonic,
        str(raw.get("message") or ""),
        field=field_name if isinstance(field_name, str) else None,
        value=data.get("value"),
        params=params if isinstance(params, dict) else None,
        limits=Limits.parse(data.get("metadata")),
        kind=kind,
    )


# -- list.calls ----------------------------------------------------------------

# Section 3.4: start_time is documented as "YYYY-MM-DD hh:mm:ss"; the example
# shows "2016-10-19T12:26:48.418". Both (and an ISO offset) are accepted.
_START_TIME = re.compile(
    r"\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}(?:\.\d{1,6})?(?:Z|[+-]\d{2}:?\d{2})?"
)


def parse_start_time(text: object) -> datetime | None:
    """`list.calls` `start_time` in either documented format; None if neither.

    Without an offset the result is naive: the account's local time (the
    reference does not name the time zone).
    """
    if not isinstance(text, str) or not _START_TIME.fullmatch(text.strip()):
        return None
    try:
        return datetime.fromisoformat(text.strip())
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class Leg:
    """One `legs[]` item of `list.calls` (section 3.4)."""

    leg_id: int | None
    #: The localised text as the API gave it (`Разговор`, `Talking`, ...).
    state_text: str
    #: `state_text` mapped by holdd.core.states.LEG_STATES; None for a text it does not know.
    state: CallState | None
    is_operator: bool
    employee_id: int | None
    employee_full_name: str | None

    @classmethod
    def parse(cls, raw: object) -> Leg | None:
        if not isinstance(raw, dict):
            return None
        text = raw.get("state")
        text = text if isinstance(text, str) else ""
        name = raw.get("employee_full_name")
        return cls(
            leg_id=as_int(raw.get("leg_id")),
            state_text=text,
            state=LEG_STATES.get(text.strip().casefold()),
            is_operator=raw.get("is_operator") is True,
            employee_id=as_int(raw.get("employee_id")),
            employee_full_name=name if isinstance(name, str) else None,
        )


@dataclass(frozen=True, slots=True)
class ActiveCall:
    """One active session of `list.calls` (section 3.4)."""

    call_session_id: int
    direction: str | None
    start_time: datetime | None
    virtual_phone_number: str | None
    contact_phone_number: str | None
    external_id: str | None
    legs: tuple[Leg, ...] = ()

    @property
    def state(self) -> CallState:
        """The session's state on the diagram (section 4), from its legs' states.

        The API gives no session state, only a localised text per leg, so:

        1. HOLD if any leg is on hold (after `hold.call` only the contact's leg
           hears music; the operator's leg may still say "talking");
        2. else TALK if any leg is talking;
        3. else OPERATOR_TALK, then DIALING, if any leg shows it;
        4. else POST_TALK if there are legs and every one is disconnected;
        5. else SESSION: dialling, queued, no legs, or no leg text holdd knows
           (`state_known` tells the last case apart).
        """
        states = {leg.state for leg in self.legs if leg.state is not None}
        for candidate in (CallState.HOLD, CallState.TALK, CallState.OPERATOR_TALK):
            if candidate in states:
                return candidate
        if CallState.DIALING in states:
            return CallState.DIALING
        if states == {CallState.POST_TALK}:
            return CallState.POST_TALK
        return CallState.SESSION

    @property
    def state_known(self) -> bool:
        """True when at least one leg's state text is one holdd knows."""
        return any(leg.state is not None for leg in self.legs)

    @property
    def operator(self) -> Leg | None:
        """The operator's leg ("B", `is_operator`), preferring one with an employee."""
        operators = [leg for leg in self.legs if leg.is_operator]
        with_employee = [leg for leg in operators if leg.employee_id is not None]
        chosen = with_employee or operators
        return chosen[0] if chosen else None

    @property
    def fields(self) -> dict[str, str | int | None]:
        """The call as notification variables (section 8.3 names), for rules and TTS.

        Only values the API gave: a null is left out, so merging these into
        what notifications said never erases a known value.
        """
        operator = self.operator
        values: dict[str, str | int | None] = {
            "direction": self.direction,
            "virtual_phone_number": self.virtual_phone_number,
            "contact_phone_number": self.contact_phone_number,
            "external_id": self.external_id,
            "employee_id": operator.employee_id if operator else None,
            "employee_full_name": operator.employee_full_name if operator else None,
        }
        return {key: value for key, value in values.items() if value is not None}

    @classmethod
    def parse(cls, raw: object) -> ActiveCall | None:
        """One `result.data[]` item; None when it has no usable `call_session_id`."""
        if not isinstance(raw, dict):
            return None
        call_session_id = as_int(raw.get("call_session_id"))
        if call_session_id is None:
            return None
        legs_raw = raw.get("legs")
        legs = tuple(
            leg
            for leg in (
                Leg.parse(item) for item in (legs_raw if isinstance(legs_raw, list) else ())
            )
            if leg is not None
        )
        return cls(
            call_session_id=call_session_id,
            direction=_as_str(raw.get("direction")),
            start_time=parse_start_time(raw.get("start_time")),
            virtual_phone_number=_as_str(raw.get("virtual_phone_number")),
            contact_phone_number=_as_str(raw.get("contact_phone_number")),
            external_id=_as_str(raw.get("external_id")),
            legs=legs,
        )


def _as_str(value: object) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return None


# -- pacing --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Pacing:
    """How the client spends the account's points (section 6)."""

    #: Spread the remaining points once at most this share of the limit is left...
    low_fraction: float = 0.1
    #: ...or at most this many points.
    low_points: int = 2
    #: Never send sooner than this after `limit_exceeded`, whatever the reset says.
    limit_wait_floor: float = 1.0
    #: Wait after a `limit_exceeded` whose answer has no `minute_reset` / `day_reset`.
    minute_fallback: float = 60.0
    day_fallback: float = 3600.0


class RateGate:
    """When the next request may go out: an account-wide schedule (core logic,
    clock injected; the client does the waiting).

    After every answer, `observe` reads `metadata.limits`: with the budget
    low, the remaining points are spread evenly over the time to the reset;
    with nothing left, nothing goes out until the reset. `block` does the
    same for `limit_exceeded`. `reserve` hands out start times one after
    another, so concurrent requests queue up instead of bursting.
    """

    def __init__(self, pacing: Pacing, monotonic: Callable[[], float]) -> None:
        self.pacing = pacing
        self.monotonic = monotonic
        self.blocked_until = 0.0
        self.blocked_by = ""
        #: Minimum seconds between request starts while the budget is low...
        self.spacing = 0.0
        #: ...until this time (the reset of the window that set it).
        self.spacing_until = 0.0
        self.spacing_by = ""
        self._last_start = -math.inf

    def observe(self, limits: Limits) -> None:
        now = self.monotonic()
        spacing, until, by = 0.0, 0.0, ""
        for name, remaining, limit, reset in (
            ("minute", limits.minute_remaining, limits.minute_limit, limits.minute_reset),
            ("day", limits.day_remaining, limits.day_limit, limits.day_reset),
        ):
            if remaining is None or reset is None:
                continue
            if remaining <= 0:
                self._block(now + max(0, reset), name)
                continue
            low = max(self.pacing.low_points, math.ceil((limit or 0) * self.pacing.low_fraction))
            if remaining <= low and reset / remaining > spacing:
                spacing, until, by = reset / remaining, now + reset, name
        self.spacing, self.spacing_until, self.spacing_by = spacing, until, by

    def block(self, limit_type: str, reset: int | None) -> float:
        """After `limit_exceeded`: hold every request until the reset; return the wait."""
        if reset is None:
            wait = self.pacing.day_fallback if limit_type == "day" else self.pacing.minute_fallback
        else:
            wait = float(reset)
        wait = max(wait, self.pacing.limit_wait_floor)
        self._block(self.monotonic() + wait, limit_type)
        return wait

    def _block(self, until: float, by: str) -> None:
        if until > self.blocked_until:
            self.blocked_until, self.blocked_by = until, by

    def reserve(self, method: str, deadline: float | None) -> float:
        """Reserve the next start time; return how long to wait for it.

        Raises RateLimitWait, reserving nothing, when that start would be past
        `deadline` (a monotonic time).
        """
        now = self.monotonic()
        start, by = now, ""
        if self.blocked_until > start:
            start, by = self.blocked_until, self.blocked_by
        if self.spacing and now < self.spacing_until and self._last_start + self.spacing > start:
            start, by = self._last_start + self.spacing, self.spacing_by
        if deadline is not None and start > deadline:
            raise RateLimitWait(method, start - now, by or "minute")
        self._last_start = start
        return start - now


# -- the client ----------------------------------------------------------------


@dataclass(slots=True)
class ClientStats:
    """Counters for /metrics (plain Counters; the exporter reads them)."""

    #: Requests sent, by method.
    requests: Counter[str] = field(default_factory=Counter)
    #: Answers by (method, "ok" or the error mnemonic).
    answers: Counter[tuple[str, str]] = field(default_factory=Counter)
    #: Exchanges with an unknown outcome, by (method, reason).
    unknown_outcomes: Counter[tuple[str, str]] = field(default_factory=Counter)
    #: Requests that never went out, by (method, reason).
    not_sent: Counter[tuple[str, str]] = field(default_factory=Counter)
    #: Error mnemonics the reference does not list, by (code, mnemonic).
    unknown_mnemonics: Counter[tuple[int, str]] = field(default_factory=Counter)
    #: `login.user` calls, by reason ("first", "expiring", "rejected").
    logins: Counter[str] = field(default_factory=Counter)
    #: `limit_exceeded` answers, by limit type.
    rate_limited: Counter[str] = field(default_factory=Counter)
    #: `list.calls` entries without a usable call_session_id.
    bad_list_entries: int = 0


class _CallLocks:
    """One lock per call_session_id, kept only while someone uses it."""

    def __init__(self) -> None:
        self._locks: dict[int, tuple[asyncio.Lock, list[int]]] = {}

    @contextlib.asynccontextmanager
    async def hold(self, key: int | None) -> AsyncIterator[None]:
        if key is None:
            yield
            return
        entry = self._locks.get(key)
        if entry is None:
            entry = self._locks[key] = (asyncio.Lock(), [0])
        lock, users = entry
        users[0] += 1
        try:
            async with lock:
                yield
        finally:
            users[0] -= 1
            if users[0] == 0:
                del self._locks[key]

    def __len__(self) -> int:
        return len(self._locks)


class CallApiClient:
    """One client for the life of the daemon; the aiohttp session is the caller's.

    `credentials` is a permanent key (`Secret`) or `LoginPassword` for
    `login.user` session keys (holdd.config.settings, uis-call-api.md section 2).
    `timeout` bounds one HTTP exchange. `deadline` arguments are monotonic
    times after which a request is not started (rate-limit waits included).
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        url: str,
        credentials: Secret | LoginPassword,
        timeout: float,
        *,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        pacing: Pacing | None = None,
        refresh_margin: float = 60.0,
    ) -> None:
        self.session = session
        self.url = url
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self.clock = clock
        self.monotonic = monotonic
        self._sleep = sleep
        self._ids = itertools.count(1)
        self.gate = RateGate(pacing or Pacing(), monotonic)
        self.stats = ClientStats()
        #: The `metadata.limits` of the latest answer that had them (API budget remaining).
        self.last_limits: Limits | None = None
        #: False while the API refuses the credentials or the account (an alert).
        self.credentials_ok = True
        #: Why `credentials_ok` is False: "<mnemonic>: <hint>".
        self.credentials_problem: str | None = None
        self.auth: TokenSource
        if isinstance(credentials, LoginPassword):
            self.auth = SessionKeys(
                credentials, self._login_user, clock=clock, margin=refresh_margin
            )
        else:
            self.auth = PermanentKey(credentials)
        self._locks = _CallLocks()
        self._deprecation_logged = False
        self._unknown_logged: set[tuple[int, str]] = set()
        self._slow = ""
        self.log = structlog.get_logger("holdd.callapi")

    # -- methods ---------------------------------------------------------------

    async def hold_call(
        self, call_session_id: int, message: ContactMessage, *, deadline: float | None = None
    ) -> Answer:
        """`hold.call` (section 3.2): only valid while the call is in TALK. Not idempotent."""
        return await self.call(
            "hold.call",
            {
                "call_session_id": call_session_id,
                "contact_message": {"type": message.type, "value": message.value},
            },
            deadline=deadline,
        )

    async def unhold_call(self, call_session_id: int, *, deadline: float | None = None) -> Answer:
        """`unhold.call` (section 3.3): only valid in HOLD, after `hold.call`."""
        return await self.call(
            "unhold.call", {"call_session_id": call_session_id}, deadline=deadline
        )

    async def list_calls(
        self,
        *,
        direction: str | None = None,
        virtual_phone_number: str | None = None,
        deadline: float | None = None,
    ) -> list[ActiveCall]:
        """`list.calls` (section 3.4): every active session, optionally filtered."""
        params: dict[str, Any] = {}
        if direction is not None:
            params["direction"] = direction
        if virtual_phone_number is not None:
            params["virtual_phone_number"] = virtual_phone_number
        answer = await self.call("list.calls", params, deadline=deadline)
        if not isinstance(answer.data, list):
            raise ProtocolError("list.calls", "result.data is not a list")
        calls: list[ActiveCall] = []
        for item in answer.data:
            parsed = ActiveCall.parse(item)
            if parsed is None:
                self.stats.bad_list_entries += 1
                self.log.warning("callapi_list_entry_skipped", reason="no call_session_id")
                continue
            calls.append(parsed)
        return calls

    async def logout(self, *, deadline: float | None = None) -> None:
        """`logout.user` for the current session key, if there is one (section 2)."""
        if not isinstance(self.auth, SessionKeys) or self.auth.current is None:
            return
        token = self.auth.current
        self.auth.forget()
        await self._exchange("logout.user", {"access_token": token.reveal()}, deadline)

    # -- one request -------------------------------------------------------------

    async def call(
        self, method: str, params: Mapping[str, Any], *, deadline: float | None = None
    ) -> Answer:
        """Send `method` with `params` (the key is added) and return its answer.

        Requests naming a `call_session_id` wait for any other request for the
        same call to finish first. A rejected session key is replaced and the
        request sent once more (section 2).
        """
        csid = params.get("call_session_id")
        async with self._locks.hold(csid if isinstance(csid, int) else None):
            token = await self.auth.token(deadline)
            try:
                return await self._exchange(
                    method, {"access_token": token.reveal(), **params}, deadline
                )
            except TokenRejected as exc:
                if not self.auth.refreshable:
                    raise
                self.auth.invalidate(token)
                self.log.info("callapi_token_rejected", method=method, mnemonic=exc.mnemonic)
                token = await self.auth.token(deadline)
                try:
                    return await self._exchange(
                        method, {"access_token": token.reveal(), **params}, deadline
                    )
                except TokenRejected as again:
                    # A key fresh from login.user refused: that needs a human.
                    self._credentials_rejected(again)
                    raise

    async def _login_user(
        self, credentials: LoginPassword, deadline: float | None, reason: str
    ) -> SessionKey:
        """`login.user` (section 2); failures of the exchange mean the caller's
        request was never sent."""
        self.stats.logins[reason] += 1
        params = {"login": credentials.login, "password": credentials.password.reveal()}
        try:
            answer = await self._exchange("login.user", params, deadline)
        except RequestNotSent:
            raise
        except ProtocolError as exc:
            raise RequestNotSent("login.user", "login_bad_answer", exc.reason) from None
        except OutcomeUnknown as exc:
            # Whatever became of the login, the request it was for never left.
            raise RequestNotSent("login.user", f"login_{exc.reason}") from None
        data = answer.data if isinstance(answer.data, dict) else {}
        token, expire_at = data.get("access_token"), data.get("expire_at")
        if (
            not isinstance(token, str)
            or not token
            or not isinstance(expire_at, int | float)
            or isinstance(expire_at, bool)
        ):
            raise RequestNotSent("login.user", "login_bad_answer", "no access_token / expire_at")
        now = self.clock()
        self.log.info(
            "callapi_login",
            user=credentials.login,
            reason=reason,
            expires_in=round(float(expire_at) - now),
        )
        return SessionKey(Secret(token), float(expire_at), now)

    async def _exchange(
        self, method: str, params: Mapping[str, Any], deadline: float | None
    ) -> Answer:
        """One HTTP exchange: wait for the rate gate, POST, read the answer."""
        try:
            wait = self.gate.reserve(method, deadline)
        except RateLimitWait as exc:
            self.stats.not_sent[(method, exc.reason)] += 1
            raise
        if wait > 0:
            await self._sleep(wait)
        request_id = next(self._ids)
        body = orjson.dumps(
            {"jsonrpc": "2.0", "method": method, "id": request_id, "params": params}
        )
        self.stats.requests[method] += 1
        try:
            async with self.session.post(
                self.url, data=body, headers=_HEADERS, timeout=self.timeout
            ) as response:
                raw = await response.read()
                status = response.status
        except aiohttp.ClientConnectorCertificateError:
            # TLS verification is on (section 1: HTTPS); a bad certificate is
            # not something a retry fixes.
            raise ProtocolError(method, "the server's TLS certificate was rejected") from None
        except aiohttp.ClientConnectorError as exc:
            # No connection was made: the API never saw the request.
            self.stats.not_sent[(method, "connect")] += 1
            raise RequestNotSent(method, "connect", type(exc).__name__) from None
        except TimeoutError:
            self.stats.unknown_outcomes[(method, "timeout")] += 1
            raise OutcomeUnknown(method, "timeout") from None
        except aiohttp.ClientError as exc:
            self.stats.unknown_outcomes[(method, "connection")] += 1
            raise OutcomeUnknown(method, "connection", type(exc).__name__) from None
        return self._read(method, request_id, status, raw)

    def _read(self, method: str, request_id: int, status: int, raw: bytes) -> Answer:
        try:
            doc = orjson.loads(raw)
        except orjson.JSONDecodeError:
            doc = None
        # Section 1: a JSON-RPC error body may come with any HTTP status.
        if isinstance(doc, dict) and isinstance(doc.get("error"), dict):
            error = make_error(method, doc["error"])
            self._observe(error.limits, error_metadata(doc["error"]))
            self._on_error(error)
            raise error
        if isinstance(doc, dict) and isinstance(doc.get("result"), dict):
            result = doc["result"]
            limits = Limits.parse(result.get("metadata"))
            self._observe(limits, result.get("metadata"))
            self.stats.answers[(method, "ok")] += 1
            self._credentials_accepted()
            return Answer(result.get("data"), limits, request_id)
        # No JSON-RPC answer: only the status is left to go by.
        if status == 429:
            self.stats.not_sent[(method, "http_429")] += 1
            raise RequestNotSent(method, "http_429")
        if 400 <= status < 500 and status != 408:
            raise ProtocolError(method, f"HTTP {status} without a JSON-RPC answer")
        # 5xx, 408, or a 2xx/3xx body that is not JSON-RPC: the request may
        # have been applied before the failure.
        reason = f"http_{status}" if status >= 300 else "bad_answer"
        self.stats.unknown_outcomes[(method, reason)] += 1
        raise OutcomeUnknown(method, reason)

    # -- bookkeeping -----------------------------------------------------------

    def _observe(self, limits: Limits | None, metadata: object) -> None:
        """Section 6 limits and section 1 version notice of one answer."""
        if limits is not None:
            self.last_limits = limits
            self.gate.observe(limits)
            slow = self.gate.spacing_by if self.gate.spacing else ""
            if slow != self._slow:
                self._slow = slow
                if slow:
                    self.log.warning(
                        "callapi_slowing_down",
                        limit_type=slow,
                        minute_remaining=limits.minute_remaining,
                        day_remaining=limits.day_remaining,
                        spacing=round(self.gate.spacing, 3),
                    )
                else:
                    self.log.info("callapi_pace_restored")
        version = metadata.get("api_version") if isinstance(metadata, dict) else None
        if isinstance(version, dict) and not self._deprecation_logged:
            # [DOC-2017]/[DOC-CM] spell it "depricated", [DOC-CG] "deprecated".
            flag = version.get(
                "current_version_depricated", version.get("current_version_deprecated")
            )
            if flag is True or (isinstance(flag, str) and flag.strip().lower() == "true"):
                self._deprecation_logged = True
                self.log.warning(
                    "callapi_version_deprecated",
                    current_version=version.get("current_version"),
                    latest_version=version.get("latest_version"),
                    hint="a deprecated version is served for 2 months: move [callapi] url"
                    " to the latest version",
                )

    def _on_error(self, error: CallApiError) -> None:
        self.stats.answers[(error.method, error.mnemonic)] += 1
        if not error.kind.known:
            key = (error.code, error.mnemonic)
            self.stats.unknown_mnemonics[key] += 1
            if key not in self._unknown_logged:
                self._unknown_logged.add(key)
                self.log.warning(
                    "callapi_unknown_mnemonic",
                    **error.as_log(),
                    policy=error.policy.value,
                    hint=error.kind.hint,
                )
        if isinstance(error, LimitExceeded):
            limits = error.limits
            reset = None
            if limits is not None:
                reset = limits.day_reset if error.limit_type == "day" else limits.minute_reset
            wait = self.gate.block(error.limit_type, reset)
            self.stats.rate_limited[error.limit_type] += 1
            self.log.warning(
                "callapi_rate_limited",
                method=error.method,
                limit_type=error.limit_type,
                limit_max_value=error.params.get("limit_max_value"),
                wait=round(wait, 3),
            )
        if error.kind.alert and not (isinstance(error, TokenRejected) and self.auth.refreshable):
            self._credentials_rejected(error)

    def _credentials_rejected(self, error: CallApiError) -> None:
        problem = f"{error.mnemonic}: {error.kind.hint}"
        if not self.credentials_ok and self.credentials_problem == problem:
            return
        self.credentials_ok = False
        self.credentials_problem = problem
        # One line per change, never one per request: this needs a human.
        self.log.error(
            "callapi_credentials_rejected",
            method=error.method,
            code=error.code,
            mnemonic=error.mnemonic,
            credentials=self.auth.kind,
            hint=error.kind.hint,
        )

    def _credentials_accepted(self) -> None:
        if self.credentials_ok:
            return
        self.credentials_ok = True
        self.credentials_problem = None
        self.log.info("callapi_credentials_accepted", credentials=self.auth.kind)


def error_metadata(error: Mapping[str, Any]) -> object:
    """`error.data.metadata`, where the simulator (and, presumably, the API) puts it."""
    data = error.get("data")
    return data.get("metadata") if isinstance(data, dict) else None


__all__ = [
    "CODE_GROUP_POLICY",
    "ERROR_KINDS",
    "ActiveCall",
    "Answer",
    "CallApiClient",
    "CallApiError",
    "CallApiFailure",
    "CallGone",
    "ClientStats",
    "ErrorKind",
    "InvalidState",
    "Leg",
    "LimitExceeded",
    "Limits",
    "OutcomeUnknown",
    "Pacing",
    "Policy",
    "ProtocolError",
    "RateGate",
    "RateLimitWait",
    "RequestNotSent",
    "RequestRefused",
    "ServerFault",
    "TokenRejected",
    "classify",
    "make_error",
    "parse_start_time",
    "succeeded",
]
