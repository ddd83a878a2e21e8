"""The fired-once ledger (core interface).

A claim is written before a request is sent and its result after. A second
claim for the same (call, rule, action) is refused, so a duplicate
notification, a reconnect or a reload can never send the same action twice.
A claim without a result is an action whose outcome is unknown (the process
stopped between sending and recording); on start the daemon checks each with
`list.calls`, then `resolve`s it (keeps the claim, records what it found) or
`release`s it (the request provably took no effect: it may be claimed again).

`MemoryLedger` keeps claims for the life of the process; `holdd.io.store.sqlite.StateDb`
(shell, SQLite) keeps them across restarts behind the same interface.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(slots=True)
class Claim:
    call_session_id: int
    rule: str
    action: str
    claimed_at: float
    result: str | None = None
    finished_at: float | None = None


class Ledger(Protocol):
    def claim(self, call_session_id: int, rule: str, action: str, now: float) -> bool:
        """True when this (call, rule, action) was not claimed before."""
        ...

    def finish(self, call_session_id: int, rule: str, action: str, result: str, now: float) -> None:
        """Record the outcome of a claimed action."""
        ...

    def pending_claims(self) -> list[Claim]:
        """Claims without a result, oldest first."""
        ...

    def resolve(
        self, call_session_id: int, rule: str, action: str, result: str, now: float
    ) -> bool:
        """Record the result of a pending claim found by checking; False if not pending."""
        ...

    def release(self, call_session_id: int, rule: str, action: str) -> bool:
        """Forget a pending claim so the action may be claimed again; False if not pending."""
        ...


class MemoryLedger:
    def __init__(self) -> None:
        self.claims: dict[tuple[int, str, str], Claim] = {}

    def claim(self, call_session_id: int, rule: str, action: str, now: float) -> bool:
        key = (call_session_id, rule, action)
        if key in self.claims:
            return False
        self.claims[key] = Claim(call_session_id, rule, action, now)
        return True

    def finish(self, call_session_id: int, rule: str, action: str, result: str, now: float) -> None:
        claim = self.claims.get((call_session_id, rule, action))
        if claim is not None:
            claim.result = result
            claim.finished_at = now

    def pending_claims(self) -> list[Claim]:
        pending = [c for c in self.claims.values() if c.result is None]
        return sorted(pending, key=lambda c: (c.claimed_at, c.call_session_id, c.rule, c.action))

    def resolve(
        self, call_session_id: int, rule: str, action: str, result: str, now: float
    ) -> bool:
        claim = self.claims.get((call_session_id, rule, action))
        if claim is None or claim.result is not None:
            return False
        claim.result = result
        claim.finished_at = now
        return True

    def release(self, call_session_id: int, rule: str, action: str) -> bool:
        key = (call_session_id, rule, action)
        claim = self.claims.get(key)
        if claim is None or claim.result is not None:
            return False
        del self.claims[key]
        return True
