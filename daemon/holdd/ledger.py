"""The fired-once ledger (core interface).

A claim is written before a request is sent and its result after. A second
claim for the same (call, rule, action) is refused, so a duplicate
notification, a reconnect or a reload can never send the same action twice.
`MemoryLedger` keeps claims for the life of the process; the SQLite ledger
(service issue) keeps them across restarts behind the same interface.
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
