"""The store interface: what the daemon needs of durable state (shell).

`StateDb` (io/store/sqlite.py, the embedded default), `PgStore`
(io/store/postgres.py: one PostgreSQL database shared by several instances,
which adds leases, `heartbeat` and `take_resync`) and `MemoryStore`
(io/store/memory.py: tests, benchmarks) implement it. The daemon calls it
from one thread of its own, one call at a time. The contract
(docs/architecture.md):

* `commit(ops)` writes one input's (or one loop turn's) operations in one
  transaction, durable when it returns, and returns the claims it refused
  because their key was claimed before: those requests are never sent.
* `load()` gives back what the machine needs at start (core/records.py).
* `claims` / `trace` serve `holdd explain`; `prune` forgets old rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from holdd.core.records import Claim, ClaimKey, Restored, StoreOp, TraceEntry


class Store(Protocol):
    #: Transactions committed since opening.
    commits: int

    def commit(self, ops: Sequence[StoreOp]) -> set[ClaimKey]: ...

    def load(self, *, cooldowns_since: float) -> Restored: ...

    def claims(self, call_session_id: int) -> list[Claim]: ...

    def trace(self, call_session_id: int) -> list[TraceEntry]: ...

    def close(self) -> None: ...
