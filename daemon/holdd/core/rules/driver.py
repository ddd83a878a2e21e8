"""From call changes and timers to what must happen now (core).

The engine answers "which rule acts on this call, and when"; the driver turns
that into effects over time, the same way for the daemon (real timers, the
Call API), `holdd test` and `holdd simulate` (a virtual clock, no API):

    for change in table.apply(notification, now):
        for effect in driver.on_change(change, now): ...
    # when a timer the driver asked for comes due:
    for effect in driver.on_timer(timer, table.get(timer.call_session_id), now): ...
    # when a hold has been sent (or a shadow hold logged):
    unhold_timer = driver.commit(call, decision, now)

Effects: `Hold` (send hold.call now, or log would_hold for a shadow rule),
`Pending` (a rule matched but its `after` is still running: arm `timer`),
`NoHold` (no rule can act; the evaluation says why), `Unhold` (send
unhold.call now), `Cancelled` (disarm `timer`: the call left TALK or ended).

Rules (docs/rules.md section 2): at most one rule acts per Talk episode; a rule
that is pending acts only if the call is still in the same Talk episode and in
TALK at `due_at`, and the rules are evaluated again then (so a schedule or
cooldown is judged at the moment of acting); `unhold_after` counts from the
commit and is cancelled when the call leaves TALK or ends.

Everything the driver must remember is in the `Agenda` - pending timers,
the episode each call was acted on, cooldown records - plain data that the
daemon keeps across a rule reload (swap `driver.engine`, keep the agenda)
and may persist across a restart.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from holdd.core.calls import Call, CallChange, ChangeKind
from holdd.core.rules.cooldowns import Cooldowns
from holdd.core.rules.engine import Decision, Evaluation, RuleEngine
from holdd.core.states import TALKING, CallState


class TimerKind(StrEnum):
    #: A rule's `after` runs out: evaluate the rules again and act.
    AFTER = "after"
    #: `[rule.then] unhold_after` runs out: send unhold.call.
    UNHOLD = "unhold"


#: Every timer kind, in definition order: iterating the enum class itself
#: runs Python code in enum.py on each pass, and `_cancel` runs on every change.
_TIMER_KINDS = tuple(TimerKind)
# Enum members read for every change, bound once (see core/calls.py).
_TALK_ENTERED = ChangeKind.TALK_ENTERED
_ENDED = ChangeKind.ENDED


@dataclass(frozen=True, slots=True)
class Timer:
    kind: TimerKind
    call_session_id: int
    rule: str
    due_at: float
    #: The Talk episode the timer belongs to; it is void in any other.
    episode: int
    shadow: bool = False

    @property
    def key(self) -> tuple[TimerKind, int]:
        """A call has at most one timer of each kind."""
        return (self.kind, self.call_session_id)


@dataclass(frozen=True, slots=True)
class Hold:
    """Send hold.call now (or log would_hold when the rule is in shadow mode)."""

    decision: Decision
    evaluation: Evaluation
    at: float

    @property
    def call_session_id(self) -> int:
        return self.decision.call_session_id


@dataclass(frozen=True, slots=True)
class Pending:
    """A rule matched and acts at `timer.due_at` if the call is still talking."""

    timer: Timer
    evaluation: Evaluation
    at: float

    @property
    def call_session_id(self) -> int:
        return self.timer.call_session_id


@dataclass(frozen=True, slots=True)
class NoHold:
    """No rule can act: `evaluation.trace` says why, or `evaluation.error`
    names what stops the matching rule (a TTS too long after placeholders)."""

    evaluation: Evaluation
    at: float

    @property
    def call_session_id(self) -> int:
        return self.evaluation.call_session_id


@dataclass(frozen=True, slots=True)
class Unhold:
    """Send unhold.call now (log would_unhold when `timer.shadow`)."""

    timer: Timer
    at: float

    @property
    def call_session_id(self) -> int:
        return self.timer.call_session_id


@dataclass(frozen=True, slots=True)
class Cancelled:
    """Disarm `timer`: `reason` is talk_left, ended, new_episode or not_on_hold."""

    timer: Timer
    reason: str
    at: float

    @property
    def call_session_id(self) -> int:
        return self.timer.call_session_id


Effect = Hold | Pending | NoHold | Unhold | Cancelled


@dataclass(slots=True)
class Agenda:
    """What the driver remembers, as data."""

    timers: dict[tuple[TimerKind, int], Timer] = field(default_factory=dict)
    #: call_session_id -> the Talk episode in which a rule acted on it.
    acted: dict[int, int] = field(default_factory=dict)
    cooldowns: Cooldowns = field(default_factory=Cooldowns)


class RuleDriver:
    def __init__(self, engine: RuleEngine, agenda: Agenda | None = None) -> None:
        self.engine = engine
        self.agenda = agenda if agenda is not None else Agenda()

    def on_change(self, change: CallChange, now: float) -> list[Effect]:
        call = change.call
        kind = change.kind
        if kind is _TALK_ENTERED:
            effects: list[Effect] = self._cancel(call.call_session_id, "new_episode", now)
            return effects + self._decide(call, now)
        reason = "ended" if kind is _ENDED else "talk_left"
        cancelled = self._cancel(call.call_session_id, reason, now)
        if kind is _ENDED:
            self.agenda.acted.pop(call.call_session_id, None)
        return cancelled

    def on_timer(self, timer: Timer, call: Call | None, now: float) -> list[Effect]:
        """`timer` came due (`now` >= its due_at, or a little before on a real
        loop: the due time is used then)."""
        if self.agenda.timers.get(timer.key) != timer:
            return []  # cancelled or replaced since it was armed
        del self.agenda.timers[timer.key]
        now = max(now, timer.due_at)
        if call is None or call.episode != timer.episode or call.state is CallState.ENDED:
            return [Cancelled(timer, "ended", now)]
        if timer.kind is TimerKind.AFTER:
            if call.state not in TALKING:
                return [Cancelled(timer, "talk_left", now)]
            return self._decide(call, now)
        on_hold = call.state is CallState.HOLD or (timer.shadow and call.state in TALKING)
        if not on_hold:
            return [Cancelled(timer, "not_on_hold", now)]
        return [Unhold(timer, now)]

    def commit(self, call: Call, decision: Decision, now: float) -> Timer | None:
        """The hold of `decision` was sent (or, in shadow mode, logged) at `now`.

        Records that a rule acted in this episode and on this call, and the
        cooldown; returns the unhold timer to arm, if the rule has one.
        """
        rule = decision.rule
        self.agenda.acted[decision.call_session_id] = decision.episode
        if rule.name not in call.fired:
            call.fired = (*call.fired, rule.name)
        if rule.cooldown is not None:
            self.agenda.cooldowns.record_cooldown(rule.name, decision.contact, now)
        if decision.unhold_after is None:
            return None
        timer = Timer(
            TimerKind.UNHOLD,
            decision.call_session_id,
            rule.name,
            now + decision.unhold_after,
            decision.episode,
            decision.shadow,
        )
        self.agenda.timers[timer.key] = timer
        return timer

    def _decide(self, call: Call, now: float) -> list[Effect]:
        if self.agenda.acted.get(call.call_session_id) == call.episode:
            return []  # one rule per Talk episode, and one has acted
        evaluation = self.engine.evaluate(call, now, self.agenda.cooldowns)
        decision = evaluation.decision
        if decision is None:
            return [NoHold(evaluation, now)]
        if decision.ready(now):
            return [Hold(decision, evaluation, now)]
        timer = Timer(
            TimerKind.AFTER,
            call.call_session_id,
            decision.rule.name,
            decision.due_at,
            call.episode,
            decision.shadow,
        )
        self.agenda.timers[timer.key] = timer
        return [Pending(timer, evaluation, now)]

    def _cancel(self, call_session_id: int, reason: str, now: float) -> list[Effect]:
        out: list[Effect] = []
        timers = self.agenda.timers
        if not timers:
            return out
        for kind in _TIMER_KINDS:
            timer = timers.pop((kind, call_session_id), None)
            if timer is not None:
                out.append(Cancelled(timer, reason, now))
        return out
