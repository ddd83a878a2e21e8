"""The machine on a virtual clock, with no API and no store (core): what
`holdd test` and `holdd simulate` run.

    decode -> Machine.notifications -> commands -> (virtual) executor

Timers the machine arms fire at their due time, in order, before any
notification that arrives at or after that moment (so a call that ends at the
very moment its `after` runs out is held first). Every hold and unhold the
machine asks for is taken to succeed at once, and its result goes back into
the machine exactly as the daemon's runner reports a real one.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping
from dataclasses import dataclass

from holdd.core.commands import Arm, Commands, SendHold
from holdd.core.events import DEFAULT_EVENT_NAMES, Decoded, EventKind, decode
from holdd.core.hold_policy import Result, Verdict
from holdd.core.machine import Machine
from holdd.core.rules.driver import Effect, Timer, TimerKind
from holdd.core.rules.model import RuleSet


@dataclass(frozen=True, slots=True)
class Happened:
    """One effect of the rule driver, with the call it is about."""

    at: float
    call_session_id: int
    effect: Effect


class VirtualRun:
    def __init__(
        self,
        rules: RuleSet,
        names: Mapping[str, EventKind] = DEFAULT_EVENT_NAMES,
        start: float = 0.0,
    ) -> None:
        self.machine = Machine(rules, names)
        self.names = names
        self.now = start
        self.happened: list[Happened] = []
        self.commands = Commands()
        self._heap: list[tuple[float, int, Timer]] = []
        self._armed: dict[tuple[TimerKind, int], Timer] = {}
        self._seq = 0

    def feed(self, raw: str | bytes, at: float) -> Decoded:
        """One transport message arriving at `at` (never earlier than the last)."""
        self.advance(at)
        decoded = decode(raw, self.names)
        self._run(self.machine.notifications(decoded, "file", self.now))
        return decoded

    def advance(self, until: float) -> None:
        """Fire every timer due by `until`, in order; the clock ends at `until`."""
        while self._heap and self._heap[0][0] <= until:
            due, _seq, timer = heapq.heappop(self._heap)
            if self._armed.get(timer.key) != timer:
                continue  # disarmed or replaced
            del self._armed[timer.key]
            self.now = max(self.now, due)
            self._run(self.machine.timer_due(timer, self.now))
        self.now = max(self.now, until)

    def finish(self) -> None:
        """Fire the timers still pending: the calls are taken to go on talking."""
        while self._armed:
            self.advance(min(t.due_at for t in self._armed.values()))

    def _run(self, commands: Commands) -> None:
        self.commands.logs.extend(commands.logs)
        self.commands.metrics.extend(commands.metrics)
        for at, effect in commands.effects:
            self.happened.append(Happened(at, effect.call_session_id, effect))
        for change in commands.timers:
            timer = change.timer
            if isinstance(change, Arm):
                self._armed[timer.key] = timer
                self._seq += 1
                heapq.heappush(self._heap, (timer.due_at, self._seq, timer))
            elif self._armed.get(timer.key) == timer:
                del self._armed[timer.key]
        for send in commands.sends:
            if isinstance(send, SendHold):
                verdict = Verdict(Result.HELD, attempts=1)
                self._run(self.machine.hold_settled(send.decision, verdict, self.now))
            else:
                verdict = Verdict(Result.UNHELD, attempts=1)
                self._run(
                    self.machine.unhold_settled(send.call_session_id, send.rule, verdict, self.now)
                )


__all__ = ["Happened", "VirtualRun"]
