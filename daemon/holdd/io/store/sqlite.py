"""The state database: the fired-once ledger and everything else holdd must
remember across a reload or a restart (shell: stdlib sqlite3 on one file).

One SQLite file (`[state] path`, under systemd `/var/lib/holdd/state.db` in the
unit's StateDirectory) holds:

- `claims`    the fired-once ledger (core/records.py `Claim`);
- `calls`     when each call's current Talk episode began, so an `after` timer
              is measured from the real moment after a restart;
- `timers`    pending `after` / `unhold` timers, re-armed on start;
- `traces`    the decision trace of each call, read back by `holdd explain`;
- `cooldowns` when a rule last fired for a contact number (`[rule.limit]`).

Settings (docs/operations.md section 8): WAL (readers never wait for the
writer, so `holdd explain` can read while the daemon runs), `synchronous=FULL`
(every commit is fsynced), `busy_timeout`, one connection owned by the
daemon. Every write goes through `commit`: the store operations of one input
(or of the inputs of one loop turn) in one transaction, one fsync.

Crash safety of an action (docs/architecture.md, docs/operations.md section 8):

1. a `PutClaim` inserts the (call, rule, action) row with `INSERT ... ON
   CONFLICT DO NOTHING` and its transaction is committed - fsynced - *before*
   the HTTP request is sent; `commit` reports a refused claim, whose request
   is then never sent. A second claim for the same key, from a duplicate notification, a
   reconnect, a reload or a restarted process, finds the row and is refused.
2. The request is sent.
3. a `FinishClaim` records the result.

A crash between 1 and 3 leaves a claim without a result: the request may or
may not have reached the API. On start, before anything is sent again,
`load()` gives those rows back to the machine; the first `list.calls` says
what became of each call (core/recovery.py), and the claim is finished with
what was found (the leg is on hold, the call is gone) or released (the call
is talking and not held: the request never took effect) so the action may be
claimed again.
A crash before 1 loses nothing that was sent. Hence no action is ever sent
twice for one claim, and none is re-sent without a check.

A write that fails is reported as `StateDbError` and the daemon tries it
again (a full disk, a read-only file system and a lock all pass); a file
whose content is damaged (SQLITE_CORRUPT, SQLITE_NOTADB) is `StateDbCorrupt`,
on which the daemon stops with exit 78 instead: trying again cannot mend it,
and a restart on it would only fail the same way (docs/operations.md
`state_corrupt`).

The schema is versioned with `PRAGMA user_version`: an older file is migrated
in one transaction on open; a file written by a newer holdd is refused with a
message saying so, never guessed at. The file is created with mode 0600
(SQLite gives its -wal and -shm files the same mode).
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import orjson

from holdd.core.errors import StoreError
from holdd.core.records import (
    CallRecord,
    Claim,
    ClaimKey,
    PutClaim,
    Restored,
    StoreOp,
    TraceEntry,
    TraceKind,
)
from holdd.core.rules.driver import Timer, TimerKind
from holdd.core.rules.patterns import digits
from holdd.io.store.schema import MIGRATIONS, SCHEMA_VERSION
from holdd.io.store.sql import call_record, statement


class StateDbError(StoreError):
    """The state database cannot be opened or written."""


class StateDbReplaced(StateDbError):
    """The file was deleted or replaced under the running daemon."""


class StateDbCorrupt(StateDbError):
    """The file's content is damaged ("database disk image is malformed",
    "file is not a database"): no write will succeed however often it is
    tried, and nothing read from it can be trusted."""


#: SQLite's primary result codes for a damaged file (the low byte of an
#: extended code such as SQLITE_CORRUPT_INDEX). Python raises them as plain
#: `sqlite3.DatabaseError`, never as the `OperationalError` of a full disk, a
#: read-only file system or a lock, which pass.
_DAMAGED = frozenset({sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB})


@dataclass(frozen=True, slots=True)
class Pruned:
    """How many rows `prune` removed from each table."""

    claims: int = 0
    calls: int = 0
    timers: int = 0
    traces: int = 0
    cooldowns: int = 0

    @property
    def total(self) -> int:
        return self.claims + self.calls + self.timers + self.traces + self.cooldowns


#: Called after every transaction with its name and how long it took, in
#: seconds (the `holdd_ledger_write_seconds` histogram of metrics.py).
WriteObserver = Callable[[str, float], None]


class StateDb:
    """One connection to the state database (the `Store` of io/store/base.py).

    Writes come only through `commit`: the store operations of one input (or
    of one loop turn) in one transaction, fsynced before it returns.
    """

    def __init__(
        self, conn: sqlite3.Connection, path: Path, on_write: WriteObserver | None = None
    ) -> None:
        self._conn = conn
        self.path = path
        self.on_write = on_write
        #: Which file this connection writes (device, inode): a file deleted or
        #: replaced under the daemon is noticed before the next write.
        self._identity = _identity(path)
        #: Transactions committed since opening (`make bench` counts them).
        self.commits = 0

    # -- opening -------------------------------------------------------------

    @classmethod
    def open(
        cls,
        path: Path,
        *,
        busy_timeout: float = 5.0,
        on_write: WriteObserver | None = None,
        readonly: bool = False,
    ) -> StateDb:
        """Open (creating and migrating as needed) the database at `path`.

        `readonly=True` is for `holdd explain`: nothing is created or migrated,
        and a missing file or an older schema is an error.
        """
        try:
            conn = _connect_readonly(path) if readonly else _connect(path, busy_timeout)
        except (sqlite3.Error, OSError) as exc:
            raise StateDbError(f"state database {path}: cannot open: {exc}") from exc
        try:
            _configure(conn, path, busy_timeout, readonly)
        except BaseException:
            conn.close()
            raise
        return cls(conn, path, on_write)

    def close(self) -> None:
        with suppress(sqlite3.Error):  # only statistics; the data is committed already
            self._conn.execute("PRAGMA optimize")
        self._conn.close()

    def __enter__(self) -> StateDb:
        return self

    def __exit__(
        self,
        _exc_type: type[BaseException] | None,
        _exc: BaseException | None,
        _tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def schema_version(self) -> int:
        return int(self._conn.execute("PRAGMA user_version").fetchone()[0])

    # -- writing: one transaction per call -------------------------------------

    def commit(self, ops: Sequence[StoreOp]) -> set[ClaimKey]:
        """Write `ops` in one transaction; return the claims it refused
        (their key was claimed before): their requests must not be sent."""
        refused: set[ClaimKey] = set()
        if not ops:
            return refused
        if self._identity is not None and _identity(self.path) != self._identity:
            raise StateDbReplaced(
                f"state database {self.path} was deleted or replaced while holdd ran;"
                " nothing more is written to the unlinked file: restore it, or move the"
                " new one away, then start holdd again"
            )
        with self._transaction("commit"):
            execute = self._conn.execute
            for op in ops:
                sql, params = statement(op)
                cur = execute(sql, params)
                if isinstance(op, PutClaim) and cur.rowcount != 1:
                    refused.add(op.claim.key)
        self.commits += 1
        return refused

    # -- reading ----------------------------------------------------------------

    def load(self, *, cooldowns_since: float) -> Restored:
        """What the machine needs back at start (core/records.py `Restored`)."""
        calls = self.load_calls()
        episodes = {c.call_session_id: c.episode for c in calls}
        claims = [
            c
            for c in self._claims(
                "WHERE call_session_id IN (SELECT call_session_id FROM calls)", ()
            )
        ]
        timers = [
            t if t.episode >= 0 else _with_episode(t, episodes.get(t.call_session_id, 0))
            for t in self.timers()
        ]
        cooldowns = self._read(
            "SELECT rule, contact, fired_at FROM cooldowns WHERE fired_at >= ?",
            (cooldowns_since,),
        )
        return Restored(calls, timers, claims, [(r, c, float(at)) for r, c, at in cooldowns])

    def load_calls(self) -> list[CallRecord]:
        rows = self._read(
            "SELECT call_session_id, episode, talk_started_at, state, updated_at, fields,"
            " fired, acted_episode, decided_episode FROM calls ORDER BY call_session_id",
            (),
        )
        return [call_record(row) for row in rows]

    def timers(self) -> list[Timer]:
        """Every pending timer, soonest first (episode -1: written by schema 1)."""
        rows = self._read(
            "SELECT kind, call_session_id, rule, due_at, episode, shadow FROM timers"
            " ORDER BY due_at, call_session_id, kind, rule",
            (),
        )
        return [
            Timer(TimerKind(kind), csid, rule, due_at, -1 if ep is None else ep, bool(shadow))
            for kind, csid, rule, due_at, ep, shadow in rows
        ]

    def pending_claims(self) -> list[Claim]:
        """Claims without a result: requests whose outcome a crash left unknown."""
        return self._claims("WHERE result IS NULL", ())

    def claims(self, call_session_id: int) -> list[Claim]:
        """Every claim made for one call, oldest first (for `holdd explain`)."""
        return self._claims("WHERE call_session_id = ?", (call_session_id,))

    def trace(self, call_session_id: int) -> list[TraceEntry]:
        """One call's trace in the order it was written."""
        rows = self._read(
            "SELECT call_session_id, at, kind, payload FROM traces"
            " WHERE call_session_id = ? ORDER BY id",
            (call_session_id,),
        )
        return [
            TraceEntry(csid, at, TraceKind(kind), orjson.loads(payload))
            for csid, at, kind, payload in rows
        ]

    def last_fired(self, rule: str, contact: str) -> float | None:
        rows = self._read(
            "SELECT fired_at FROM cooldowns WHERE rule = ? AND contact = ?",
            (rule, digits(contact)),
        )
        return float(rows[0][0]) if rows else None

    def _claims(self, where: str, params: tuple[object, ...]) -> list[Claim]:
        rows = self._read(
            "SELECT call_session_id, rule, action, claimed_at, result, finished_at FROM claims "  # noqa: S608 - `where` is one of our constants
            + where
            + " ORDER BY claimed_at, call_session_id, rule, action",
            params,
        )
        return [Claim(*row) for row in rows]

    # -- housekeeping ---------------------------------------------------------

    def prune(
        self, before: float, *, cooldowns_before: float | None = None, batch: int | None = None
    ) -> Pruned:
        """Delete rows older than `before` from every table, in one transaction.

        Old means: claims claimed, calls updated, timers due, traces written,
        before `before`. Cooldowns use `cooldowns_before` (default `before`):
        pass `now - max(retention, longest cooldown)` so pruning never shortens
        a cooldown. A pending claim that old belongs to a call long over.
        Pass `batch` (at most that many rows per table) and call again until
        `Pruned.total` is 0, to keep each transaction short.
        """
        cool = before if cooldowns_before is None else cooldowns_before
        limit = -1 if batch is None else batch  # LIMIT -1: no limit
        with self._transaction("prune"):
            counts = Pruned(
                claims=self._delete(
                    "claims", "call_session_id, rule, action", "claimed_at", before, limit
                ),
                calls=self._delete("calls", "call_session_id", "updated_at", before, limit),
                timers=self._delete(
                    "timers", "kind, call_session_id, rule", "due_at", before, limit
                ),
                traces=self._delete("traces", "id", "at", before, limit),
                cooldowns=self._delete("cooldowns", "rule, contact", "fired_at", cool, limit),
            )
        return counts

    def _delete(self, table: str, key: str, column: str, before: float, limit: int) -> int:
        # Names are our own constants, never input; values are bound parameters.
        sql = (
            f"DELETE FROM {table} WHERE ({key}) IN"  # noqa: S608
            f" (SELECT {key} FROM {table} WHERE {column} < ? LIMIT ?)"
        )
        return self._conn.execute(sql, (before, limit)).rowcount

    # -- plumbing -------------------------------------------------------------

    def _read(self, sql: str, params: tuple[object, ...]) -> list[Any]:
        try:
            return self._conn.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise self._failed("read", exc) from exc

    def _failed(self, op: str, exc: sqlite3.Error) -> StateDbError:
        """The error for a failed `op`: StateDbCorrupt when the file is damaged."""
        if _damaged(exc):
            return StateDbCorrupt(
                f"state database {self.path}: {op} failed: {exc} (the file is damaged)"
            )
        return StateDbError(f"state database {self.path}: {op} failed: {exc}")

    @contextmanager
    def _transaction(self, op: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            self._conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise self._failed(op, exc) from exc
        try:
            yield
            self._conn.execute("COMMIT")
        except BaseException as exc:
            # Never leave a transaction open: the next write would fail too.
            if self._conn.in_transaction:
                with suppress(sqlite3.Error):
                    self._conn.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error):
                raise self._failed(op, exc) from exc
            raise
        if self.on_write is not None:
            self.on_write(op, time.perf_counter() - start)


def _damaged(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    return (
        isinstance(exc, sqlite3.DatabaseError)
        and not isinstance(exc, sqlite3.OperationalError)
        and code is not None
        and code & 0xFF in _DAMAGED
    )


def _with_episode(timer: Timer, episode: int) -> Timer:
    return Timer(timer.kind, timer.call_session_id, timer.rule, timer.due_at, episode, timer.shadow)


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return (st.st_dev, st.st_ino)


def _connect(path: Path, busy_timeout: float) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    # Create the file ourselves so it is 0600 whatever the umask; SQLite then
    # gives the -wal and -shm files the database file's mode.
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    os.close(fd)
    # A file an older holdd (or an operator) left readable by others is
    # tightened, with its -wal and -shm: they hold call data and the ledger.
    for name in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        with suppress(FileNotFoundError):
            if name.stat().st_mode & 0o077:
                name.chmod(0o600)
    # isolation_level=None: autocommit; transactions only where we say BEGIN.
    # The daemon uses it from its store thread only (one at a time).
    return sqlite3.connect(
        path, timeout=busy_timeout, isolation_level=None, check_same_thread=False
    )


def _connect_readonly(path: Path) -> sqlite3.Connection:
    if not path.is_file():
        raise StateDbError(f"state database {path}: no such file")
    return sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, isolation_level=None)


def _configure(conn: sqlite3.Connection, path: Path, busy_timeout: float, readonly: bool) -> None:
    try:
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        _check_version(path, version, readonly)
        if readonly:
            return
        # WAL + FULL: every commit is fsynced before it returns.
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise StateDbError(
                f"state database {path}: cannot use WAL (journal_mode is {mode});"
                " put it on a local file system"
            )
        conn.execute("PRAGMA synchronous = FULL")
        _migrate(conn, path)
    except sqlite3.DatabaseError as exc:
        raise StateDbError(f"state database {path}: not usable: {exc}") from exc


def _check_version(path: Path, version: int, readonly: bool) -> None:
    if version > SCHEMA_VERSION:
        raise StateDbError(
            f"state database {path} has schema version {version}, newer than this holdd"
            f" understands ({SCHEMA_VERSION}): it was written by a newer holdd;"
            " upgrade holdd, or move the file away to start with an empty state"
        )
    if readonly and version < SCHEMA_VERSION:
        raise StateDbError(
            f"state database {path} has schema version {version}, older than {SCHEMA_VERSION}:"
            " start the daemon once to upgrade it"
            if version
            else f"state database {path} is not a holdd state database (or is empty)"
        )


def _migrate(conn: sqlite3.Connection, path: Path) -> None:
    conn.execute("BEGIN IMMEDIATE")
    try:
        # Read again inside the write lock: another process may have migrated.
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        _check_version(path, version, readonly=False)
        if version == 0 and conn.execute("SELECT count(*) FROM sqlite_schema").fetchone()[0]:
            raise StateDbError(
                f"state database {path}: the file holds tables but no holdd schema version;"
                " is [state] path pointing at another program's database?"
            )
        for step in MIGRATIONS[version:]:
            for statement in step:
                conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
