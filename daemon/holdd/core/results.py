"""What the machine does with a request's result (core): the ledger's row
finished, the call moved, what follows a hold armed, the line an operator
reads, the counter, the trace. The machine's own steps (core/machine.py),
in a module of their own."""

from __future__ import annotations

from typing import TYPE_CHECKING

from holdd.core.commands import Commands, Outcome
from holdd.core.hold_policy import Result, Verdict
from holdd.core.records import TraceKind
from holdd.core.rules.engine import Decision
from holdd.core.states import TALKING, CallState
from holdd.core.verdicts import describe_hold, describe_unhold

if TYPE_CHECKING:
    from holdd.core.machine import Machine

# Enum members read for every hold settled, bound once (see core/calls.py).
_HELD = Result.HELD
_ENDED = CallState.ENDED
_ACTION_TRACE = TraceKind.ACTION


def settle_hold(
    m: Machine, decision: Decision, verdict: Verdict, now: float, held_since: float | None
) -> Commands:
    """What became of a hold (Machine.hold_settled)."""
    out = Commands()
    csid = decision.call_session_id
    rule = decision.rule.name
    key = (csid, rule, "hold")
    result = verdict.result
    # Read once: an enum's `.value` is a Python-level property.
    value = result.value
    call = m.table.get(csid)
    claim = m.book.open.get(key)
    if claim is not None and call is not None and call.state in TALKING and transient(verdict):
        # Nothing is given up while the call talks: the claim stays open, and
        # the next `list.calls` settles it as after a crash (core/recovery.py):
        # held if an attempt took, released and sent again if the call talks.
        m.unsettled.append(claim)
        reason = verdict.reason or verdict.mnemonic or value
        out.log(
            "warning",
            "hold_parked",
            call_session_id=csid,
            rule=rule,
            result=value,
            reason=reason,
            attempts=verdict.attempts,
            hint="the Call API did not take the hold; the next list.calls settles it:"
            " found held, or sent again while the call talks",
        )
        out.count("action", "hold", "parked", verdict.mnemonic or "")
        return out
    recorded = value if result is _HELD else (verdict.mnemonic or value)
    m.book.finish(key, recorded, now, out.persist)
    level, event, fields = describe_hold(decision, verdict)
    out.log(level, event, call_session_id=csid, rule=rule, **fields)
    if result is _HELD and call is not None and call.state is not _ENDED:
        if call.state in TALKING:
            m.table.held(csid, now)
        m._commit(call, decision, now if held_since is None else held_since, out)
    elif result is Result.CALL_GONE and call is not None:
        # Section 5 call_session_not_found: the session is over.
        for change in m.table.move(call, CallState.ENDED, now, source="callapi"):
            m._on_change(change, now, out)
    out.count("action", "hold", value, verdict.mnemonic or "")
    message = decision.message
    m._trace(
        csid,
        _ACTION_TRACE,
        {
            "rule": rule,
            "action": "hold",
            "result": value,
            "mnemonic": verdict.mnemonic,
            "message": {"type": message.type, "value": message.value},
        },
        now,
        out,
    )
    m._remember(
        m.outcomes,
        csid,
        Outcome(
            csid,
            rule,
            message,
            value,
            verdict.mnemonic,
            verdict.attempts,
            verdict.confirmed_by,
        ),
    )
    #: Every hold settled, for those counting (bench, tests).
    m.settled += 1
    return out


def transient(verdict: Verdict) -> bool:
    """A result the API's return may change: no answer, an unknown outcome, a
    server fault or the rate limit outlasting the action's deadline. Final:
    held, the call gone or out of Talk, a refusal of the request itself."""
    if verdict.result in (Result.UNKNOWN, Result.RATE_LIMITED):
        return True
    if verdict.result is not Result.FAILED:
        return False
    if verdict.error is not None:
        return verdict.error.get("policy") in ("retry", "rate-limit")
    return verdict.reason not in (None, "success_not_true", "crashed")


def settle_unhold(
    m: Machine, call_session_id: int, rule: str, verdict: Verdict, now: float
) -> Commands:
    """What became of an unhold (Machine.unhold_settled)."""
    out = Commands()
    result = verdict.result
    m.book.finish((call_session_id, rule, "unhold"), result.value, now, out.persist)
    level, event, fields = describe_unhold(verdict)
    out.log(level, event, call_session_id=call_session_id, rule=rule, **fields)
    call = m.table.get(call_session_id)
    if call is not None:
        if result is Result.UNHELD:
            m.table.unheld(call_session_id, now)
            m._save(call, out)
        elif result is Result.CALL_GONE:
            for change in m.table.move(call, CallState.ENDED, now, source="callapi"):
                m._on_change(change, now, out)
    out.count("action", "unhold", result.value, "")
    payload = {"rule": rule, "action": "unhold", "result": result.value}
    m._trace(call_session_id, TraceKind.ACTION, payload, now, out)
    return out
