"""The SQLite state database: a real file in tmp, real connections, a real
crash (SIGKILL of a child process) between claim and finish."""

from __future__ import annotations

import os
import sqlite3
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from holdd.core.ledger import Claim, Ledger, MemoryLedger
from holdd.core.rules.driver import TimerKind
from holdd.core.states import CallState
from holdd.io.store.sqlite import (
    SCHEMA_VERSION,
    CallRecord,
    Pruned,
    StateDb,
    StateDbError,
    Timer,
    TraceEntry,
    TraceKind,
)

PACKAGE_ROOT = str(Path(__file__).resolve().parents[2] / "daemon")
T0 = 1_790_000_000.0


@pytest.fixture
def db(tmp_path: Path) -> Iterator[StateDb]:
    with StateDb.open(tmp_path / "state.db") as state:
        yield state


@pytest.fixture(params=["memory", "sqlite"])
def ledger(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Ledger]:
    if request.param == "memory":
        yield MemoryLedger()
    else:
        with StateDb.open(tmp_path / "state.db") as state:
            yield state


# -- the Ledger protocol, for both implementations ---------------------------


def test_a_claim_is_granted_once(ledger: Ledger) -> None:
    assert ledger.claim(101, "vip", "hold", T0)
    assert not ledger.claim(101, "vip", "hold", T0 + 1)
    # Another action, rule or call is another claim.
    assert ledger.claim(101, "vip", "unhold", T0)
    assert ledger.claim(101, "sales", "hold", T0)
    assert ledger.claim(102, "vip", "hold", T0)


def test_pending_claims_are_those_without_a_result(ledger: Ledger) -> None:
    ledger.claim(102, "vip", "hold", T0 + 2)
    ledger.claim(101, "vip", "hold", T0 + 1)
    ledger.claim(103, "vip", "hold", T0 + 3)
    ledger.finish(103, "vip", "hold", "held", T0 + 4)
    assert ledger.pending_claims() == [
        Claim(101, "vip", "hold", T0 + 1),
        Claim(102, "vip", "hold", T0 + 2),
    ]


def test_resolve_keeps_the_claim_release_frees_it(ledger: Ledger) -> None:
    ledger.claim(101, "vip", "hold", T0)
    ledger.claim(102, "vip", "hold", T0)
    assert ledger.resolve(101, "vip", "hold", "held", T0 + 5)
    assert not ledger.resolve(101, "vip", "hold", "ended", T0 + 6)  # no longer pending
    assert ledger.release(102, "vip", "hold")
    assert not ledger.release(102, "vip", "hold")
    assert ledger.pending_claims() == []
    assert not ledger.claim(101, "vip", "hold", T0 + 7)  # resolved: stays claimed
    assert ledger.claim(102, "vip", "hold", T0 + 7)  # released: may be sent again


def test_finished_claims_cannot_be_released(ledger: Ledger) -> None:
    ledger.claim(101, "vip", "hold", T0)
    ledger.finish(101, "vip", "hold", "held", T0 + 1)
    assert not ledger.release(101, "vip", "hold")
    assert not ledger.claim(101, "vip", "hold", T0 + 2)


# -- durability --------------------------------------------------------------


def test_claims_survive_a_reopen(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    with StateDb.open(path) as first:
        assert first.claim(101, "vip", "hold", T0)
        first.finish(101, "vip", "hold", "held", T0 + 0.2)
        assert first.claim(102, "vip", "hold", T0 + 1)
    with StateDb.open(path) as second:
        assert not second.claim(101, "vip", "hold", T0 + 10)
        assert second.claims(101) == [Claim(101, "vip", "hold", T0, "held", T0 + 0.2)]
        assert second.pending_claims() == [Claim(102, "vip", "hold", T0 + 1)]


def test_the_claim_is_committed_when_claim_returns(tmp_path: Path) -> None:
    """Another connection sees the row before the request would be sent."""
    path = tmp_path / "state.db"
    with StateDb.open(path) as db:
        assert db.claim(101, "vip", "hold", T0)
        other = sqlite3.connect(path)
        try:
            rows = other.execute("SELECT call_session_id, rule, result FROM claims").fetchall()
        finally:
            other.close()
        assert rows == [(101, "vip", None)]


def test_a_killed_process_leaves_a_pending_claim(tmp_path: Path) -> None:
    """SIGKILL right after claim() - the moment the HTTP request would go out."""
    path = tmp_path / "state.db"
    script = (
        "import os, signal, sys\n"
        "from pathlib import Path\n"
        "from holdd.io.store.sqlite import StateDb\n"
        "db = StateDb.open(Path(sys.argv[1]))\n"
        "assert db.claim(101, 'vip', 'hold', 1.0)\n"
        "db.claim(100, 'vip', 'hold', 0.5)\n"
        "db.finish(100, 'vip', 'hold', 'held', 0.7)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    env = {**os.environ, "PYTHONPATH": PACKAGE_ROOT}
    proc = subprocess.run(
        [sys.executable, "-c", script, str(path)], env=env, capture_output=True, timeout=30
    )
    assert proc.returncode == -9, proc.stderr
    with StateDb.open(path) as db:
        assert db.pending_claims() == [Claim(101, "vip", "hold", 1.0)]
        assert not db.claim(101, "vip", "hold", 2.0)  # never sent twice without a check
        assert db.claims(100) == [Claim(100, "vip", "hold", 0.5, "held", 0.7)]


def test_two_connections_race_for_one_claim(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    with StateDb.open(path) as a, StateDb.open(path) as b:
        assert a.claim(101, "vip", "hold", T0)
        assert not b.claim(101, "vip", "hold", T0)
        assert b.claim(102, "vip", "hold", T0)
        assert not a.claim(102, "vip", "hold", T0)


# -- the file ------------------------------------------------------------------


def test_wal_full_and_schema_version(db: StateDb) -> None:
    conn = sqlite3.connect(db.path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    finally:
        conn.close()
    assert db.schema_version == SCHEMA_VERSION
    # synchronous is per connection: read it from ours.
    assert db._conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_files_are_private_whatever_the_umask(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "state.db"
    old = os.umask(0o022)
    try:
        with StateDb.open(path) as db:
            db.claim(1, "r", "hold", T0)
            modes = {
                p.name: stat.S_IMODE(p.stat().st_mode)
                for p in path.parent.iterdir()
                if p.name.startswith("state.db")
            }
    finally:
        os.umask(old)
    assert modes == {"state.db": 0o600, "state.db-wal": 0o600, "state.db-shm": 0o600}
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


def test_a_newer_schema_is_refused_with_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    StateDb.open(path).close()
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(StateDbError, match="newer than this holdd understands") as err:
        StateDb.open(path)
    assert str(path) in str(err.value)
    assert "upgrade holdd" in str(err.value)
    with pytest.raises(StateDbError, match="newer"):
        StateDb.open(path, readonly=True)


def test_another_programs_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE x (a)")
    conn.commit()
    conn.close()
    with pytest.raises(StateDbError, match="no holdd schema version"):
        StateDb.open(path)


def test_a_file_that_is_not_sqlite_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StateDbError, match="not usable"):
        StateDb.open(path)


def test_readonly_open_for_explain(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    with pytest.raises(StateDbError, match="no such file"):
        StateDb.open(path, readonly=True)
    assert not path.exists()  # readonly never creates
    with StateDb.open(path) as writer:
        writer.add_trace(101, TraceKind.EVENT, {"kind": "talk_started"}, T0)
        with StateDb.open(path, readonly=True) as reader:
            assert [e.payload for e in reader.trace(101)] == [{"kind": "talk_started"}]
            with pytest.raises(StateDbError, match="failed"):
                reader.claim(1, "r", "hold", T0)
            writer.add_trace(101, TraceKind.ACTION, {"result": "held"}, T0 + 1)
            assert len(reader.trace(101)) == 2  # WAL: the reader sees new commits


# -- calls, timers, traces, cooldowns ---------------------------------------------


def test_calls_upsert_load_delete(db: StateDb) -> None:
    first = CallRecord(101, 1, T0, CallState.TALK, T0)
    db.save_call(first)
    db.save_call(CallRecord(102, 1, None, CallState.SESSION, T0))
    again = CallRecord(101, 2, T0 + 60, CallState.HOLD, T0 + 61)
    db.save_call(again)
    assert db.load_calls() == [again, CallRecord(102, 1, None, CallState.SESSION, T0)]
    assert db.delete_call(102)
    assert not db.delete_call(102)
    assert db.load_calls() == [again]


def test_timers_add_move_list_remove(db: StateDb) -> None:
    late = Timer(TimerKind.UNHOLD, 101, "vip", T0 + 30)
    soon = Timer(TimerKind.AFTER, 102, "sales", T0 + 5)
    db.add_timer(late)
    db.add_timer(soon)
    db.add_timer(Timer(TimerKind.AFTER, 101, "vip", T0 + 10))
    assert db.timers() == [soon, Timer(TimerKind.AFTER, 101, "vip", T0 + 10), late]
    db.add_timer(Timer(TimerKind.AFTER, 102, "sales", T0 + 50))  # moved, not doubled
    assert db.timers()[-1] == Timer(TimerKind.AFTER, 102, "sales", T0 + 50)
    assert len(db.timers()) == 3
    assert db.remove_timer(TimerKind.AFTER, 102, "sales")
    assert not db.remove_timer(TimerKind.AFTER, 102, "sales")
    assert db.remove_timers(101, TimerKind.AFTER) == 1
    assert db.timers() == [late]
    assert db.remove_timers(101) == 1
    assert db.timers() == []


def test_traces_come_back_in_order(db: StateDb) -> None:
    db.add_trace(101, TraceKind.EVENT, {"kind": "talk_started", "state": "TALK"}, T0)
    db.add_trace(202, TraceKind.EVENT, {"kind": "talk_started"}, T0)
    written = db.add_traces(
        [
            TraceEntry(
                101,
                T0 + 0.001,
                TraceKind.EVALUATION,
                {"rules": [{"rule": "vip", "failed": "direction"}, {"rule": "b", "matched": True}]},
            ),
            # Wall clock stepped back: order is the order written, not `at`.
            TraceEntry(101, T0 - 5, TraceKind.ACTION, {"result": "held", "odd": {1, 2}}),
        ]
    )
    assert written == 2
    assert db.add_traces([]) == 0
    trace = db.trace(101)
    assert [(e.kind, e.at) for e in trace] == [
        (TraceKind.EVENT, T0),
        (TraceKind.EVALUATION, T0 + 0.001),
        (TraceKind.ACTION, T0 - 5),
    ]
    assert trace[1].payload == {
        "rules": [{"rule": "vip", "failed": "direction"}, {"rule": "b", "matched": True}]
    }
    assert trace[2].payload == {"result": "held", "odd": "{1, 2}"}  # stored as repr
    assert db.trace(999) == []


def test_cooldowns_compare_digits_and_keep_the_latest(db: StateDb) -> None:
    assert db.last_fired("vip", "79260000000") is None
    db.record_cooldown("vip", "+7 (926) 000-00-00", T0)
    assert db.last_fired("vip", "79260000000") == T0
    db.record_cooldown("vip", "79260000000", T0 - 100)  # older: ignored
    assert db.last_fired("vip", "79260000000") == T0
    db.record_cooldown("vip", "79260000000", T0 + 100)
    assert db.last_fired("vip", "+79260000000") == T0 + 100
    assert db.last_fired("other", "79260000000") is None


def test_prune_removes_old_rows_from_every_table(db: StateDb) -> None:
    day = 86400.0
    old, new = T0 - 8 * day, T0 - 1 * day
    for at, csid in ((old, 1), (new, 2)):
        db.claim(csid, "vip", "hold", at)
        db.save_call(CallRecord(csid, 1, at, CallState.ENDED, at))
        db.add_timer(Timer(TimerKind.AFTER, csid, "vip", at))
        db.add_trace(csid, TraceKind.EVENT, {}, at)
        db.record_cooldown("vip", str(csid), at)
    db.record_cooldown("long", "3", T0 - 20 * day)
    pruned = db.prune(T0 - 7 * day, cooldowns_before=T0 - 30 * day)
    assert pruned == Pruned(claims=1, calls=1, timers=1, traces=1, cooldowns=0)
    assert pruned.total == 4
    assert [c.call_session_id for c in db.claims(1) + db.claims(2)] == [2]
    assert [c.call_session_id for c in db.load_calls()] == [2]
    assert [t.call_session_id for t in db.timers()] == [2]
    assert db.trace(1) == [] and len(db.trace(2)) == 1
    assert db.last_fired("long", "3") == T0 - 20 * day  # a 30-day cooldown survives
    assert db.prune(T0 - 7 * day).cooldowns == 2  # "vip" for 1, and "long"


def test_every_write_is_observed(tmp_path: Path) -> None:
    seen: list[tuple[str, float]] = []
    with StateDb.open(tmp_path / "state.db", on_write=lambda op, s: seen.append((op, s))) as db:
        db.claim(1, "r", "hold", T0)
        db.finish(1, "r", "hold", "held", T0)
        db.add_traces([TraceEntry(1, T0, TraceKind.EVENT, {})])
        db.prune(T0 - 1)
        db.trace(1)  # a read: not observed
    assert [op for op, _ in seen] == ["claim", "finish", "add_traces", "prune"]
    assert all(0 <= s < 5 for _, s in seen)


# -- how long a write blocks the loop -----------------------------------------------


def measure_claim_finish(db: StateDb, n: int) -> tuple[float, float, float]:
    """p50, p99 and max of claim+finish (two fsynced commits), in milliseconds."""
    took = []
    for i in range(n):
        start = time.perf_counter()
        db.claim(i, "vip", "hold", T0)
        db.finish(i, "vip", "hold", "held", T0)
        took.append(time.perf_counter() - start)
    took.sort()
    return (
        took[n // 2] * 1000,
        took[min(n - 1, int(n * 0.99))] * 1000,
        took[-1] * 1000,
    )


def test_claim_plus_finish_blocks_the_loop_briefly(
    db: StateDb, record_property: Callable[[str, object], None]
) -> None:
    """synchronous=FULL costs one fsync per commit; measured here so a slow
    disk shows up. Figures: `pytest -rP tests/service/test_statedb.py -k blocks`."""
    p50, p99, worst = measure_claim_finish(db, 500)
    record_property("claim_finish_ms", {"p50": p50, "p99": p99, "max": worst})
    print(f"claim+finish, synchronous=FULL, 500 pairs: p50 {p50:.3f} ms, p99 {p99:.3f} ms")
    # Generous bounds: a CI disk may be slow, but a write must never stall the
    # stream for long (websockets' keepalive would notice a 20 s stall).
    assert p50 < 20
    assert p99 < 100


def test_prune_in_batches_until_nothing_is_left(db: StateDb) -> None:
    for i in range(5):
        db.claim(i, "vip", "hold", T0 - 100 + i)
        db.add_trace(i, TraceKind.EVENT, {}, T0 - 100 + i)
    db.add_trace(99, TraceKind.EVENT, {}, T0)  # new: kept
    steps = []
    while (pruned := db.prune(T0, batch=2)).total:
        steps.append((pruned.claims, pruned.traces))
    assert steps == [(2, 2), (2, 2), (1, 1)]
    assert db.pending_claims() == []
    assert len(db.trace(99)) == 1


def test_a_failed_transaction_leaves_the_connection_usable(db: StateDb) -> None:
    bad = TraceEntry(1, T0, TraceKind.EVENT, {})
    # A NaN `at` passes Python but not the NOT NULL column (SQLite stores NaN as NULL).
    with pytest.raises(StateDbError, match="add_traces failed"):
        db.add_traces([bad, TraceEntry(2, float("nan"), TraceKind.EVENT, {})])
    assert db.trace(1) == []  # rolled back as a whole
    assert db.add_traces([bad]) == 1
    assert db.claim(1, "vip", "hold", T0)
