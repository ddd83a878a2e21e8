"""What every Call API error means: the mnemonic table and its policies (core).

Errors are typed by `code` + `data.mnemonic`, never by message text, because
the texts differ between the UIS, CoMagic and CallGear docs (docs/callapi.md
section 5). `ERROR_KINDS` classifies every mnemonic of the reference into a
`Policy` with an operator hint; docs/errors.md is the same table for humans,
and tests/daemon/test_callapi_errors_table.py keeps the two in agreement. An unknown
mnemonic gets the policy of its code group (`classify`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType
from typing import Final

from holdd.core.verdicts import RATE_LIMIT_HINT


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
#: shows the same table; tests/daemon/test_callapi_errors_table.py keeps them equal.
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
        RATE_LIMIT_HINT,
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


__all__ = ["CODE_GROUP_POLICY", "ERROR_KINDS", "ErrorKind", "Policy", "classify"]
