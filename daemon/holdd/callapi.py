"""Call API v4.0 client: JSON-RPC 2.0 over one pooled aiohttp session (shell).

Every request is one JSON-RPC object POSTed to the versioned URL with
`access_token` inside `params` (uis-call-api.md section 1). Errors are typed
by `code` + `data.mnemonic`, never by message text, because the texts differ
between the UIS, CoMagic and CallGear docs (section 5). An answer whose
outcome is unknown (timeout, dropped connection, HTTP 5xx without a JSON-RPC
body) raises `OutcomeUnknown`: for a non-idempotent method such as
`hold.call` the caller must check before sending it again.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson

from holdd.config import Secret
from holdd.errors import HolddError
from holdd.rules.model import ContactMessage

_HEADERS = {"Content-Type": "application/json; charset=UTF-8", "Accept": "application/json"}


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
        values = {}
        for name in cls.__dataclass_fields__:
            value = raw.get(name)
            values[name] = int(value) if isinstance(value, int | float) else None
        return cls(**values)


@dataclass(frozen=True, slots=True)
class Answer:
    data: Any
    limits: Limits | None
    request_id: int


class CallApiError(HolddError):
    """A JSON-RPC error answer. `mnemonic` is what holdd acts on."""

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
    ) -> None:
        super().__init__(f"{method}: {code} {mnemonic}: {message}")
        self.method = method
        self.code = code
        self.mnemonic = mnemonic
        self.message = message
        self.field = field
        self.value = value
        self.params = dict(params or {})
        self.limits = limits

    def as_log(self) -> dict[str, object]:
        out: dict[str, object] = {
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


class OutcomeUnknown(HolddError):
    """The request may or may not have been applied (timeout, 5xx, dropped)."""


class CallApiClient:
    """One client for the life of the daemon; the session is owned by the caller."""

    def __init__(
        self, session: aiohttp.ClientSession, url: str, token: Secret, timeout: float
    ) -> None:
        self.session = session
        self.url = url
        self.token = token
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self._ids = itertools.count(1)
        self.last_limits: Limits | None = None

    async def call(self, method: str, params: Mapping[str, Any]) -> Answer:
        request_id = next(self._ids)
        body = orjson.dumps(
            {
                "jsonrpc": "2.0",
                "method": method,
                "id": request_id,
                "params": {"access_token": self.token.reveal(), **params},
            }
        )
        try:
            async with self.session.post(
                self.url, data=body, headers=_HEADERS, timeout=self.timeout
            ) as response:
                raw = await response.read()
                status = response.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise OutcomeUnknown(f"{method}: {type(exc).__name__}: {exc}") from exc
        try:
            doc = orjson.loads(raw)
        except orjson.JSONDecodeError:
            doc = None
        if not isinstance(doc, dict) or ("result" not in doc and "error" not in doc):
            # Only a JSON-RPC body tells what happened; without one, a 5xx
            # may have been applied before it failed.
            raise OutcomeUnknown(f"{method}: HTTP {status} without a JSON-RPC answer")
        if "error" in doc:
            raise _error(method, doc["error"])
        result = doc["result"]
        if not isinstance(result, dict):
            raise OutcomeUnknown(f"{method}: result is not an object")
        limits = Limits.parse(result.get("metadata"))
        if limits is not None:
            self.last_limits = limits
        return Answer(result.get("data"), limits, request_id)

    async def hold_call(self, call_session_id: int, message: ContactMessage) -> Answer:
        """`hold.call` (section 3.2): only valid while the call is in TALK."""
        return await self.call(
            "hold.call",
            {
                "call_session_id": call_session_id,
                "contact_message": {"type": message.type, "value": message.value},
            },
        )


def succeeded(data: object) -> bool:
    """`result.data.success`: the docs show the string "true", accept the boolean."""
    if not isinstance(data, dict):
        return False
    success = data.get("success")
    return success is True or (isinstance(success, str) and success.lower() == "true")


def _error(method: str, raw: object) -> CallApiError:
    if not isinstance(raw, dict):
        return CallApiError(method, 0, "unknown", repr(raw)[:200])
    data = raw.get("data") if isinstance(raw.get("data"), dict) else {}
    assert isinstance(data, dict)  # noqa: S101 - narrowed just above
    code = raw.get("code")
    params = data.get("params")
    return CallApiError(
        method,
        code if isinstance(code, int) else 0,
        str(data.get("mnemonic") or "unknown"),
        str(raw.get("message") or ""),
        field=data.get("field") if isinstance(data.get("field"), str) else None,
        value=data.get("value"),
        params=params if isinstance(params, dict) else None,
        limits=Limits.parse(data.get("metadata")),
    )
