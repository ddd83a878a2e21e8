"""Settling the claims a crash left without a result (core).

Before anything is sent again (holdd-spec.md section 6), the first
`list.calls` after a start says what each unfinished request did:

* a hold, and the call is on hold: it took. The same `hold_settled` path as
  a live answer runs, with the hold taken at the claim's time (its
  `unhold_after` and cooldown count from then).
* a hold, and the call still talks: it did not take; the claim is released
  and the call returned for the rules to act on again.
* an unhold, and the call is still on hold: it did not take; the claim is
  released and the unhold armed to go out now.
* an unhold, and the call talks: it took.
* anything else (the call is gone, in another state): the claim is closed
  with what was found.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from holdd.core.calls import ActiveSession, Call
from holdd.core.commands import Commands
from holdd.core.hold_policy import Result, Verdict
from holdd.core.records import FinishClaim
from holdd.core.states import CallState

if TYPE_CHECKING:
    from holdd.core.machine import Machine


def settle_claims(
    machine: Machine, listed: Sequence[ActiveSession], now: float, out: Commands
) -> list[Call]:
    """Settle `machine.unsettled`; return the calls the rules must see again."""
    by_id = {c.call_session_id: c for c in listed}
    recheck: list[Call] = []
    for claim in machine.unsettled:
        csid, rule, action = claim.key
        session = by_id.get(csid)
        call = machine.table.get(csid)
        api_state = session.state if session is not None else CallState.ENDED
        ids = {"call_session_id": csid, "rule": rule, "action": action}
        if action == "hold" and api_state is CallState.TALK and call is not None:
            machine.release(claim.key, out)
            call.fired.discard(rule)
            out.log("warning", "claim_released", api_state=api_state.value, **ids)
            recheck.append(call)
            continue
        if action == "unhold" and api_state is CallState.HOLD and call is not None:
            machine.release(claim.key, out)
            out.log("warning", "claim_released", api_state=api_state.value, **ids)
            machine.rearm_unhold(call, rule, now, out)
            continue
        if action == "hold" and api_state is CallState.HOLD:
            result = "held"
            decision = machine.decision_for(call, rule) if call is not None else None
            if decision is not None:
                verdict = Verdict(Result.HELD, confirmed_by="list_calls")
                out.extend(
                    machine.hold_settled(decision, verdict, now, held_since=claim.claimed_at)
                )
                out.log("info", "claim_resolved", result=result, **ids)
                continue
            if call is not None:
                # The rule was removed since: the call is held all the same.
                machine.mark_held(call, rule, now)
        elif action == "unhold" and api_state is CallState.TALK:
            result = "unheld"
        else:
            result = f"api_state_{api_state.value.lower()}"
        claim.result = result
        claim.finished_at = now
        out.persist.append(FinishClaim(claim.key, result, now))
        out.log("info", "claim_resolved", result=result, **ids)
    machine.unsettled = []
    return recheck
