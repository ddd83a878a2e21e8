"""What a Call API request can end in other than an answer: one exception tree.

`CallApiError` is a JSON-RPC error answer, subclassed by its `Policy`
(holdd.callapi.errors); `OutcomeUnknown` is an exchange without one, with
`RequestNotSent` (certainly not applied) and `ProtocolError` (not the Call
API answering) below it. `make_error` turns an `error` member into the
typed exception (docs/callapi.md section 1, Error shape).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Final

from holdd.callapi.answers import Limits
from holdd.callapi.errors import ErrorKind, Policy, classify
from holdd.core.errors import HolddError

#: Parameters whose values are secrets: an error's `data.value` echoing one of
#: them (section 1: "`data.value` echoes what the client sent") is dropped.
_SECRET_FIELDS: Final = frozenset({"access_token", "password", "login"})


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


__all__ = [
    "CallApiError",
    "CallApiFailure",
    "CallGone",
    "InvalidState",
    "LimitExceeded",
    "OutcomeUnknown",
    "ProtocolError",
    "RateLimitWait",
    "RequestNotSent",
    "RequestRefused",
    "ServerFault",
    "TokenRejected",
    "make_error",
]
