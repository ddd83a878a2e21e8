"""Settling the claims a crash left without a result (core).

Before anything is sent again (docs/architecture.md, docs/operations.md section 8), the first
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
from holdd.core.claims import HOLDS
from holdd.core.commands import Arm, Commands
from holdd.core.hold_policy import Result, Verdict
from holdd.core.records import Adopted, CallRecord, Claim, DropTimer, PutTimer, Restored
from holdd.core.rules.driver import Timer, TimerKind
from holdd.core.rules.engine import Decision, RuleEngine
from holdd.core.states import TALKING, CallState

if TYPE_CHECKING:
    from holdd.core.machine import Machine


def settle_claims(
    machine: Machine, listed: Sequence[ActiveSession], taken_at: float, now: float, out: Commands
) -> list[Call]:
    """Settle `machine.unsettled` as far as a listing taken at `taken_at`
    may (an adopted claim waits for one taken after its `settle_after`);
    return the calls the rules must see again."""
    by_id = {c.call_session_id: c for c in listed}
    recheck: list[Call] = []
    due: list[Claim] = []
    waiting: list[Claim] = []
    for claim in machine.unsettled:
        (waiting if machine.settle_after.get(claim.key, 0.0) > taken_at else due).append(claim)
    for claim in due:
        machine.settle_after.pop(claim.key, None)
        csid, rule, action = claim.key
        session = by_id.get(csid)
        call = machine.table.get(csid)
        api_state = session.state if session is not None else CallState.ENDED
        ids = {"call_session_id": csid, "rule": rule, "action": action}
        if action == "hold" and api_state is CallState.TALK and call is not None:
            machine.book.release(claim.key, out.persist)
            call.fired = tuple(r for r in call.fired if r != rule)
            out.log("warning", "claim_released", api_state=api_state.value, **ids)
            recheck.append(call)
            continue
        if action == "unhold" and api_state is CallState.HOLD and call is not None:
            machine.book.release(claim.key, out.persist)
            out.log("warning", "claim_released", api_state=api_state.value, **ids)
            rearm_unhold(machine, call, rule, now, out)
            continue
        if action == "hold" and api_state is CallState.HOLD:
            result = "held"
            decision = decision_for(machine, call, rule) if call is not None else None
            if decision is not None:
                verdict = Verdict(Result.HELD, confirmed_by="list_calls")
                out.extend(
                    machine.hold_settled(decision, verdict, now, held_since=claim.claimed_at)
                )
                out.log("info", "claim_resolved", result=result, **ids)
                continue
            if call is not None:
                # The rule was removed since: the call is held all the same.
                mark_held(machine, call, rule, now)
        elif action == "unhold" and api_state is CallState.TALK:
            result = "unheld"
            if call is not None:
                machine.table.unheld(csid, now)
        else:
            result = f"api_state_{api_state.value.lower()}"
        machine.book.finish(claim.key, result, now, out.persist)
        out.log("info", "claim_resolved", result=result, **ids)
    machine.unsettled = waiting
    return recheck


def put_back(machine: Machine, record: CallRecord, now: float) -> Call:
    """One call as the store kept it, with the rules that acted on it."""
    call = machine.table.restore(
        record.call_session_id,
        record.state,
        record.episode,
        record.talk_started_at,
        now,
        record.fields,
    )
    call.fired = tuple(record.fired)
    call.decided = record.decided_episode or 0
    if record.acted_episode is not None:
        machine.driver.agenda.acted[call.call_session_id] = record.acted_episode
    return call


def restore_state(machine: Machine, state: Restored, now: float, out: Commands) -> None:
    """Put back what the store kept: calls (with the rules that acted on
    them), claims, cooldowns, and the timers of calls still known."""
    for record in state.calls:
        call = put_back(machine, record, now)
        machine.restored.add(call.call_session_id)
    for claim in state.claims:
        if claim.result is None:
            machine.claims[claim.key] = claim
            machine.unsettled.append(claim)
        elif claim.action in HOLDS:
            # A schema 1 row may lack the call's `fired`: the claim says it.
            machine.book.mark_fired(claim.call_session_id, claim.rule)
        else:
            machine.claims[claim.key] = claim
    for rule, contact, at in state.cooldowns:
        machine.cooldowns.record_cooldown(rule, contact, at)
    # Armed by the first snapshot, which sees the calls as they are now.
    timers = len(take_timers(machine, state.timers, now, out))
    if state.calls or timers:
        out.log("info", "state_restored", calls=len(state.calls), timers=timers)


def take_timers(
    machine: Machine, timers: Sequence[Timer], now: float, out: Commands
) -> list[Timer]:
    """Put stored timers on the agenda; drop those of unknown calls or of
    rules gone since. Return the ones taken.

    An unhold timer (not a shadow one) is proof that its rule's hold took:
    it is stored with the hold's outcome and dropped when the call is
    unheld or leaves Talk. With a shared store the call itself may say
    otherwise: an instance whose claim was refused saw only the Talk, and
    each instance writes the call's row as it sees it. So a call still in
    the timer's Talk episode is taken as held here, and the unhold goes out
    when due instead of being cancelled as "not on hold".
    """
    taken = []
    for timer in timers:
        call = machine.table.get(timer.call_session_id)
        if call is None or machine.rule(timer.rule) is None:
            out.persist.append(DropTimer(timer.kind, timer.call_session_id))
            continue
        if (
            timer.kind is TimerKind.UNHOLD
            and not timer.shadow
            and call.state in TALKING
            and call.episode == timer.episode
        ):
            mark_held(machine, call, timer.rule, now)
        machine.driver.agenda.timers[timer.key] = timer
        taken.append(timer)
    return taken


def adopt_work(machine: Machine, adopted: Adopted, now: float, out: Commands) -> None:
    """Take over what instances whose lease expired left (a shared store):
    their open claims are settled like a restart's, by the first listing
    taken after `now + settle_in`; their timers are armed here."""
    for record in adopted.calls:
        if machine.table.get(record.call_session_id) is None:
            put_back(machine, record, now)
    settle_at = now + adopted.settle_in
    for claim in adopted.claims:
        machine.claims[claim.key] = claim
        machine.unsettled.append(claim)
        machine.settle_after[claim.key] = settle_at
    taken = take_timers(machine, adopted.timers, now, out)
    if machine.resynced:
        out.timers.extend(Arm(timer) for timer in taken)
    timers = len(taken)
    out.log(
        "warning",
        "instance_work_adopted",
        instances=adopted.instances,
        claims=len(adopted.claims),
        timers=timers,
        settle_in=round(adopted.settle_in, 3),
    )


def orphans(machine: Machine, entered: set[int]) -> list[Call]:
    """Calls restored in Talk whose rules never ran for this episode and that
    nothing will act on (no pending timer, no hold claim): written by a holdd
    that saved a call apart from its decision (schema 1). The rules run on
    them once more. A call saved with its decision (this holdd: one
    transaction) is never one."""
    restored, machine.restored = machine.restored, set()
    timed = {t.call_session_id for t in machine.driver.agenda.timers.values()}
    held = {k[0] for k in machine.claims if k[2] in HOLDS}
    out = []
    for csid in restored - entered - timed - held:
        call = machine.table.get(csid)
        fresh = call is not None and not call.fired and call.decided != call.episode
        if call is not None and fresh and call.state is CallState.TALK:
            out.append(call)
    return out


def decision_for(machine: Machine, call: Call, rule_name: str) -> Decision | None:
    """The decision `rule_name` makes for `call` (a hold a crash interrupted
    that took); None when the rule is gone."""
    rule = machine.rule(rule_name)
    if rule is None:
        return None
    return RuleEngine.decision(call, rule, call.talk_started_at or 0.0)


def rearm_unhold(machine: Machine, call: Call, rule: str, now: float, out: Commands) -> None:
    timer = Timer(TimerKind.UNHOLD, call.call_session_id, rule, now, call.episode)
    machine.driver.agenda.timers[timer.key] = timer
    out.persist.append(PutTimer(timer))
    out.timers.append(Arm(timer))


def mark_held(machine: Machine, call: Call, rule: str, now: float) -> None:
    """The hold of `rule` is known to have taken (a listing found it for a
    rule removed since, or its unhold timer proves it): the call is held."""
    if rule not in call.fired:
        call.fired = (*call.fired, rule)
    machine.driver.agenda.acted[call.call_session_id] = call.episode
    if call.state in TALKING:
        machine.table.held(call.call_session_id, now)
