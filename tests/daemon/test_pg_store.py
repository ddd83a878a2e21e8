"""The shared PostgreSQL store on a real throwaway cluster: a claim is won by
one instance only, a retried commit does not refuse its own claim, a dead
instance's open claims and timers go to exactly one survivor, an instance
taken for dead cannot write again, and instances starting together migrate
the schema once."""

from __future__ import annotations

import threading
import time
from typing import Any

import psycopg
import pytest

from holdd.core.errors import StoreError
from holdd.core.records import (
    AddTrace,
    CallRecord,
    Claim,
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
from holdd.io.store.postgres import LeaseLost, PgStore, safe_url
from support.postgres import PASSWORD, PgConfig


def open_store(pg: PgConfig, lease: float = 30.0, name: str | None = None) -> PgStore:
    return PgStore.open(pg.cluster.url, password=PASSWORD, lease=lease, name=name)


def talking(csid: int) -> SaveCall:
    return SaveCall(CallRecord(csid, 1, 100.0, CallState.TALK, 100.0, {"direction": "in"}))


def test_one_instance_wins_each_claim_and_a_retry_keeps_its_own(pg: PgConfig) -> None:
    a, b = open_store(pg, name="a"), open_store(pg, name="b")
    try:
        claim = Claim(1, "vip", "hold", 100.0)
        assert a.commit([talking(1), PutClaim(claim)]) == set()
        # The same turn again (its COMMIT's answer was lost): still ours.
        assert a.commit([PutClaim(claim)]) == set()
        # Another instance deciding the same call is refused.
        assert b.commit([PutClaim(Claim(1, "vip", "hold", 100.2))]) == {(1, "vip", "hold")}
        # ... and cannot release or finish what it does not own.
        b.commit([ReleaseClaim((1, "vip", "hold")), FinishClaim((1, "vip", "hold"), "x", 101.0)])
        [row] = a.claims(1)
        assert (row.owner, row.result) == (a.instance, None)
        a.commit([FinishClaim((1, "vip", "hold"), "held", 100.5)])
        [row] = b.claims(1)
        assert (row.result, row.owner) == ("held", a.instance)
        assert row.owner is not None and row.owner.startswith("a-")
    finally:
        a.close()
        b.close()


def test_a_commit_aborted_by_a_deadlock_is_run_again(pg: PgConfig) -> None:
    """Two instances save the same calls in different orders (each as its
    turns met them): PostgreSQL aborts one commit as a deadlock, and the
    store runs it again at once instead of failing the write (which would
    stall the daemon's loop on its backoff while the lease runs out)."""
    a, b = open_store(pg, name="a"), open_store(pg, name="b")
    try:
        a.commit([talking(csid) for csid in (1, 2, 3, 4)])
        results: dict[str, object] = {}

        def commit(store: PgStore, order: tuple[int, ...]) -> None:
            try:
                results[store.instance] = store.commit([talking(csid) for csid in order])
            except StoreError as exc:
                results[store.instance] = exc

        def wait_for_waiters(watcher: psycopg.Connection[Any], n: int) -> None:
            deadline = time.monotonic() + 30
            while watcher.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
            ).fetchone() != (n,):
                assert time.monotonic() < deadline, f"never {n} commits waiting"
                time.sleep(0.01)

        threads = [
            threading.Thread(target=commit, args=(a, (1, 3, 2))),
            threading.Thread(target=commit, args=(b, (2, 4, 1))),
        ]
        with (
            psycopg.connect(pg.cluster.url, password=PASSWORD) as holder,
            psycopg.connect(pg.cluster.url, password=PASSWORD, autocommit=True) as watcher,
        ):
            # `a` takes call 1 and waits for call 3, held here; `b` takes 2
            # and 4 and waits for `a`'s call 1. Released, `a` takes 3 and
            # waits for `b`'s call 2: a deadlock, every time.
            holder.execute("SELECT 1 FROM calls WHERE call_session_id = 3 FOR UPDATE")
            threads[0].start()
            wait_for_waiters(watcher, 1)
            threads[1].start()
            wait_for_waiters(watcher, 2)
            holder.rollback()
        for thread in threads:
            thread.join(60)
        assert results == {a.instance: set(), b.instance: set()}
        assert (a.conflicts, b.conflicts) in ((1, 0), (0, 1))
    finally:
        a.close()
        b.close()


def test_a_dead_instances_work_goes_to_exactly_one_survivor(pg: PgConfig) -> None:
    dead = open_store(pg, lease=1.0, name="dead")
    timer = Timer(TimerKind.UNHOLD, 7, "vip", 150.0, 1)
    dead.commit(
        [
            talking(7),
            PutClaim(Claim(7, "vip", "hold", 100.0)),
            PutTimer(timer),
            talking(8),
            PutClaim(Claim(8, "vip", "hold", 100.0)),
            FinishClaim((8, "vip", "hold"), "held", 100.1),
        ]
    )
    survivors = [open_store(pg, lease=30.0, name=f"s{i}") for i in range(3)]
    try:
        # The dead one never renews; the survivors beat until its lease is gone.
        adopted = []
        with psycopg.connect(pg.cluster.url, password=PASSWORD, autocommit=True) as conn:
            conn.execute(
                "UPDATE leases SET expires_at = now() - interval '1 second' WHERE instance = %s",
                (dead.instance,),
            )
        barrier = threading.Barrier(3)

        def beat(store: PgStore) -> None:
            barrier.wait()
            adopted.append((store.instance, store.heartbeat(200.0)))

        threads = [threading.Thread(target=beat, args=(s,)) for s in survivors]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        takers = [(who, beat.adopted) for who, beat in adopted if beat.adopted is not None]
        assert len(takers) == 1, takers
        who, work = takers[0]
        assert work is not None
        # Only the open claim; the finished one needs no settling.
        assert [c.key for c in work.claims] == [(7, "vip", "hold")]
        assert work.timers == [timer]
        assert [c.call_session_id for c in work.calls] == [7]
        assert work.instances == [dead.instance]
        # Its requests may still land for a request timeout after the expiry.
        assert 0 < work.settle_in <= dead.settle_margin
        [row] = survivors[0].claims(7)
        assert row.owner == who
        # The dead one, were it only paused, can no longer write anything.
        with pytest.raises(LeaseLost):
            dead.commit([PutClaim(Claim(9, "vip", "hold", 100.0))])
        assert survivors[0].claims(9) == []
        assert {beat.live for _who, beat in adopted} == {3}
    finally:
        for s in survivors:
            s.close()
        dead.close()


def test_cooldowns_and_traces_are_seen_across_instances(pg: PgConfig) -> None:
    a, b = open_store(pg, name="a"), open_store(pg, name="b")
    try:
        b.heartbeat(1000.0)  # what b has seen so far
        a.commit(
            [
                talking(3),
                RecordCooldown("vip", "+7 926 000-00-01", 1000.5),
                AddTrace(TraceEntry(3, 1000.5, TraceKind.ACTION, {"result": "held"})),
            ]
        )
        beat = b.heartbeat(1001.0)
        assert ("vip", "79260000001", 1000.5) in beat.cooldowns
        [entry] = b.trace(3)
        assert entry.instance == a.instance and entry.payload == {"result": "held"}
        restored = b.load(cooldowns_since=0.0)
        assert [c.call_session_id for c in restored.calls] == [3]
    finally:
        a.close()
        b.close()


def test_instances_starting_together_migrate_once(pg: PgConfig) -> None:
    stores: list[PgStore] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def start() -> None:
        barrier.wait()
        try:
            stores.append(open_store(pg))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    try:
        assert errors == []
        assert len(stores) == 4
        assert len(stores[0].instances()) == 4
    finally:
        for s in stores:
            s.close()
    with psycopg.connect(pg.cluster.url, password=PASSWORD) as conn:
        row = conn.execute("SELECT value FROM holdd_meta WHERE key = 'schema_version'").fetchone()
    assert row == ("1",)


def test_another_programs_tables_are_not_taken_for_holdds(pg: PgConfig) -> None:
    with psycopg.connect(pg.cluster.url, password=PASSWORD, autocommit=True) as conn:
        conn.execute("CREATE TABLE claims (id int)")
    with pytest.raises(StoreError, match="another program's database"):
        open_store(pg)


def test_an_unreachable_database_is_a_clear_error_without_the_password() -> None:
    url = "postgresql://holdd:s3cret-pw@127.0.0.1:1/holdd"
    with pytest.raises(StoreError) as caught:
        PgStore.open(url, connect_timeout=1)
    assert "s3cret-pw" not in str(caught.value)
    assert "127.0.0.1" in str(caught.value)
    assert safe_url(url) == "postgresql://holdd:***@127.0.0.1:1/holdd"
    assert safe_url("postgresql://holdd@db/x") == "postgresql://holdd@db/x"


def test_prune_keeps_open_claims(pg: PgConfig) -> None:
    a = open_store(pg)
    try:
        a.commit(
            [
                talking(1),
                PutClaim(Claim(1, "r", "hold", 10.0)),
                PutClaim(Claim(2, "r", "hold", 10.0)),
                FinishClaim((2, "r", "hold"), "held", 11.0),
            ]
        )
        pruned = a.prune(before=1000.0)
        assert pruned.claims == 1 and pruned.calls == 1
        assert [c.key for c in a.claims(1)] == [(1, "r", "hold")]
        assert a.claims(2) == []
    finally:
        a.close()
