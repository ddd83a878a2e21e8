"""The daemon's core path on a virtual clock (core): notifications in, effects
out, no sockets, no loop, no API.

    decode -> CallTable.apply -> RuleDriver -> effects

Timers the driver asks for fire at their due time, in order, before any
notification that arrives at or after that moment (so a call that ends at the
very moment its `after` runs out is held first). Every hold is taken to
succeed at once (the call goes on hold; a shadow rule's call stays in TALK)
and every unhold too. Used by `holdd test` and `holdd simulate`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from holdd.core.calls import CallTable
from holdd.core.events import DEFAULT_EVENT_NAMES, Decoded, EventKind, decode
from holdd.core.rules.driver import Effect, Hold, RuleDriver, Unhold
from holdd.core.rules.engine import RuleEngine


@dataclass(frozen=True, slots=True)
class Happened:
    """One effect, with the call it is about."""

    at: float
    call_session_id: int
    effect: Effect


class Replay:
    def __init__(
        self,
        engine: RuleEngine,
        names: Mapping[str, EventKind] = DEFAULT_EVENT_NAMES,
        start: float = 0.0,
    ) -> None:
        self.table = CallTable()
        self.driver = RuleDriver(engine)
        self.names = names
        self.now = start
        self.happened: list[Happened] = []

    def feed(self, raw: str | bytes, at: float) -> Decoded:
        """One transport message arriving at `at` (never earlier than the last)."""
        self.advance(at)
        decoded = decode(raw, self.names)
        for n in decoded.notifications:
            for change in self.table.apply(n, self.now):
                self._run(self.driver.on_change(change, self.now))
        return decoded

    def advance(self, until: float) -> None:
        """Fire every timer due by `until`, in order; the clock ends at `until`."""
        agenda = self.driver.agenda
        while (timer := agenda.next_timer()) is not None and timer.due_at <= until:
            self.now = max(self.now, timer.due_at)
            call = self.table.get(timer.call_session_id)
            self._run(self.driver.on_timer(timer, call, self.now))
        self.now = max(self.now, until)

    def finish(self) -> None:
        """Fire the timers still pending: the calls are taken to go on talking."""
        agenda = self.driver.agenda
        while (timer := agenda.next_timer()) is not None:
            self.advance(timer.due_at)

    def _run(self, effects: list[Effect]) -> None:
        for effect in effects:
            csid = effect.call_session_id
            self.happened.append(Happened(self.now, csid, effect))
            if isinstance(effect, Hold):
                decision = effect.decision
                call = self.table.get(csid)
                if call is None:
                    continue
                if not decision.shadow:
                    self.table.held(csid, self.now)
                self.driver.commit(call, decision, self.now)
            elif isinstance(effect, Unhold) and not effect.timer.shadow:
                self.table.unheld(csid, self.now)
