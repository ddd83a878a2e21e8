"""The log line an operator reads for each way a hold or unhold ends (core).

Event names and levels are in docs/operations.md's event table: `hold_sent`,
`hold_confirmed_by_list_calls`, `hold_confirmed_by_invalid_state`,
`hold_call_gone`, `hold_outcome_unknown`, `hold_failed` (a warning when the
call had simply left Talk, an error when someone must look), `unhold_sent`,
`unhold_skipped`, `unhold_failed`.
"""

from __future__ import annotations

from holdd.core.hold_policy import Result, Verdict
from holdd.core.rules.engine import Decision, Evaluation

#: What an operator should do when a hold was rate limited (docs/errors.md).
RATE_LIMIT_HINT = (
    "the account's Call API points per minute or day are used up: holdd waits for the"
    " reset; raise the limits in the account's tariff options if this recurs"
)

Line = tuple[str, str, dict[str, object]]
# Enum members read for every hold settled, bound once (see core/calls.py).
_HELD = Result.HELD


def describe_hold(decision: Decision, v: Verdict) -> Line:
    message = decision.message
    if v.result is _HELD:
        fields: dict[str, object] = {
            "message_type": message.type,
            "message_value": message.value,
            "episode": decision.episode,
            "attempts": v.attempts,
        }
        if v.confirmed_by is None:
            return "info", "hold_sent", {"request_id": v.request_id, **fields}
        return "info", f"hold_confirmed_by_{v.confirmed_by}", fields
    if v.result is Result.CALL_GONE:
        return (
            "info",
            "hold_call_gone",
            {"attempts": v.attempts, "mnemonic": v.mnemonic, "confirmed_by": v.confirmed_by},
        )
    if v.result is Result.UNKNOWN:
        return (
            "error",
            "hold_outcome_unknown",
            {
                "reason": v.reason,
                "mnemonic": v.mnemonic,
                "attempts": v.attempts,
                "hint": "whether the call was put on hold could not be found out before"
                " [callapi] action_deadline, and the call is no longer known to be talking",
            },
        )
    if v.result is Result.NOT_IN_TALK:
        return (
            "warning",
            "hold_failed",
            {
                "reason": "not_in_talk",
                "call_state": v.call_state,
                "attempts": v.attempts,
                "hint": "the call left Talk before the hold could be sent",
            },
        )
    if v.result is Result.RATE_LIMITED:
        return (
            "error",
            "hold_failed",
            {
                "reason": "rate_limited",
                "mnemonic": "limit_exceeded",
                "attempts": v.attempts,
                "hint": RATE_LIMIT_HINT,
            },
        )
    if v.error is not None:
        # invalid_state is the API's normal answer for a call that left
        # Talk: a warning; anything else needs someone to look.
        return (
            "warning" if v.invalid_state else "error",
            "hold_failed",
            {
                **v.error,
                "call_state": v.call_state,
                "attempts": v.attempts,
                "request_message_type": message.type,
            },
        )
    return (
        "error",
        "hold_failed",
        {
            "reason": v.reason,
            "answer": v.data,
            "attempts": v.attempts,
            "hint": "see reason; the API's answer is in `answer` when there was one",
        },
    )


def describe_evaluation(evaluation: Evaluation) -> Line:
    """The one line of a decision. It names the rule and counts the rules
    tried; the trace itself (each rule with the condition that failed) is
    stored for `holdd explain`, never rendered into a log line."""
    decision = evaluation.decision
    counts: dict[str, object] = {"tried": len(evaluation.tried), "ruled_out": evaluation.excluded}
    if evaluation.error is not None:
        return "error", "hold_skipped", {"rule": evaluation.rule, "reason": evaluation.error}
    if decision is None:
        return "debug", "no_rule_matched", counts
    return (
        "debug",
        "rule_matched",
        {"rule": decision.rule.name, "mode": decision.rule.mode.value, **counts},
    )


def describe_unhold(v: Verdict) -> Line:
    if v.result is Result.UNHELD:
        return "info", "unhold_sent", {"attempts": v.attempts}
    if v.result in (Result.NOT_ON_HOLD, Result.CALL_GONE):
        return "info", "unhold_skipped", {"reason": v.result.value}
    fields: dict[str, object] = dict(v.error) if v.error is not None else {"reason": v.reason}
    return "error", "unhold_failed", {**fields, "attempts": v.attempts}


__all__ = ["RATE_LIMIT_HINT", "describe_evaluation", "describe_hold", "describe_unhold"]
