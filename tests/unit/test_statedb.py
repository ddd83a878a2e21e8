"""The SQLite state database: a real file in tmp, real connections, a real
crash (SIGKILL of a child process) between claim and finish.

Every write is a `StateDb.commit(ops)`: one transaction per batch of store
operations. The store contract (claims, load) runs against `MemoryStore` too.
"""

from __future__ import annotations

import os
import sqlite3
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from holdd.core.records import (
    AddTrace,
    CallRecord,
    Claim,
    DeleteCall,
    DropTimer,
    FinishClaim,
    PutClaim,
    PutTimer,
    RecordCooldown,
    ReleaseClaim,
    SaveCall,
    TraceEntry,
    TraceKind,
)
from holdd.core.rules.driver import Timer, TimerKind
from holdd.core.states import CallState
from holdd.io.store.base import Store
from holdd.io.store.memory import MemoryStore
from holdd.io.store.schema import MIGRATIONS, SCHEMA_VERSION
from holdd.io.store.sqlite import Pruned, StateDb, StateDbError

PACKAGE_ROOT = str(Path(__file__).resolve().parents[2] / "daemon")
T0 = 1_790_000_000.0


def put(csid: int, rule: str, action: str, at: float) -> PutClaim:
    return PutClaim(Claim(csid, rule, action, at))


def trace(csid: int, at: float, payload: dict[str, object] | None = None) -> AddTrace:
    return AddTrace(TraceEntry(csid, at, TraceKind.EVENT, payload or {}))


def call(csid: int, at: float, state: CallState = CallState.TALK) -> SaveCall:
    return SaveCall(CallRecord(csid, 1, at, state, at))


@pytest.fixture
def db(tmp_path: Path) -> Iterator[StateDb]:
    with StateDb.open(tmp_path / "state.db") as state:
        yield state


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "memory":
        yield MemoryStore()
    else:
        with StateDb.open(tmp_path / "state.db") as state:
            yield state


# -- the Store contract, for both implementations -----------------------------


def test_a_claim_is_granted_once(store: Store) -> None:
    assert store.commit([put(101, "vip", "hold", T0)]) == set()
    assert store.commit([put(101, "vip", "hold", T0 + 1)]) == {(101, "vip", "hold")}
    # Another action, rule or call is another claim.
    assert (
        store.commit(
            [
                put(101, "vip", "unhold", T0),
                put(101, "sales", "hold", T0),
                put(102, "vip", "hold", T0),
            ]
        )
        == set()
    )
    # The refused claim kept its first row.
    assert Claim(101, "vip", "hold", T0) in store.claims(101)
    assert len(store.claims(101)) == 3


def test_refused_keys_are_reported_and_the_rest_of_the_batch_is_written(store: Store) -> None:
    store.commit([put(101, "vip", "hold", T0)])
    refused = store.commit(
        [
            put(101, "vip", "hold", T0 + 1),  # claimed before
            put(102, "vip", "hold", T0 + 1),
            put(102, "vip", "hold", T0 + 2),  # claimed earlier in this batch
            trace(101, T0 + 1, {"kind": "talk_started"}),
        ]
    )
    assert refused == {(101, "vip", "hold"), (102, "vip", "hold")}
    assert store.claims(102) == [Claim(102, "vip", "hold", T0 + 1)]
    assert [e.payload for e in store.trace(101)] == [{"kind": "talk_started"}]
    assert store.commit([]) == set()


def test_release_frees_only_unfinished_claims(store: Store) -> None:
    store.commit([put(101, "vip", "hold", T0), put(102, "vip", "hold", T0)])
    store.commit([FinishClaim((101, "vip", "hold"), "held", T0 + 5)])
    store.commit([ReleaseClaim((101, "vip", "hold")), ReleaseClaim((102, "vip", "hold"))])
    assert store.claims(101) == [Claim(101, "vip", "hold", T0, "held", T0 + 5)]
    assert store.claims(102) == []
    # Finished: stays claimed. Released: may be sent again.
    assert store.commit([put(101, "vip", "hold", T0 + 7)]) == {(101, "vip", "hold")}
    assert store.commit([put(102, "vip", "hold", T0 + 7)]) == set()


def test_finished_claims_cannot_be_released(store: Store) -> None:
    store.commit([put(101, "vip", "hold", T0), FinishClaim((101, "vip", "hold"), "held", T0 + 1)])
    store.commit([ReleaseClaim((101, "vip", "hold"))])
    assert store.claims(101) == [Claim(101, "vip", "hold", T0, "held", T0 + 1)]
    assert store.commit([put(101, "vip", "hold", T0 + 2)]) == {(101, "vip", "hold")}


def test_load_gives_back_the_claims_of_stored_calls(store: Store) -> None:
    store.commit(
        [
            call(101, T0),
            put(101, "vip", "hold", T0 + 1),
            put(101, "vip", "unhold", T0 + 2),
            FinishClaim((101, "vip", "unhold"), "unheld", T0 + 3),
            put(202, "vip", "hold", T0 + 1),  # its call is not stored
        ]
    )
    restored = store.load(cooldowns_since=T0)
    assert restored.calls == [CallRecord(101, 1, T0, CallState.TALK, T0)]
    assert sorted(restored.claims, key=lambda c: c.key) == [
        Claim(101, "vip", "hold", T0 + 1),
        Claim(101, "vip", "unhold", T0 + 2, "unheld", T0 + 3),
    ]
    assert store.commits == 1


def test_load_gives_back_timers_and_running_cooldowns(store: Store) -> None:
    timer = Timer(TimerKind.UNHOLD, 101, "vip", T0 + 30, 2, shadow=True)
    store.commit(
        [
            call(101, T0),
            PutTimer(timer),
            RecordCooldown("vip", "79260000000", T0 - 100),
            RecordCooldown("sales", "79260000001", T0 - 1000),
        ]
    )
    restored = store.load(cooldowns_since=T0 - 500)
    assert restored.timers == [timer]
    assert restored.cooldowns == [("vip", "79260000000", T0 - 100)]


# -- one batch, one transaction ---------------------------------------------------


def test_a_batch_is_one_transaction(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    seen: list[str] = []
    with StateDb.open(path, on_write=lambda op, _s: seen.append(op)) as db:
        before = db.commits
        refused = db.commit(
            [
                call(101, T0),
                put(101, "vip", "hold", T0),
                FinishClaim((101, "vip", "hold"), "held", T0 + 0.2),
                PutTimer(Timer(TimerKind.UNHOLD, 101, "vip", T0 + 30, 1)),
                trace(101, T0),
                RecordCooldown("vip", "79260000000", T0),
            ]
        )
        assert refused == set()
        assert seen == ["commit"]
        assert db.commits == before + 1
        # Everything is visible to another connection when commit returns.
        other = sqlite3.connect(path)
        try:
            counts = {
                table: other.execute(f"SELECT count(*) FROM {table}").fetchone()[0]  # noqa: S608
                for table in ("calls", "claims", "timers", "traces", "cooldowns")
            }
        finally:
            other.close()
        assert counts == dict.fromkeys(("calls", "claims", "timers", "traces", "cooldowns"), 1)
        assert db.commit([]) == set()  # nothing to write: no transaction
        assert seen == ["commit"]
        assert db.commits == before + 1


def test_a_failed_transaction_writes_nothing_and_leaves_the_connection_usable(
    db: StateDb,
) -> None:
    before = db.commits
    # A NaN `at` passes Python but not the NOT NULL column (SQLite stores NaN as NULL).
    with pytest.raises(StateDbError, match="commit failed"):
        db.commit([put(1, "vip", "hold", T0), trace(1, T0), trace(2, float("nan"))])
    assert db.commits == before
    assert db.claims(1) == []  # rolled back as a whole
    assert db.trace(1) == []
    assert db.trace(2) == []
    assert db.commit([put(1, "vip", "hold", T0), trace(1, T0)]) == set()
    assert db.claims(1) == [Claim(1, "vip", "hold", T0)]
    assert len(db.trace(1)) == 1


# -- durability --------------------------------------------------------------


def test_claims_survive_a_reopen(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    with StateDb.open(path) as first:
        first.commit([put(101, "vip", "hold", T0)])
        first.commit([FinishClaim((101, "vip", "hold"), "held", T0 + 0.2)])
        first.commit([put(102, "vip", "hold", T0 + 1)])
    with StateDb.open(path) as second:
        assert second.commit([put(101, "vip", "hold", T0 + 10)]) == {(101, "vip", "hold")}
        assert second.claims(101) == [Claim(101, "vip", "hold", T0, "held", T0 + 0.2)]
        assert second.pending_claims() == [Claim(102, "vip", "hold", T0 + 1)]


def test_pending_claims_are_those_without_a_result(db: StateDb) -> None:
    db.commit([put(102, "vip", "hold", T0 + 2), put(101, "vip", "hold", T0 + 1)])
    db.commit([put(103, "vip", "hold", T0 + 3), FinishClaim((103, "vip", "hold"), "held", T0 + 4)])
    assert db.pending_claims() == [
        Claim(101, "vip", "hold", T0 + 1),
        Claim(102, "vip", "hold", T0 + 2),
    ]


def test_the_claim_is_committed_when_commit_returns(tmp_path: Path) -> None:
    """Another connection sees the row before the request would be sent."""
    path = tmp_path / "state.db"
    with StateDb.open(path) as db:
        assert db.commit([put(101, "vip", "hold", T0)]) == set()
        other = sqlite3.connect(path)
        try:
            rows = other.execute("SELECT call_session_id, rule, result FROM claims").fetchall()
        finally:
            other.close()
        assert rows == [(101, "vip", None)]


def test_a_killed_process_leaves_a_pending_claim(tmp_path: Path) -> None:
    """SIGKILL right after the claim's commit - the moment the HTTP request would go out."""
    path = tmp_path / "state.db"
    script = (
        "import os, signal, sys\n"
        "from pathlib import Path\n"
        "from holdd.core.records import Claim, FinishClaim, PutClaim\n"
        "from holdd.io.store.sqlite import StateDb\n"
        "db = StateDb.open(Path(sys.argv[1]))\n"
        "db.commit([PutClaim(Claim(100, 'vip', 'hold', 0.5))])\n"
        "db.commit([FinishClaim((100, 'vip', 'hold'), 'held', 0.7)])\n"
        "assert db.commit([PutClaim(Claim(101, 'vip', 'hold', 1.0))]) == set()\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    env = {**os.environ, "PYTHONPATH": PACKAGE_ROOT}
    proc = subprocess.run(
        [sys.executable, "-c", script, str(path)], env=env, capture_output=True, timeout=30
    )
    assert proc.returncode == -9, proc.stderr
    with StateDb.open(path) as db:
        assert db.pending_claims() == [Claim(101, "vip", "hold", 1.0)]
        # Never sent twice without a check.
        assert db.commit([put(101, "vip", "hold", 2.0)]) == {(101, "vip", "hold")}
        assert db.claims(100) == [Claim(100, "vip", "hold", 0.5, "held", 0.7)]


def test_two_connections_race_for_one_claim(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    with StateDb.open(path) as a, StateDb.open(path) as b:
        assert a.commit([put(101, "vip", "hold", T0)]) == set()
        assert b.commit([put(101, "vip", "hold", T0)]) == {(101, "vip", "hold")}
        assert b.commit([put(102, "vip", "hold", T0)]) == set()
        assert a.commit([put(102, "vip", "hold", T0)]) == {(102, "vip", "hold")}
        assert a.claims(101) == b.claims(101) == [Claim(101, "vip", "hold", T0)]


# -- the file ------------------------------------------------------------------


def test_wal_full_and_schema_version(db: StateDb) -> None:
    assert SCHEMA_VERSION == 2
    conn = sqlite3.connect(db.path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    finally:
        conn.close()
    assert db.schema_version == SCHEMA_VERSION
    # synchronous is per connection: read it from ours.
    assert db._conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_a_schema_1_file_is_migrated(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        for statement in MIGRATIONS[0]:
            conn.execute(statement)
        conn.execute("PRAGMA user_version = 1")
        conn.execute(
            "INSERT INTO timers (kind, call_session_id, rule, due_at) VALUES (?, ?, ?, ?)",
            ("unhold", 101, "vip", T0 + 30),
        )
        conn.execute(
            "INSERT INTO calls (call_session_id, episode, talk_started_at, state, updated_at,"
            " fields) VALUES (?, ?, ?, ?, ?, ?)",
            (101, 3, T0, "HOLD", T0 + 1, '{"direction": "in"}'),
        )
    finally:
        conn.close()
    with StateDb.open(path) as db:
        assert db.schema_version == 2
        assert db.timers() == [Timer(TimerKind.UNHOLD, 101, "vip", T0 + 30, -1)]
        assert db.load_calls() == [
            CallRecord(101, 3, T0, CallState.HOLD, T0 + 1, {"direction": "in"})
        ]
        restored = db.load(cooldowns_since=T0)
        [record] = restored.calls
        assert record.fired == ()
        assert record.acted_episode is None
        # A timer without an episode belongs to its call's current episode.
        assert restored.timers == [Timer(TimerKind.UNHOLD, 101, "vip", T0 + 30, 3)]
        # The migrated file takes the new columns.
        db.commit([PutTimer(Timer(TimerKind.AFTER, 101, "vip", T0 + 5, 3, shadow=True))])
        assert db.timers()[0] == Timer(TimerKind.AFTER, 101, "vip", T0 + 5, 3, shadow=True)
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 2
    finally:
        conn.close()


def test_files_are_private_whatever_the_umask(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "state.db"
    old = os.umask(0o022)
    try:
        with StateDb.open(path) as db:
            db.commit([put(1, "r", "hold", T0)])
            modes = {
                p.name: stat.S_IMODE(p.stat().st_mode)
                for p in path.parent.iterdir()
                if p.name.startswith("state.db")
            }
    finally:
        os.umask(old)
    assert modes == {"state.db": 0o600, "state.db-wal": 0o600, "state.db-shm": 0o600}
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


def test_files_left_readable_by_others_are_tightened(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    with StateDb.open(path) as db:
        db.commit([put(1, "r", "hold", T0)])
        # Keep the -wal and -shm around while a second connection looks.
        files = [p for p in tmp_path.iterdir() if p.name.startswith("state.db")]
        for p in files:
            p.chmod(0o644)
        StateDb.open(path).close()
        modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in files}
    assert modes == {"state.db": 0o600, "state.db-wal": 0o600, "state.db-shm": 0o600}


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
        writer.commit([trace(101, T0, {"kind": "talk_started"})])
        with StateDb.open(path, readonly=True) as reader:
            assert [e.payload for e in reader.trace(101)] == [{"kind": "talk_started"}]
            with pytest.raises(StateDbError, match="failed"):
                reader.commit([put(1, "r", "hold", T0)])
            writer.commit([AddTrace(TraceEntry(101, T0 + 1, TraceKind.ACTION, {"r": "held"}))])
            assert len(reader.trace(101)) == 2  # WAL: the reader sees new commits
    with StateDb.open(path) as writer:
        assert writer.claims(1) == []


def test_an_older_schema_is_refused_readonly(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        for statement in MIGRATIONS[0]:
            conn.execute(statement)
        conn.execute("PRAGMA user_version = 1")
    finally:
        conn.close()
    with pytest.raises(StateDbError, match="start the daemon once"):
        StateDb.open(path, readonly=True)


# -- calls, timers, traces, cooldowns ---------------------------------------------


def test_calls_upsert_load_delete(db: StateDb) -> None:
    first = CallRecord(101, 1, T0, CallState.TALK, T0, {"direction": "in"})
    other = CallRecord(102, 1, None, CallState.SESSION, T0)
    again = CallRecord(
        101, 2, T0 + 60, CallState.HOLD, T0 + 61, {"direction": "in"}, ("vip",), acted_episode=2
    )
    db.commit([SaveCall(first), SaveCall(other)])
    db.commit([SaveCall(again)])
    assert db.load_calls() == [again, other]
    db.commit([DeleteCall(102)])
    db.commit([DeleteCall(102)])  # already gone: nothing to do
    assert db.load_calls() == [again]


def test_timers_put_move_list_drop(db: StateDb) -> None:
    late = Timer(TimerKind.UNHOLD, 101, "vip", T0 + 30, 1)
    soon = Timer(TimerKind.AFTER, 102, "sales", T0 + 5, 1, shadow=True)
    middle = Timer(TimerKind.AFTER, 101, "vip", T0 + 10, 1)
    db.commit([PutTimer(late), PutTimer(soon), PutTimer(middle)])
    assert db.timers() == [soon, middle, late]
    moved = Timer(TimerKind.AFTER, 102, "sales", T0 + 50, 2)
    db.commit([PutTimer(moved)])  # moved, not doubled
    assert db.timers() == [middle, late, moved]
    db.commit([DropTimer(TimerKind.AFTER, 102)])
    db.commit([DropTimer(TimerKind.AFTER, 102)])  # already gone: nothing to do
    assert db.timers() == [middle, late]
    db.commit([DropTimer(TimerKind.AFTER, 101)])
    assert db.timers() == [late]
    db.commit([DropTimer(TimerKind.UNHOLD, 101)])
    assert db.timers() == []


def test_traces_come_back_in_order(db: StateDb) -> None:
    db.commit(
        [
            trace(101, T0, {"kind": "talk_started", "state": "TALK"}),
            trace(202, T0, {"kind": "talk_started"}),
        ]
    )
    db.commit(
        [
            AddTrace(
                TraceEntry(
                    101,
                    T0 + 0.001,
                    TraceKind.EVALUATION,
                    {"rules": [{"rule": "vip", "failed": "direction"}, {"rule": "b", "ok": True}]},
                )
            ),
            # Wall clock stepped back: order is the order written, not `at`.
            AddTrace(TraceEntry(101, T0 - 5, TraceKind.ACTION, {"result": "held", "odd": {1, 2}})),
        ]
    )
    entries = db.trace(101)
    assert [(e.kind, e.at) for e in entries] == [
        (TraceKind.EVENT, T0),
        (TraceKind.EVALUATION, T0 + 0.001),
        (TraceKind.ACTION, T0 - 5),
    ]
    assert entries[1].payload == {
        "rules": [{"rule": "vip", "failed": "direction"}, {"rule": "b", "ok": True}]
    }
    assert entries[2].payload == {"result": "held", "odd": "{1, 2}"}  # stored as repr
    assert db.trace(999) == []


def test_cooldowns_compare_digits_and_keep_the_latest(db: StateDb) -> None:
    assert db.last_fired("vip", "79260000000") is None
    db.commit([RecordCooldown("vip", "+7 (926) 000-00-00", T0)])
    assert db.last_fired("vip", "79260000000") == T0
    db.commit([RecordCooldown("vip", "79260000000", T0 - 100)])  # older: ignored
    assert db.last_fired("vip", "79260000000") == T0
    db.commit([RecordCooldown("vip", "79260000000", T0 + 100)])
    assert db.last_fired("vip", "+79260000000") == T0 + 100
    assert db.last_fired("other", "79260000000") is None
    assert db.load(cooldowns_since=T0).cooldowns == [("vip", "79260000000", T0 + 100)]


def test_prune_removes_old_rows_from_every_table(db: StateDb) -> None:
    day = 86400.0
    old, new = T0 - 8 * day, T0 - 1 * day
    for at, csid in ((old, 1), (new, 2)):
        db.commit(
            [
                put(csid, "vip", "hold", at),
                SaveCall(CallRecord(csid, 1, at, CallState.ENDED, at)),
                PutTimer(Timer(TimerKind.AFTER, csid, "vip", at, 1)),
                trace(csid, at),
                RecordCooldown("vip", str(csid), at),
            ]
        )
    db.commit([RecordCooldown("long", "3", T0 - 20 * day)])
    pruned = db.prune(T0 - 7 * day, cooldowns_before=T0 - 30 * day)
    assert pruned == Pruned(claims=1, calls=1, timers=1, traces=1, cooldowns=0)
    assert pruned.total == 4
    assert [c.call_session_id for c in db.claims(1) + db.claims(2)] == [2]
    assert [c.call_session_id for c in db.load_calls()] == [2]
    assert [t.call_session_id for t in db.timers()] == [2]
    assert db.trace(1) == [] and len(db.trace(2)) == 1
    assert db.last_fired("long", "3") == T0 - 20 * day  # a 30-day cooldown survives
    assert db.prune(T0 - 7 * day).cooldowns == 2  # "vip" for 1, and "long"


def test_prune_in_batches_until_nothing_is_left(db: StateDb) -> None:
    db.commit(
        [op for i in range(5) for op in (put(i, "vip", "hold", T0 - 100 + i), trace(i, T0 - 100))]
    )
    db.commit([trace(99, T0)])  # new: kept
    steps = []
    while (pruned := db.prune(T0, batch=2)).total:
        steps.append((pruned.claims, pruned.traces))
    assert steps == [(2, 2), (2, 2), (1, 1)]
    assert db.pending_claims() == []
    assert len(db.trace(99)) == 1


def test_every_transaction_is_observed(tmp_path: Path) -> None:
    seen: list[tuple[str, float]] = []
    with StateDb.open(tmp_path / "state.db", on_write=lambda op, s: seen.append((op, s))) as db:
        db.commit([put(1, "r", "hold", T0)])
        db.commit([FinishClaim((1, "r", "hold"), "held", T0), trace(1, T0)])
        db.prune(T0 - 1)
        db.trace(1)  # a read: not observed
        db.load(cooldowns_since=T0)  # nor is this
        assert db.commits == 2  # prune is not a commit
    assert [op for op, _ in seen] == ["commit", "commit", "prune"]
    assert all(s >= 0 for _, s in seen)
