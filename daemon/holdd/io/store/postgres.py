"""The shared store: one PostgreSQL database for several holdd instances
(shell: psycopg 3, one connection per instance, used from the daemon's store
thread only).

Every instance is active: each reads the notifications and runs the rules,
and the ledger decides which one sends each action. A claim is a row with
a unique key (call, rule, action) inserted in the transaction of the loop
turn that decided it, before the request goes out; the instance whose
insert lost sends nothing (`commit` returns the key as refused), exactly as
a second claim is refused in one process (docs/operations.md "Several
instances", docs/architecture.md).

Leases. Each instance has a row in `leases`, renewed by every commit and by
`heartbeat` (every third of the lease). A commit renews the lease in its own
transaction and fails (`LeaseLost`) when the row is gone: an instance that
was taken for dead never writes again. `heartbeat` also looks for leases that
expired: in one transaction it deletes them and takes over (adopts) their
instances' open claims and timers, so one survivor - never two - settles a
dead instance's claims as a restart settles its own (`list.calls`, then
held, or released and sent once), and fires its timers. An instance sends
only while its lease is surely valid (`lease_valid`), and the adopter waits
a request timeout past the expiry before it looks, so a request the dead
instance had in flight has landed by then.

Connection trouble surfaces as `StoreUnavailable`; the daemon retries the
same operations with backoff (all of them are idempotent for this instance:
a claim already inserted by its own earlier attempt is not refused) and
sends nothing meanwhile. The schema is versioned in `holdd_meta` and
migrated at start under an advisory lock.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import orjson
import psycopg

from holdd.core.errors import StoreError
from holdd.core.records import (
    AddTrace,
    Adopted,
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
    TraceKind,
)
from holdd.core.rules.driver import Timer, TimerKind
from holdd.io.store.pgschema import MIGRATION_LOCK, PG_MIGRATIONS, PG_SCHEMA_VERSION
from holdd.io.store.sql import call_record, statement
from holdd.io.store.sqlite import Pruned, WriteObserver


class StoreUnavailable(StoreError):
    """The database cannot be reached (or answered with an error) just now."""


class _Conflict(StoreUnavailable):
    """PostgreSQL aborted the transaction for a conflict with a concurrent
    one (a deadlock or a serialization failure): run it again at once."""


#: How many times a commit aborted by a conflict is run again before it
#: counts as a failed write (the daemon's backoff, `state_write_failed`).
CONFLICT_RETRIES = 3


class LeaseLost(StoreError):
    """Another instance took this one for dead and adopted its work."""


def safe_url(url: str) -> str:
    """`url` without its password: what logs and errors may show."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{parts.username or ''}:***@{host}"
    if parts.port is not None:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


@dataclass(slots=True)
class Heartbeat:
    """What one `heartbeat` found."""

    #: Instances whose lease is valid, this one included.
    live: int
    #: What was taken over from instances whose lease expired, if anything.
    adopted: Adopted | None = None
    #: Cooldowns other instances recorded since the previous heartbeat.
    cooldowns: list[tuple[str, str, float]] = field(default_factory=list)


# The statements that differ from SQLite's (io/store/sql.py): `%s`
# placeholders, the owner of claims and timers, the writer of traces.
_PG: dict[type, str] = {
    AddTrace: "INSERT INTO traces (call_session_id, at, kind, payload, instance)"
    " VALUES (%s, %s, %s, %s, %s)",
    SaveCall: "INSERT INTO calls (call_session_id, episode, talk_started_at, state, updated_at,"
    " fields, fired, acted_episode, decided_episode) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"
    " ON CONFLICT (call_session_id) DO UPDATE SET episode = excluded.episode,"
    " talk_started_at = excluded.talk_started_at, state = excluded.state,"
    " updated_at = excluded.updated_at, fields = excluded.fields, fired = excluded.fired,"
    " acted_episode = excluded.acted_episode, decided_episode = excluded.decided_episode",
    # A retry of a turn whose COMMIT may have landed finds its own row: the
    # update (a no-op) returns it, so the claim is not taken as refused.
    PutClaim: "INSERT INTO claims (call_session_id, rule, action, claimed_at, owner)"
    " VALUES (%s, %s, %s, %s, %s)"
    " ON CONFLICT (call_session_id, rule, action) DO UPDATE SET owner = excluded.owner"
    " WHERE claims.owner = excluded.owner AND claims.claimed_at = excluded.claimed_at"
    " RETURNING 1",
    FinishClaim: "UPDATE claims SET result = %s, finished_at = %s"
    " WHERE call_session_id = %s AND rule = %s AND action = %s AND owner = %s",
    ReleaseClaim: "DELETE FROM claims WHERE call_session_id = %s AND rule = %s AND action = %s"
    " AND result IS NULL AND owner = %s",
    PutTimer: "INSERT INTO timers (kind, call_session_id, rule, due_at, episode, shadow, owner)"
    " VALUES (%s, %s, %s, %s, %s, %s, %s)"
    " ON CONFLICT (kind, call_session_id, rule) DO UPDATE SET due_at = excluded.due_at,"
    " episode = excluded.episode, shadow = excluded.shadow, owner = excluded.owner",
    DropTimer: "DELETE FROM timers WHERE kind = %s AND call_session_id = %s",
    DeleteCall: "DELETE FROM calls WHERE call_session_id = %s",
    RecordCooldown: "INSERT INTO cooldowns (rule, contact, fired_at) VALUES (%s, %s, %s)"
    " ON CONFLICT (rule, contact) DO UPDATE"
    " SET fired_at = GREATEST(cooldowns.fired_at, excluded.fired_at)",
}
_OWNED = (PutClaim, FinishClaim, ReleaseClaim, PutTimer, AddTrace)

_CALL_COLUMNS = (
    "call_session_id, episode, talk_started_at, state, updated_at, fields, fired,"
    " acted_episode, decided_episode"
)
_CLAIM_COLUMNS = "call_session_id, rule, action, claimed_at, result, finished_at, owner"
_TIMER_COLUMNS = "kind, call_session_id, rule, due_at, episode, shadow"


class PgStore:
    """The `Store` (io/store/base.py) on a PostgreSQL database shared by instances."""

    shared = True

    def __init__(
        self,
        url: str,
        *,
        password: str | None = None,
        lease: float = 5.0,
        settle_margin: float = 5.0,
        name: str | None = None,
        on_write: WriteObserver | None = None,
        connect_timeout: float = 5.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = url
        self._password = password
        self.lease = lease
        #: How long past a dead instance's expiry its requests may still land
        #: (its `[callapi] timeout`): the adopter settles no sooner.
        self.settle_margin = settle_margin
        host = socket.gethostname()
        #: This process's identity in the ledger: new at every start, so a
        #: restarted instance never mistakes another's work for its own.
        self.instance = f"{name or host}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.host = host
        self.on_write = on_write
        self.connect_timeout = connect_timeout
        self.monotonic = monotonic
        self.commits = 0
        #: Commits aborted by a conflict with another instance's, and run again.
        self.conflicts = 0
        #: monotonic() before the latest transaction that renewed the lease.
        self.lease_confirmed = -1e18
        self._conn: psycopg.Connection[Any] | None = None
        self._cooldowns_since = 0.0
        #: After an outage of the database every instance's lease may have
        #: run out while none could renew it: none is taken for dead before
        #: the others have had a whole lease to renew theirs.
        self._adopt_not_before = 0.0

    # -- opening ------------------------------------------------------------------

    @classmethod
    def open_reader(cls, url: str, *, password: str | None = None) -> PgStore:
        """Connect to read only (`holdd explain`): no lease, no migration."""
        store = cls(url, password=password)
        conn = store._connection()
        try:
            row = conn.execute(
                "SELECT value FROM holdd_meta WHERE key = 'schema_version'"
            ).fetchone()
        except psycopg.Error as exc:
            store._drop()
            raise StoreError(
                f"state database {safe_url(url)}: not a holdd state database"
                f" (or no instance has started yet): {_reason(exc)}"
            ) from exc
        if row is None or int(row[0]) != PG_SCHEMA_VERSION:
            store._drop()
            raise StoreError(
                f"state database {safe_url(url)} has schema version"
                f" {row[0] if row else 'none'}, this holdd reads {PG_SCHEMA_VERSION}"
            )
        return store

    @classmethod
    def open(cls, url: str, **kwargs: Any) -> PgStore:
        """Connect, migrate the schema and take a lease."""
        store = cls(url, **kwargs)
        conn = store._connection()
        started = store.monotonic()
        try:
            with conn.transaction():
                _migrate(conn, safe_url(url))
                conn.execute(
                    "INSERT INTO leases (instance, host, pid, expires_at)"
                    " VALUES (%s, %s, %s, now() + make_interval(secs => %s))",
                    (store.instance, store.host, os.getpid(), store.lease),
                )
            store.lease_confirmed = started
        except psycopg.Error as exc:
            store._drop()
            raise StoreUnavailable(f"state database {safe_url(url)}: {_reason(exc)}") from exc
        except BaseException:
            store._drop()
            raise
        return store

    def close(self) -> None:
        """Hand the lease back: the others adopt this instance's timers (and
        any claim still open) at their next heartbeat."""
        if self._conn is None or self.lease_confirmed < -1e17:
            self._drop()
            return
        with suppress(psycopg.Error):
            self._conn.execute(
                "UPDATE leases SET expires_at = now() WHERE instance = %s", (self.instance,)
            )
        self._drop()

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is not None and not self._conn.closed and not self._conn.broken:
            return self._conn
        self._drop()
        try:
            self._conn = psycopg.connect(
                self.url,
                password=self._password,
                autocommit=True,
                connect_timeout=max(1, int(self.connect_timeout)),
                application_name=f"holdd {self.instance}"[:63],
                # A partitioned server is noticed in seconds, not minutes.
                keepalives=1,
                keepalives_idle=5,
                keepalives_interval=2,
                keepalives_count=3,
                tcp_user_timeout=int(max(self.lease, 1.0) * 1000),
                options=f"-c statement_timeout={int(max(self.lease, 1.0) * 2000)}",
            )
        except psycopg.Error as exc:
            self._drop(failed=True)
            raise StoreUnavailable(
                f"state database {safe_url(self.url)}: cannot connect: {_reason(exc)}"
            ) from exc
        return self._conn

    def _drop(self, *, failed: bool = False) -> None:
        if failed:
            self._adopt_not_before = self.monotonic() + self.lease
        if self._conn is not None:
            with suppress(psycopg.Error):
                self._conn.close()
            self._conn = None

    # -- leases -------------------------------------------------------------------

    def lease_valid(self) -> bool:
        """Whether the lease surely still holds (this process's clock: the
        renewal was sent no earlier than `lease_confirmed`)."""
        return self.monotonic() < self.lease_confirmed + self.lease

    def _renew(self, cur: psycopg.Cursor[Any]) -> None:
        cur.execute(
            "UPDATE leases SET expires_at = now() + make_interval(secs => %s) WHERE instance = %s",
            (self.lease, self.instance),
        )
        if cur.rowcount != 1:
            raise LeaseLost(
                f"instance {self.instance}: its lease was taken over by another instance"
                " (it could not renew it in time); it stops and a restart rejoins"
            )

    def heartbeat(self, now: float) -> Heartbeat:
        """Renew the lease, adopt the work of expired instances, and read
        what the others recorded that this instance must know."""
        started = self.monotonic()
        with self._transaction("heartbeat") as cur:
            self._renew(cur)
            adopted = self._adopt(cur) if started >= self._adopt_not_before else None
            cur.execute("SELECT count(*) FROM leases WHERE expires_at >= now()")
            row = cur.fetchone()
            live = int(row[0]) if row else 1
            since = self._cooldowns_since
            cur.execute(
                "SELECT rule, contact, fired_at FROM cooldowns WHERE fired_at > %s", (since,)
            )
            cooldowns = [(r, c, float(at)) for r, c, at in cur.fetchall()]
        self.lease_confirmed = started
        self._cooldowns_since = max([now - 2 * self.lease, *(at for *_x, at in cooldowns)])
        return Heartbeat(live, adopted, cooldowns)

    def _adopt(self, cur: psycopg.Cursor[Any]) -> Adopted | None:
        # Expired leases nobody else is taking over right now: gone, with
        # their open claims and timers ours (one transaction, so exactly one
        # survivor adopts each).
        cur.execute(
            "SELECT instance, EXTRACT(EPOCH FROM now() - expires_at)::float8 FROM leases"
            " WHERE expires_at < now() FOR UPDATE SKIP LOCKED"
        )
        dead = [(str(i), float(ago)) for i, ago in cur.fetchall()]
        for instance, _ago in dead:
            cur.execute("DELETE FROM leases WHERE instance = %s", (instance,))
        # Work whose owner has no lease at all (expired and deleted above, or
        # removed by hand) has no one else to settle it.
        orphaned = "owner <> %s AND NOT EXISTS (SELECT 1 FROM leases l WHERE l.instance = owner)"
        cur.execute(
            f"UPDATE claims SET owner = %s WHERE result IS NULL AND {orphaned}"  # noqa: S608
            f" RETURNING {_CLAIM_COLUMNS}",
            (self.instance, self.instance),
        )
        claims = [Claim(*row) for row in cur.fetchall()]
        cur.execute(
            f"UPDATE timers SET owner = %s WHERE {orphaned} RETURNING {_TIMER_COLUMNS}",  # noqa: S608
            (self.instance, self.instance),
        )
        timers = [_timer(row) for row in cur.fetchall()]
        if not dead and not claims and not timers:
            return None
        ids = sorted({c.call_session_id for c in claims} | {t.call_session_id for t in timers})
        cur.execute(
            f"SELECT {_CALL_COLUMNS} FROM calls WHERE call_session_id = ANY(%s)",  # noqa: S608
            (ids,),
        )
        calls = [call_record(row) for row in cur.fetchall()]
        # A request the dead instance sent just before its lease ran out lands
        # within its timeout: look no sooner than that past the expiry.
        since_expiry = min((ago for _i, ago in dead), default=0.0)
        settle_in = max(0.0, self.settle_margin - since_expiry) if claims else 0.0
        return Adopted(calls, claims, timers, [i for i, _ago in dead], settle_in)

    def take_resync(self, interval: float) -> bool:
        """Whether this instance runs the periodic resync now: one instance
        per interval, so the account's `list.calls` are not multiplied."""
        with self._transaction("resync_turn") as cur:
            cur.execute(
                "INSERT INTO resyncs (id, at, instance) VALUES (1, now(), %s)"
                " ON CONFLICT (id) DO UPDATE SET at = now(), instance = excluded.instance"
                " WHERE resyncs.at < now() - make_interval(secs => %s) RETURNING 1",
                (self.instance, interval * 0.9),
            )
            return bool(cur.fetchone())

    # -- writing ------------------------------------------------------------------

    def commit(self, ops: Sequence[StoreOp]) -> set[ClaimKey]:
        """Write `ops` in one transaction that also renews the lease; return
        the claims refused because another claim of the key exists.

        Instances write shared rows (a call every instance saw) in the order
        their turns met them, so two commits can deadlock; PostgreSQL aborts
        one, which is run again at once (it was rolled back whole), up to
        `CONFLICT_RETRIES` times, instead of waiting for the daemon's backoff
        while the lease runs out."""
        if not ops:
            return set()
        for _attempt in range(CONFLICT_RETRIES):
            try:
                return self._commit(ops)
            except _Conflict:
                self.conflicts += 1
        return self._commit(ops)

    def _commit(self, ops: Sequence[StoreOp]) -> set[ClaimKey]:
        refused: set[ClaimKey] = set()
        started = self.monotonic()
        with self._transaction("commit") as cur:
            self._renew(cur)
            conn = cur.connection
            claims: list[tuple[PutClaim, psycopg.Cursor[Any]]] = []
            # Pipeline mode: the statements go out back to back, not one
            # round trip each; each claim's RETURNING is read at the end.
            with conn.pipeline():
                for op in ops:
                    _sql, params = statement(op)
                    if isinstance(op, PutTimer):
                        params = (*params[:5], bool(params[5]))
                    if isinstance(op, _OWNED):
                        params = (*params, self.instance)
                    if isinstance(op, PutClaim):
                        claim_cur = conn.cursor()
                        claim_cur.execute(_PG[PutClaim], params)
                        claims.append((op, claim_cur))
                    else:
                        cur.execute(_PG[type(op)], params)
            for op, claim_cur in claims:
                if claim_cur.fetchone() is None:
                    refused.add(op.claim.key)
                claim_cur.close()
        self.lease_confirmed = started
        self.commits += 1
        return refused

    # -- reading --------------------------------------------------------------------

    def load(self, *, cooldowns_since: float) -> Restored:
        """What a starting instance needs: every call, its finished claims
        (open claims belong to live instances; a dead one's are adopted by
        `heartbeat`), the timers, the running cooldowns."""
        with self._transaction("load") as cur:
            cur.execute(f"SELECT {_CALL_COLUMNS} FROM calls ORDER BY call_session_id")  # noqa: S608
            calls = [call_record(row) for row in cur.fetchall()]
            cur.execute(
                f"SELECT {_CLAIM_COLUMNS} FROM claims c WHERE result IS NOT NULL"  # noqa: S608
                " AND EXISTS (SELECT 1 FROM calls k WHERE k.call_session_id = c.call_session_id)"
                " ORDER BY claimed_at, call_session_id, rule, action"
            )
            claims = [Claim(*row) for row in cur.fetchall()]
            cur.execute(
                f"SELECT {_TIMER_COLUMNS} FROM timers"  # noqa: S608
                " ORDER BY due_at, call_session_id, kind, rule"
            )
            timers = [_timer(row) for row in cur.fetchall()]
            cur.execute(
                "SELECT rule, contact, fired_at FROM cooldowns WHERE fired_at >= %s",
                (cooldowns_since,),
            )
            cooldowns = [(r, c, float(at)) for r, c, at in cur.fetchall()]
        return Restored(calls, timers, claims, cooldowns)

    def claims(self, call_session_id: int) -> list[Claim]:
        with self._transaction("read") as cur:
            cur.execute(
                f"SELECT {_CLAIM_COLUMNS} FROM claims WHERE call_session_id = %s"  # noqa: S608
                " ORDER BY claimed_at, rule, action",
                (call_session_id,),
            )
            return [Claim(*row) for row in cur.fetchall()]

    def trace(self, call_session_id: int) -> list[TraceEntry]:
        with self._transaction("read") as cur:
            cur.execute(
                "SELECT call_session_id, at, kind, payload, instance FROM traces"
                " WHERE call_session_id = %s ORDER BY id",
                (call_session_id,),
            )
            return [
                TraceEntry(csid, at, TraceKind(kind), orjson.loads(payload), instance)
                for csid, at, kind, payload, instance in cur.fetchall()
            ]

    def instances(self) -> list[tuple[str, str, int, float]]:
        """(instance, host, pid, seconds until its lease expires) of every lease."""
        with self._transaction("read") as cur:
            cur.execute(
                "SELECT instance, host, pid, EXTRACT(EPOCH FROM expires_at - now())::float8"
                " FROM leases ORDER BY started_at"
            )
            return [(str(i), str(h), int(p), float(left)) for i, h, p, left in cur.fetchall()]

    # -- housekeeping -------------------------------------------------------------

    def prune(
        self, before: float, *, cooldowns_before: float | None = None, batch: int | None = None
    ) -> Pruned:
        """Delete old rows, as `StateDb.prune` does (open claims are kept)."""
        cool = before if cooldowns_before is None else cooldowns_before
        limit = batch if batch is not None else 2**62
        with self._transaction("prune") as cur:

            def delete(table: str, key: str, column: str, at: float, extra: str = "") -> int:
                cur.execute(
                    f"DELETE FROM {table} WHERE ({key}) IN (SELECT {key} FROM {table}"  # noqa: S608
                    f" WHERE {column} < %s{extra} LIMIT %s)",
                    (at, limit),
                )
                return cur.rowcount

            return Pruned(
                claims=delete(
                    "claims",
                    "call_session_id, rule, action",
                    "claimed_at",
                    before,
                    " AND result IS NOT NULL",
                ),
                calls=delete("calls", "call_session_id", "updated_at", before),
                timers=delete("timers", "kind, call_session_id, rule", "due_at", before),
                traces=delete("traces", "id", "at", before),
                cooldowns=delete("cooldowns", "rule, contact", "fired_at", cool),
            )

    # -- plumbing -------------------------------------------------------------------

    @contextmanager
    def _transaction(self, op: str) -> Iterator[psycopg.Cursor[Any]]:
        """One transaction on the store's connection. A psycopg error becomes
        `StoreUnavailable` and the connection is made again next time; the
        write observer hears how long a write took."""
        start = time.perf_counter()
        conn = self._connection()
        try:
            with conn.transaction(), conn.cursor() as cur:
                yield cur
        except (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure) as exc:
            # Rolled back whole; the connection itself is sound.
            raise _Conflict(
                f"state database {safe_url(self.url)}: {op} failed: {_reason(exc)}"
            ) from exc
        except psycopg.Error as exc:
            self._drop(failed=True)
            raise StoreUnavailable(
                f"state database {safe_url(self.url)}: {op} failed: {_reason(exc)}"
            ) from exc
        if self.on_write is not None and op != "read":
            self.on_write(op, time.perf_counter() - start)


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _timer(row: Sequence[Any]) -> Timer:
    kind, csid, rule, due_at, episode, shadow = row
    return Timer(TimerKind(kind), csid, rule, due_at, episode, bool(shadow))


def _migrate(conn: psycopg.Connection[Any], where: str) -> None:
    """Bring the schema to `PG_SCHEMA_VERSION` (inside the caller's
    transaction, under an advisory lock: instances starting together
    migrate once, the others wait and find it done)."""
    conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
    conn.execute(
        "CREATE TABLE IF NOT EXISTS holdd_meta (key text PRIMARY KEY, value text NOT NULL)"
    )
    row = conn.execute("SELECT value FROM holdd_meta WHERE key = 'schema_version'").fetchone()
    version = int(row[0]) if row else 0
    if version > PG_SCHEMA_VERSION:
        raise StoreError(
            f"state database {where} has schema version {version}, newer than this holdd"
            f" understands ({PG_SCHEMA_VERSION}): upgrade holdd on every instance"
        )
    if version == 0:
        taken = conn.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = current_schema()"
            " AND table_name IN ('claims', 'calls', 'timers', 'traces', 'cooldowns', 'leases')"
        ).fetchone()
        if taken and taken[0]:
            raise StoreError(
                f"state database {where}: tables named like holdd's exist but no holdd schema"
                " version; is [state] url pointing at another program's database?"
            )
    for step in PG_MIGRATIONS[version:]:
        for sql in step:
            conn.execute(sql)
    conn.execute(
        "INSERT INTO holdd_meta (key, value) VALUES ('schema_version', %s)"
        " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        (str(PG_SCHEMA_VERSION),),
    )


__all__ = ["Heartbeat", "LeaseLost", "PgStore", "StoreUnavailable", "safe_url"]
