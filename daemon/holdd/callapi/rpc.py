"""The JSON-RPC 2.0 envelope of the Call API, without I/O (core).

`request_body` builds what the client POSTs (docs/callapi.md section 1: one
request object, `access_token` inside `params`); `read_reply` turns what came
back (the HTTP status and the raw body) into an `Answer` or the failure it
stands for. The client (holdd.callapi.client) does the exchange, the waiting
and the bookkeeping around these two.

An answer may quote what it was sent (section 1: `data.value` echoes a
value; a message may too), and what was sent includes the key or the
password. `read_reply` replaces every secret of the request wherever the
answer quotes it, before anything is built from the answer: no error, log
line or trace can then carry it, whatever the log's redaction knows (a
session key from `login.user` is not in its list).

A number no signed 64-bit integer holds, anywhere in an answer, is named in
`Reply.out_of_range` (the client logs it once per field); the readers of
the answer never use it as a number (`as_int`, `Limits.parse`), so an entry
of `list.calls` whose `call_session_id` is one is skipped, and a limit that
is one is taken as not given.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final

import orjson

from holdd.callapi.answers import Answer, Limits
from holdd.callapi.failures import (
    CallApiError,
    OutcomeUnknown,
    ProtocolError,
    RequestNotSent,
    make_error,
)
from holdd.core.events import beyond_int64

#: What a quoted secret becomes (the log's redaction writes the same).
REDACTED: Final = "***"
#: Request parameters whose values are secrets (section 2).
SECRET_PARAMS: Final = frozenset({"access_token", "password"})


def secrets_of(params: Mapping[str, Any]) -> tuple[str, ...]:
    """The secret values a request carries: its key, or login.user's password."""
    return tuple(
        value for name, value in params.items() if name in SECRET_PARAMS and isinstance(value, str)
    )


def request_body(method: str, request_id: int, params: Mapping[str, Any]) -> bytes:
    """The JSON-RPC request object for `method` (section 1), serialised."""
    return orjson.dumps({"jsonrpc": "2.0", "method": method, "id": request_id, "params": params})


@dataclass(frozen=True, slots=True)
class Reply:
    """What one HTTP answer says, before the client counts and logs it."""

    #: The answer; a `CallApiError` for a JSON-RPC error; an `OutcomeUnknown`
    #: (or one of its subclasses) when the body is not a JSON-RPC answer.
    outcome: Answer | CallApiError | OutcomeUnknown
    #: `result.metadata` or `error.data.metadata`: limits and the version notice.
    metadata: object = None
    #: Where the answer holds a number outside the signed 64-bit range
    #: (`result.data[].legs[].leg_id`, list positions left out).
    out_of_range: tuple[str, ...] = ()


def read_reply(
    method: str, request_id: int, status: int, raw: bytes, secrets: Iterable[str] = ()
) -> Reply:
    """Classify one answer to `method`; the HTTP status counts only without a
    JSON-RPC body. Every one of `secrets` the answer quotes is replaced."""
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        doc = None
    quoted = [s for s in secrets if len(s) >= 4 and _quotes(raw, s)]
    if quoted:
        doc = redact(doc, sorted(quoted, key=len, reverse=True))
    wide = tuple(sorted(set(_out_of_range(doc, ""))) if _WIDE.search(raw) else ())
    reply = _classify(method, request_id, status, doc)
    return Reply(reply.outcome, reply.metadata, wide) if wide else reply


def _classify(method: str, request_id: int, status: int, doc: object) -> Reply:
    # An answer to another request (a proxy mixing up connections, a replay)
    # says nothing about this one. `null` is allowed: an error to a request
    # the server could not parse far enough to read its id.
    if isinstance(doc, dict) and doc.get("id") is not None and doc.get("id") != request_id:
        return Reply(
            ProtocolError(method, f"answer id {str(doc.get('id'))[:40]!r} is not {request_id}")
        )
    # Section 1: a JSON-RPC error body may come with any HTTP status.
    if isinstance(doc, dict) and isinstance(doc.get("error"), dict):
        error = doc["error"]
        return Reply(make_error(method, error), error_metadata(error))
    if isinstance(doc, dict) and isinstance(doc.get("result"), dict):
        result = doc["result"]
        metadata = result.get("metadata")
        return Reply(Answer(result.get("data"), Limits.parse(metadata), request_id), metadata)
    # No JSON-RPC answer: only the status is left to go by.
    if status == 429:
        return Reply(RequestNotSent(method, "http_429"))
    if 400 <= status < 500 and status != 408:
        return Reply(ProtocolError(method, f"HTTP {status} without a JSON-RPC answer"))
    # 5xx, 408, or a 2xx/3xx body that is not JSON-RPC: the request may
    # have been applied before the failure.
    reason = f"http_{status}" if status >= 300 else "bad_answer"
    return Reply(OutcomeUnknown(method, reason))


#: What a number beyond 64 bits needs in the body: 19 digits in a row, or an
#: exponent (a digit then e or E). Only a body that has one is walked. Written
#: with the leading digit outside the alternation, so that the search skips
#: every other byte at once (4x faster than `[0-9]{19}|[0-9][eE]`).
_WIDE = re.compile(rb"[0-9](?:[0-9]{18}|[eE])")


def _out_of_range(value: object, path: str) -> Iterator[str]:
    """The path of every number in `value` that is outside the signed 64-bit range."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _out_of_range(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        for item in value:
            yield from _out_of_range(item, f"{path}[]")
    elif beyond_int64(value):
        yield path


def _quotes(raw: bytes, secret: str) -> bool:
    """Whether `raw` holds `secret`, as it stands or escaped inside a JSON string."""
    return secret.encode() in raw or orjson.dumps(secret)[1:-1] in raw


def redact(value: object, secrets: list[str]) -> Any:
    """`value` (parsed JSON) with every secret in its texts and keys replaced."""
    if isinstance(value, str):
        for secret in secrets:
            value = value.replace(secret, REDACTED)
        return value
    if isinstance(value, dict):
        return {redact(k, secrets): redact(v, secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v, secrets) for v in value]
    return value


def error_metadata(error: Mapping[str, Any]) -> object:
    """`error.data.metadata`, where the simulator (and, presumably, the API) puts it."""
    data = error.get("data")
    return data.get("metadata") if isinstance(data, dict) else None


__all__ = [
    "REDACTED",
    "SECRET_PARAMS",
    "Reply",
    "error_metadata",
    "read_reply",
    "redact",
    "request_body",
    "secrets_of",
]
