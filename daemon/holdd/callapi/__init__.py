"""The Call API v4.0 (JSON-RPC 2.0): what holdd sends and what it makes of the answers.

Modules, from the core out (docs/callapi.md is the reference they cite):

* `errors`: every error mnemonic, its `Policy` and operator hint;
* `failures`: the exceptions a request can end in, typed by that policy;
* `answers`: `Answer`, its `Limits`, and the `list.calls` sessions;
* `pacing`: when the next request may go out under the point limits;
* `rpc`: the JSON-RPC envelope, sans I/O: request bodies, replies classified;
* `auth`: permanent and `login.user` session keys;
* `locks`: one request in flight per call;
* `client`: `CallApiClient`, the aiohttp shell around all of the above.

The public names are re-exported here: `from holdd.callapi import X`.
"""

from __future__ import annotations

from holdd.callapi.answers import ActiveCall, Answer, Leg, Limits, parse_start_time, succeeded
from holdd.callapi.client import CallApiClient, ClientStats
from holdd.callapi.errors import CODE_GROUP_POLICY, ERROR_KINDS, ErrorKind, Policy, classify
from holdd.callapi.failures import (
    CallApiError,
    CallApiFailure,
    CallGone,
    InvalidState,
    LimitExceeded,
    OutcomeUnknown,
    ProtocolError,
    RateLimitWait,
    RequestNotSent,
    RequestRefused,
    ServerFault,
    TokenRejected,
    make_error,
)
from holdd.callapi.pacing import Pacing, RateGate
from holdd.callapi.rpc import error_metadata

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
    "error_metadata",
    "make_error",
    "parse_start_time",
    "succeeded",
]
