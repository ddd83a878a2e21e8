"""The machine: every decision holdd makes, fed with inputs, drained of
commands (core: no I/O, no clock; `now` is an argument).

It owns the call table, the rule driver (rules, pending timers, cooldowns)
and the claims of the fired-once ledger. Inputs (each a method returning
`Commands`):

    restore(state)              what the store kept, at start
    adopt(adopted)              what an instance whose lease expired left
    cooldowns_seen(fired)       cooldowns other instances recorded
    notifications(decoded)      one transport message, decoded
    snapshot(active, taken_at)  a `list.calls` listing (resync)
    timer_due(timer)            a timer the machine armed came due
    hold_settled(decision, v)   what became of a hold it asked to send
    unhold_settled(...)         ... of an unhold
    claim_refused(key)          the store already held that claim
    reload(rules)               a new rule set (validated by the shell)
    sweep()                     forget calls that ended long ago

`holdd run` (io/daemon.py), `holdd test` and `holdd simulate` (core/virtual.py)
and `holdd demo` all drive this one class; recovery after a restart is the
restored state fed to it, then the first snapshot (docs/architecture.md).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import TypeVar

from holdd.core.calls import ActiveSession, Call, CallChange, CallTable, ChangeKind
from holdd.core.claims import HOLDS, ClaimBook
from holdd.core.commands import Arm, Commands, Disarm, Metric, Outcome, SendHold, SendUnhold
from holdd.core.events import Decoded, EventKind
from holdd.core.hold_policy import Result, Verdict
from holdd.core.intake import note_rejected
from holdd.core.records import (
    AddTrace,
    Adopted,
    CallRecord,
    Claim,
    ClaimKey,
    DeleteCall,
    DropTimer,
    PutTimer,
    RecordCooldown,
    Restored,
    SaveCall,
    TraceEntry,
    TraceKind,
)
from holdd.core.recovery import adopt_work, orphans, restore_state, settle_claims
from holdd.core.results import settle_hold, settle_unhold
from holdd.core.rules.cooldowns import Cooldowns
from holdd.core.rules.driver import (
    Agenda,
    Cancelled,
    Effect,
    Hold,
    NoHold,
    Pending,
    RuleDriver,
    Timer,
    Unhold,
)
from holdd.core.rules.engine import Decision, Evaluation, RuleEngine
from holdd.core.rules.model import Rule, RuleSet
from holdd.core.rules.patterns import digits
from holdd.core.states import CallState
from holdd.core.throttle import Throttle
from holdd.core.verdicts import describe_evaluation

#: How many calls' latest evaluations and outcomes the machine keeps in memory.
RECENT = 1000
_T = TypeVar("_T")

_CHANGE_EVENTS = {
    ChangeKind.TALK_ENTERED: "call_talk_started",
    ChangeKind.TALK_LEFT: "call_talk_finished",
    ChangeKind.ENDED: "call_ended",
}
# The enums' values looked up in a dict: `.value` runs two Python functions
# of enum.py per access, and these are read for every notification and change.
_CHANGE_VALUES = {kind: kind.value for kind in ChangeKind}
_STATE_VALUES = {state: state.value for state in CallState}
_KIND_VALUES = {kind: kind.value for kind in EventKind}
#: The count of a notification received, by kind: made once, as a metric
#: increment is a frozen value.
_RECEIVED = {kind: Metric("notification", (kind.value, "")) for kind in EventKind}
# Enum members read for every change, bound once (see core/calls.py).
_ENDED = ChangeKind.ENDED
_EVENT_TRACE = TraceKind.EVENT
_EVALUATION_TRACE = TraceKind.EVALUATION


class Machine:
    def __init__(
        self,
        rules: RuleSet,
        names: Mapping[str, EventKind],
        *,
        ended_ttl: float = 600.0,
        debug: bool = False,
        full_traces: bool = True,
    ) -> None:
        #: `[log] level = "debug"`: also make the debug log records (each
        #: notification received, a call's changes, its rule decisions).
        self.debug = debug
        self.names = names
        self.table = CallTable(ended_ttl)
        self.cooldowns = Cooldowns()
        #: Evaluations can give every rule's trace (`Evaluation.trace`: what
        #: `holdd test` and `holdd simulate` print). `holdd run` passes False:
        #: it stores the rules tried, and the decisions are the same either way.
        self.full_traces = full_traces
        self.driver = RuleDriver(
            RuleEngine(rules, full_traces=full_traces), Agenda(cooldowns=self.cooldowns)
        )
        self._rules: dict[str, Rule] = rules.by_name()
        #: The fired-once ledger as far as this process needs it (core/claims.py).
        self.book = ClaimBook(self.table)
        #: Claims still open, and unhold claims, by key.
        self.claims = self.book.open
        #: Claims a crash left without a result: settled by the first snapshot.
        self.unsettled: list[Claim] = []
        #: Adopted claims: settled only by a listing taken after this time.
        self.settle_after: dict[ClaimKey, float] = {}
        #: Calls put back by `restore`, until the first snapshot.
        self.restored: set[int] = set()
        self.resynced = False
        #: The latest evaluations, by call (the demo's table, tests): the most
        #: recent `RECENT` only, since each keeps a snapshot for its full trace
        #: (the store keeps every trace for `holdd explain`).
        self.evaluations: OrderedDict[int, Evaluation] = OrderedDict()
        #: The latest hold outcomes, by call, likewise the most recent only.
        self.outcomes: OrderedDict[int, Outcome] = OrderedDict()
        self.settled = 0
        self._drops = Throttle(per=10.0, burst=5)
        self._unknown_names: set[str] = set()

    @property
    def rules(self) -> RuleSet:
        return self.driver.engine.rules

    def rule(self, name: str) -> Rule | None:
        """The active rule called `name`, if there is one."""
        return self._rules.get(name)

    # -- inputs ------------------------------------------------------------------

    def restore(self, state: Restored, now: float) -> Commands:
        out = Commands()
        restore_state(self, state, now, out)
        return out

    def adopt(self, adopted: Adopted, now: float) -> Commands:
        """Work a shared store took over from instances whose lease expired."""
        out = Commands()
        adopt_work(self, adopted, now, out)
        return out

    def cooldowns_seen(self, fired: Iterable[tuple[str, str, float]]) -> None:
        """Cooldowns other instances recorded (a shared store): a contact one
        instance held is in its rule's cooldown on every instance."""
        for rule, contact, at in fired:
            self.cooldowns.record_cooldown(rule, contact, at)

    def notifications(self, decoded: Decoded, source: str, now: float) -> Commands:
        out = Commands()
        if decoded.rejections or decoded.unknown_names:
            note_rejected(decoded, source, now, self._drops, self._unknown_names, out)
        for n in decoded.notifications:
            kind = _KIND_VALUES[n.kind]
            out.metrics.append(_RECEIVED[n.kind])
            if self.debug:
                out.log(
                    "debug",
                    "notification_received",
                    call_session_id=n.call_session_id,
                    kind=kind,
                    state=n.state,
                    source=source,
                )
            for change in self.table.apply(n, now):
                self._on_change(change, now, out)
        return out

    def snapshot(self, active: Iterable[ActiveSession], taken_at: float, now: float) -> Commands:
        out = Commands()
        listed = list(active)
        changes = self.table.reconcile(listed, taken_at, now)
        # Claims a crash left open are settled before any rule runs, so a
        # released claim can be taken again by the changes below.
        recheck = settle_claims(self, listed, taken_at, now, out) if self.unsettled else []
        out.log(
            "info",
            "resync_done",
            listed=len(listed),
            talk_found=sum(c.kind is ChangeKind.TALK_ENTERED for c in changes),
            ended=sum(c.kind is ChangeKind.ENDED for c in changes),
            known=len(self.table),
        )
        for change in changes:
            self._on_change(change, now, out)
        entered = {c.call.call_session_id for c in changes if c.kind is ChangeKind.TALK_ENTERED}
        recheck += orphans(self, entered)
        for call in {c.call_session_id: c for c in recheck}.values():
            if call.call_session_id not in entered and call.state is CallState.TALK:
                # Still in the Talk episode a crash interrupted: the rules act
                # on it again (the ledger refuses any rule that did act).
                self._on_change(CallChange(ChangeKind.TALK_ENTERED, call, "recovery"), now, out)
        if not self.resynced:
            # Timers restored from the store wait for the first listing, so
            # that they see the calls as they are now, not as they were.
            self.resynced = True
            armed = {c.timer for c in out.timers if isinstance(c, Arm)}
            out.timers.extend(Arm(t) for t in self.driver.agenda.timers.values() if t not in armed)
        return out

    def timer_due(self, timer: Timer, now: float) -> Commands:
        out = Commands()
        if self.driver.agenda.timers.get(timer.key) != timer:
            return out  # disarmed or replaced since it was armed
        out.persist.append(DropTimer(timer.kind, timer.call_session_id))
        call = self.table.get(timer.call_session_id)
        self._effects(self.driver.on_timer(timer, call, now), now, out)
        return out

    def hold_settled(
        self, decision: Decision, verdict: Verdict, now: float, *, held_since: float | None = None
    ) -> Commands:
        """What became of a hold; `held_since` when it took earlier than `now`
        (a restart found it held: it took when it was claimed)."""
        return settle_hold(self, decision, verdict, now, held_since)

    def unhold_settled(
        self, call_session_id: int, rule: str, verdict: Verdict, now: float
    ) -> Commands:
        return settle_unhold(self, call_session_id, rule, verdict, now)

    def claim_refused(self, key: ClaimKey, now: float) -> Commands:
        """The store already held this claim (the call was forgotten here, or
        another instance claimed it): nothing is sent."""
        out = Commands()
        csid, rule, action = key
        if action in HOLDS:
            self.claims.pop(key, None)
            self.book.mark_fired(csid, rule)
            # Another instance acts on this call: its rule's cooldown runs
            # here too from now (its own record reaches the others later).
            found, call = self.rule(rule), self.table.get(csid)
            if found is not None and found.cooldown is not None and call is not None:
                contact = digits(str(call.fields.get("contact_phone_number") or ""))
                self.cooldowns.record_cooldown(rule, contact, now)
        else:
            self.claims[key] = Claim(csid, rule, action, now, result="claimed_before")
        event = "unhold_skipped" if action == "unhold" else "hold_skipped"
        out.log("info", event, call_session_id=csid, rule=rule, reason="already_claimed")
        return out

    def reload(self, rules: RuleSet, now: float) -> Commands:
        """Swap the rules; pending timers, cooldowns and claims are kept."""
        out = Commands()
        old, new = self._rules, rules.by_name()
        self.driver.engine = RuleEngine(rules, full_traces=self.full_traces)
        self._rules = new
        out.log(
            "info",
            "rules_reloaded",
            rules=len(rules.rules),
            files=len(rules.files),
            added=sorted(new.keys() - old.keys()),
            removed=sorted(old.keys() - new.keys()),
            changed=sorted(n for n in new.keys() & old.keys() if _moved(new[n]) != _moved(old[n])),
        )
        return out

    def sweep(self, now: float) -> list[int]:
        """Forget calls that ended more than the table's TTL ago."""
        swept = self.table.sweep(now)
        self.cooldowns.prune(now - self.rules.longest_cooldown)
        if swept:
            gone = set(swept)
            self.book.forget(gone)
            for key in [k for k in self.settle_after if k[0] in gone]:
                del self.settle_after[key]
            for csid in swept:
                self.evaluations.pop(csid, None)
                self.outcomes.pop(csid, None)
                self.driver.agenda.acted.pop(csid, None)
        return swept

    # -- what a change and an effect do -------------------------------------------

    def _on_change(self, change: CallChange, now: float, out: Commands) -> None:
        call = change.call
        if self.debug:
            # A call's changes are debug lines: at info a held call reads as
            # its one `hold_sent` line (docs/operations.md, level policy).
            out.log(
                "debug",
                _CHANGE_EVENTS[change.kind],
                call_session_id=call.call_session_id,
                episode=call.episode,
                source=change.source,
                direction=call.fields.get("direction"),
            )
        payload = {
            "change": _CHANGE_VALUES[change.kind],
            "source": change.source,
            "episode": call.episode,
            "state": _STATE_VALUES[call.state],
        }
        self._trace(call.call_session_id, _EVENT_TRACE, payload, now, out)
        self._effects(self.driver.on_change(change, now), now, out)
        # Saved after the rules ran, in the same transaction: what was
        # decided for this episode is on disk with the call.
        if change.kind is _ENDED:
            out.persist.append(DeleteCall(call.call_session_id))
        else:
            self._save(call, out)

    def _effects(self, effects: list[Effect], now: float, out: Commands) -> None:
        for effect in effects:
            out.effects.append((effect.at, effect))
            csid = effect.call_session_id
            if isinstance(effect, Hold | Pending | NoHold):
                self._evaluated(effect.evaluation, now, out, pending=isinstance(effect, Pending))
            if isinstance(effect, Hold):
                self._hold(effect.decision, now, out)
            elif isinstance(effect, Pending):
                timer = effect.timer
                out.persist.append(PutTimer(timer))
                out.timers.append(Arm(timer))
                if self.debug:
                    out.log(
                        "debug",
                        "rule_pending",
                        call_session_id=csid,
                        rule=timer.rule,
                        due_in=round(max(0.0, timer.due_at - now), 3),
                        due_at=round(timer.due_at, 3),
                    )
            elif isinstance(effect, Unhold):
                self._unhold(effect.timer, now, out)
            elif isinstance(effect, Cancelled):
                timer = effect.timer
                out.persist.append(DropTimer(timer.kind, csid))
                out.timers.append(Disarm(timer))
                if self.debug:
                    out.log(
                        "debug",
                        "timer_cancelled",
                        call_session_id=csid,
                        rule=timer.rule,
                        timer=timer.kind.value,
                        reason=effect.reason,
                    )

    def _hold(self, decision: Decision, now: float, out: Commands) -> None:
        csid = decision.call_session_id
        rule = decision.rule.name
        out.count("rule_matched", rule)
        action = "would_hold" if decision.shadow else "hold"
        if not self.book.claim((csid, rule, action), now, out.persist):
            out.log(
                "info", "hold_skipped", call_session_id=csid, rule=rule, reason="already_claimed"
            )
            return
        self.book.mark_fired(csid, rule)
        if not decision.shadow:
            out.sends.append(SendHold(decision))
            return
        message = decision.message
        out.log(
            "info",
            "would_hold",
            call_session_id=csid,
            rule=rule,
            message_type=message.type,
            message_value=message.value,
            episode=decision.episode,
        )
        self.book.finish((csid, rule, action), "shadow", now, out.persist)
        call = self.table.get(csid)
        if call is not None:
            self._commit(call, decision, now, out)
        out.count("action", "would_hold", Result.WOULD_HOLD.value, "")
        self._remember(self.outcomes, csid, Outcome(csid, rule, message, Result.WOULD_HOLD.value))
        self.settled += 1

    def _unhold(self, timer: Timer, now: float, out: Commands) -> None:
        csid = timer.call_session_id
        action = "would_unhold" if timer.shadow else "unhold"
        if not self.book.claim((csid, timer.rule, action), now, out.persist):
            out.log(
                "info",
                "unhold_skipped",
                call_session_id=csid,
                rule=timer.rule,
                reason="already_claimed",
            )
            return
        if not timer.shadow:
            out.sends.append(SendUnhold(csid, timer.rule, timer.episode))
            return
        out.log("info", "would_unhold", call_session_id=csid, rule=timer.rule)
        self.book.finish((csid, timer.rule, action), "shadow", now, out.persist)

    def _commit(self, call: Call, decision: Decision, at: float, out: Commands) -> None:
        """A hold took (or was logged in shadow mode) at `at`: one rule has
        acted in this episode; its cooldown and unhold_after follow."""
        unhold = self.driver.commit(call, decision, at)
        if decision.rule.cooldown is not None:
            out.persist.append(RecordCooldown(decision.rule.name, decision.contact, at))
        if unhold is not None:
            out.persist.append(PutTimer(unhold))
            out.timers.append(Arm(unhold))
        self._save(call, out)

    def _evaluated(
        self, evaluation: Evaluation, now: float, out: Commands, *, pending: bool = False
    ) -> None:
        """Trace every evaluation for `holdd explain` and log it once per
        decision: `rule_matched` when the rule acts, `rule_pending` (logged by
        the caller) while its `after` runs, `no_rule_matched` otherwise; all
        three are debug lines, without the trace (`holdd explain` shows it).
        A rule that matched but cannot act is an error, logged at any level."""
        csid = evaluation.call_session_id
        self._remember(self.evaluations, csid, evaluation)
        call = self.table.get(csid)
        if call is not None:
            call.decided = call.episode
        decision = evaluation.decision
        rule = decision.rule.name if decision else evaluation.rule
        # The rules actually tried, each with the condition that failed; the
        # rest the index ruled out (a `[rule.match]` number, employee or text
        # differs), counted, not evaluated again: with or without a match,
        # the cost and the size of a trace follow the rules the call could
        # match, not all of them. (`Evaluation.trace`, every rule, is for
        # `holdd test` and `holdd simulate`, off the hot path.)
        payload: dict[str, object] = {
            "error": evaluation.error,
            "rule": rule,
            "trace": [t.as_dict() for t in evaluation.tried],
            "ruled_out": evaluation.excluded,
        }
        if evaluation.excluded_by:
            payload["ruled_out_by"] = {
                key: {"rules": n, "actual": value} for key, n, value in evaluation.excluded_by
            }
        self._trace(csid, _EVALUATION_TRACE, payload, now, out)
        if pending or not (self.debug or evaluation.error is not None):
            return
        level, event, fields = describe_evaluation(evaluation)
        out.log(level, event, call_session_id=csid, **fields)

    # -- claims, calls, traces ---------------------------------------------------

    @staticmethod
    def _remember(recent: OrderedDict[int, _T], csid: int, value: _T) -> None:
        recent[csid] = value
        recent.move_to_end(csid)
        if len(recent) > RECENT:
            recent.popitem(last=False)

    def _save(self, call: Call, out: Commands) -> None:
        csid = call.call_session_id
        fired = call.fired
        out.persist.append(
            SaveCall(
                CallRecord(
                    csid,
                    call.episode,
                    call.talk_started_at,
                    call.state,
                    call.updated_at,
                    dict(call.fields),
                    # Most calls have fired one rule or none: nothing to sort.
                    tuple(sorted(fired)) if len(fired) > 1 else fired,
                    self.driver.agenda.acted.get(csid),
                    call.decided or None,
                )
            )
        )

    def _trace(
        self, csid: int, kind: TraceKind, payload: Mapping[str, object], now: float, out: Commands
    ) -> None:
        out.persist.append(AddTrace(TraceEntry(csid, now, kind, payload)))


def _moved(rule: Rule) -> Rule:
    """The rule as compared on reload: where it is written does not change it."""
    return replace(rule, path="", line=None)


__all__ = ["Machine"]
