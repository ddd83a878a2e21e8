"""The claims of the fired-once ledger that the machine keeps in memory (core).

A claim is made before its request is sent (`PutClaim`, in the same
transaction as the decision) and finished with the result after it. Open
claims - requests in flight, or left open by a crash until the first
listing settles them - and unhold claims are kept by key. A finished hold
claim is not: the rule's name in its call's `fired` refuses a second one for
as long as the call is tracked (a few bytes, where a claim is ~200), and the
store's unique key refuses it after that (docs/architecture.md).
"""

from __future__ import annotations

from holdd.core.calls import CallTable
from holdd.core.records import Claim, ClaimKey, FinishClaim, PutClaim, ReleaseClaim, StoreOp

#: The claims' actions of a hold (live, or logged in shadow mode).
HOLDS = ("hold", "would_hold")


class ClaimBook:
    def __init__(self, table: CallTable) -> None:
        self.table = table
        #: Open claims and unhold claims, by key.
        self.open: dict[ClaimKey, Claim] = {}

    def claimed(self, key: ClaimKey) -> bool:
        """Whether this (call, rule, action) was claimed before."""
        if key in self.open:
            return True
        csid, rule, action = key
        call = self.table.get(csid)
        return action in HOLDS and call is not None and rule in call.fired

    def mark_fired(self, csid: int, rule: str) -> None:
        call = self.table.get(csid)
        if call is not None and rule not in call.fired:
            call.fired = (*call.fired, rule)

    def claim(self, key: ClaimKey, now: float, persist: list[StoreOp]) -> bool:
        """Claim `key` unless it was before; the store writes it with the rest."""
        if self.claimed(key):
            return False
        claim = Claim(key[0], key[1], key[2], now)
        self.open[key] = claim
        persist.append(PutClaim(claim))
        return True

    def finish(self, key: ClaimKey, result: str, now: float, persist: list[StoreOp]) -> None:
        if key[2] in HOLDS:
            # Done: the call's `fired` refuses it from now on.
            self.open.pop(key, None)
            self.mark_fired(key[0], key[1])
        elif (claim := self.open.get(key)) is not None:
            claim.result = result
            claim.finished_at = now
        persist.append(FinishClaim(key, result, now))

    def release(self, key: ClaimKey, persist: list[StoreOp]) -> None:
        """The claim's request provably took no effect: it may be made again."""
        self.open.pop(key, None)
        persist.append(ReleaseClaim(key))

    def forget(self, call_session_ids: set[int]) -> None:
        """The calls were swept: their claims go too (the store keeps them)."""
        for key in [k for k in self.open if k[0] in call_session_ids]:
            del self.open[key]


__all__ = ["HOLDS", "ClaimBook"]
