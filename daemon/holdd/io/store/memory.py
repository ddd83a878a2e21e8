"""A store that keeps everything in memory for the life of the process
(shell: tests and benchmarks; the same contract as io/store/base.py)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import assert_never

from holdd.core.records import (
    AddTrace,
    CallRecord,
    Claim,
    ClaimKey,
    DeleteCall,
    DropTimer,
    FinishClaim,
    PutClaim,
    PutTimer,
    RecordCooldown,
    ReleaseClaim,
    Restored,
    SaveCall,
    StoreOp,
    TraceEntry,
)
from holdd.core.rules.driver import Timer, TimerKind
from holdd.core.rules.patterns import digits


class MemoryStore:
    def __init__(self) -> None:
        self.commits = 0
        self.calls: dict[int, CallRecord] = {}
        self.claim_rows: dict[ClaimKey, Claim] = {}
        self.timers: dict[tuple[TimerKind, int], Timer] = {}
        self.traces: dict[int, list[TraceEntry]] = {}
        self.cooldowns: dict[tuple[str, str], float] = {}

    def commit(self, ops: Sequence[StoreOp]) -> set[ClaimKey]:
        refused: set[ClaimKey] = set()
        if not ops:
            return refused
        for op in ops:
            if isinstance(op, PutClaim):
                key = op.claim.key
                if key in self.claim_rows:
                    refused.add(key)
                else:
                    c = op.claim
                    self.claim_rows[key] = Claim(c.call_session_id, c.rule, c.action, c.claimed_at)
            elif isinstance(op, FinishClaim):
                claim = self.claim_rows.get(op.key)
                if claim is not None:
                    claim.result, claim.finished_at = op.result, op.at
            elif isinstance(op, ReleaseClaim):
                claim = self.claim_rows.get(op.key)
                if claim is not None and claim.result is None:
                    del self.claim_rows[op.key]
            elif isinstance(op, SaveCall):
                self.calls[op.record.call_session_id] = op.record
            elif isinstance(op, DeleteCall):
                self.calls.pop(op.call_session_id, None)
            elif isinstance(op, PutTimer):
                self.timers[op.timer.key] = op.timer
            elif isinstance(op, DropTimer):
                self.timers.pop((op.kind, op.call_session_id), None)
            elif isinstance(op, AddTrace):
                self.traces.setdefault(op.entry.call_session_id, []).append(op.entry)
            elif isinstance(op, RecordCooldown):
                key2 = (op.rule, digits(op.contact))
                self.cooldowns[key2] = max(self.cooldowns.get(key2, op.at), op.at)
            else:
                assert_never(op)
        self.commits += 1
        return refused

    def load(self, *, cooldowns_since: float) -> Restored:
        claims = [c for c in self.claim_rows.values() if c.call_session_id in self.calls]
        cooldowns = [(r, c, at) for (r, c), at in self.cooldowns.items() if at >= cooldowns_since]
        return Restored(list(self.calls.values()), list(self.timers.values()), claims, cooldowns)

    def claims(self, call_session_id: int) -> list[Claim]:
        return [c for c in self.claim_rows.values() if c.call_session_id == call_session_id]

    def trace(self, call_session_id: int) -> list[TraceEntry]:
        return list(self.traces.get(call_session_id, []))

    def close(self) -> None:
        pass
