"""Several `holdd run` processes on one PostgreSQL database (a throwaway
cluster) and the simulator's stream: every instance reads every call and
runs the rules; the shared ledger makes exactly one of them send.

* Two instances, calls of every kind: each call that should be held is held
  once, unheld once by `unhold_after`, and `holdd explain` names the
  instance that acted.
* An instance SIGKILLed with a hold in flight and an unhold timer pending
  (the other one frozen meanwhile, so that the first wins both claims):
  the survivor takes both over once the dead one's lease expires (the hold is found
  held with `list.calls`, not sent again; the unhold goes out once); the
  gap is measured.
* PostgreSQL stopped under a running instance: nothing is sent, /readyz
  says why; once it is back the call that talked meanwhile is held once.
"""

from __future__ import annotations

import asyncio
import random
import signal
import time
from pathlib import Path

import aiohttp
import orjson

from holdd.sim.server import Simulator
from support.chaos import RULES as CHAOS_RULES
from support.chaos import Kind, Traffic, verdict, with_unhold
from support.config import config_text, write_config
from support.postgres import PASSWORD, PgConfig
from support.process import DaemonProcess, explain

UNHOLD_AFTER = 1.5
RULES = with_unhold(CHAOS_RULES, UNHOLD_AFTER)


def instance_config(sim: Simulator, pg: PgConfig, directory: Path, name: str) -> Path:
    directory.mkdir(exist_ok=True)
    text = config_text(sim, log_format="json", timeout="1s", action_deadline="20s")
    return write_config(directory, text + pg.state(lease="2s", instance=name), RULES)


def holds(sim: Simulator, csid: int) -> int:
    return sim.account.call(csid).hold_count


async def readyz(process: DaemonProcess) -> tuple[int, str]:
    [listening] = [e for e in process.events() if e["event"] == "http_listening"]
    url = f"http://127.0.0.1:{listening['port']}/readyz"
    async with aiohttp.ClientSession() as http, http.get(url) as resp:
        return resp.status, await resp.text()


async def test_two_instances_hold_and_unhold_every_call_once(
    sim: Simulator, pg: PgConfig, tmp_path: Path
) -> None:
    a = DaemonProcess(instance_config(sim, pg, tmp_path / "a", "host-a"))
    b = DaemonProcess(instance_config(sim, pg, tmp_path / "b", "host-b"))
    await a.start()
    await b.start()
    try:
        await sim.wait_for_clients(2)
        await a.wait_event(lambda e: e["event"] == "resync_done")
        await b.wait_event(lambda e: e["event"] == "resync_done")
        traffic = Traffic(sim, random.Random(13), rate=40.0)
        async with traffic.flowing(limit=60):
            await traffic.wait_emitted(60)
        should = traffic.expected_held()
        vip = [c for c in should if traffic.calls[c] is Kind.NOW]

        def done() -> bool:
            account = sim.account
            return traffic.all_held() and all(account.call(c).unhold_count for c in vip)

        async with asyncio.timeout(30):
            while not done():
                await sim.wait_for_requests(len(sim.requests) + 1, timeout=30)
        result = verdict(traffic)
        print(result.report("two instances, one PostgreSQL"))
        assert result.should_hold > 10
        assert result.held_once == result.should_hold
        assert not result.twice and not result.wrongly_held
        assert [sim.account.call(c).unhold_count for c in vip] == [1] * len(vip)
        sent = {
            name: sum(e["event"] == "hold_sent" for e in p.events())
            for name, p in (("a", a), ("b", b))
        }
        skipped = sum(
            e["event"] == "hold_skipped" and e.get("reason") == "already_claimed"
            for p in (a, b)
            for e in p.events()
        )
        print(f"  holds sent by a: {sent['a']}, by b: {sent['b']}; refused claims: {skipped}")
        assert sent["a"] + sent["b"] == result.should_hold
        assert skipped >= 1  # both decided; the ledger chose
        # `holdd explain` against the shared store names who acted.
        csid = vip[0]
        stdout = await explain(a.config, csid)
        assert "claim hold by rule 'vip-now' on instance host-" in stdout
        assert "claim unhold by rule 'vip-now' on instance host-" in stdout
    finally:
        assert await a.stop() == 0
        assert await b.stop() == 0
    for process in (a, b):
        opened = [e for e in process.events() if e["event"] == "state_opened"]
        assert opened and opened[0]["url"] == pg.cluster.url
        assert all(PASSWORD.encode() not in line for line in process.raw)


async def test_a_killed_instances_hold_in_flight_and_timer_go_to_the_survivor(
    sim: Simulator, pg: PgConfig, tmp_path: Path
) -> None:
    a = DaemonProcess(instance_config(sim, pg, tmp_path / "a", "host-a"))
    b = DaemonProcess(instance_config(sim, pg, tmp_path / "b", "host-b"))
    await a.start()
    await b.start()
    try:
        await sim.wait_for_clients(2)
        await a.wait_event(lambda e: e["event"] == "resync_done")
        await b.wait_event(lambda e: e["event"] == "resync_done")
        # b is running but frozen while a takes the next two calls, so that a
        # wins both claims; a dies a moment later (tens of ms), well within
        # its request timeout (1 s) and the unhold_after (1.5 s), with no
        # second instance starting up in between to slow the machine down.
        b.send(signal.SIGSTOP)
        try:
            # Held by a, its unhold timer pending when a dies.
            timed = await sim.start_call(direction="in", contact_phone_number="79260000101")
            await sim.answer(timed)
            await a.wait_event(
                lambda e: e["event"] == "hold_sent" and e["call_session_id"] == timed
            )
            # Applied by the API, its answer never reaches a.
            sim.faults.delay(60.0, n=1, method="hold.call", after_apply=True)
            flying = await sim.start_call(direction="in", contact_phone_number="79260000102")
            await sim.answer(flying)
            await sim.faults.wait_for_attempts(2, method="hold.call", answered=False)
            assert await a.stop(signal.SIGKILL) == -signal.SIGKILL
            killed_at = time.monotonic()
        finally:
            b.send(signal.SIGCONT)
        # Talk that starts after the kill: the survivor holds it at once.
        fresh = await sim.start_call(direction="in", contact_phone_number="79260000103")
        await sim.answer(fresh)
        adopted = await b.wait_event(lambda e: e["event"] == "instance_work_adopted", 20)
        resolved = await b.wait_event(
            lambda e: e["event"] == "claim_resolved" and e["call_session_id"] == flying, 20
        )
        gap = time.monotonic() - killed_at
        await b.wait_event(lambda e: e["event"] == "unhold_sent" and e["call_session_id"] == timed)
        await b.wait_event(
            lambda e: e["event"] == "unhold_sent" and e["call_session_id"] == flying, 20
        )
        print(
            f"  failover: work adopted {adopted['claims']} claim(s), {adopted['timers']}"
            f" timer(s); the hold in flight settled {gap:.2f} s after the kill"
            f" (lease 2 s + request timeout 1 s + 1 s)"
        )
        assert (adopted["claims"], adopted["timers"]) == (1, 1)
        assert resolved["result"] == "held"
        assert gap < 10
        assert [holds(sim, c) for c in (timed, flying, fresh)] == [1, 1, 1]
        assert sim.account.call(timed).unhold_count == 1
        assert sim.account.call(flying).unhold_count == 1
        status, _body = await readyz(b)
        assert status == 200
    finally:
        await a.kill()
        assert await b.stop() == 0


async def test_postgresql_down_sends_nothing_then_holds_once(
    sim: Simulator, pg: PgConfig, tmp_path: Path
) -> None:
    a = DaemonProcess(instance_config(sim, pg, tmp_path / "a", "host-a"))
    await a.start()
    try:
        await a.ready(sim)
        pg.cluster.pg_stop("immediate")
        try:
            csid = await sim.start_call(direction="in", contact_phone_number="79260000201")
            await sim.answer(csid)
            await a.wait_event(lambda e: e["event"] == "state_write_failed")
            status, body = await readyz(a)
            assert status == 503 and "state store failing" in body, body
            assert holds(sim, csid) == 0
        finally:
            pg.cluster.pg_start()
        back = time.monotonic()
        try:
            await a.wait_event(lambda e: e["event"] == "state_write_recovered", 30)
        except TimeoutError:
            print(b"\n".join(a.raw[-30:]).decode())
            raise
        await a.wait_event(lambda e: e["event"] == "hold_sent" and e["call_session_id"] == csid)
        print(f"  held {time.monotonic() - back:.2f} s after PostgreSQL was back")
        assert holds(sim, csid) == 1
        # The commit that claimed it renewed the lease: ready again.
        status, body = await readyz(a)
        assert status == 200, body
    finally:
        assert await a.stop() == 0
    [failed] = [e for e in a.events() if e["event"] == "state_write_failed"]
    assert PASSWORD not in str(failed)


SECRET = "wh-secret-several-0123456789"
WEBHOOK = f'\n[webhook]\nlisten = "127.0.0.1:0"\npath = "/uis/notify"\nsecret = "{SECRET}"\n'


async def test_a_call_only_a_dead_instance_heard_of_is_held_by_the_survivor(
    sim: Simulator, pg: PgConfig, tmp_path: Path
) -> None:
    """A load balancer spreads UIS's webhook posts: the only notification of a
    call goes to an instance that dies before it acts. The survivor takes
    the dead one's work over, lists the calls, and holds it."""
    processes = []
    for name in ("a", "b"):
        directory = tmp_path / name
        directory.mkdir()
        text = config_text(sim, stream=False, log_format="json", timeout="1s")
        text += WEBHOOK + pg.state(lease="2s", instance=f"host-{name}")
        processes.append(DaemonProcess(write_config(directory, text, RULES)))
    a, b = processes
    for p in processes:
        await p.start()
        await p.wait_event(lambda e: e["event"] == "resync_done")
    [listening] = [e for e in a.events() if e["event"] == "webhook_listening"]
    try:
        a.send(signal.SIGSTOP)  # a hangs with the post in its socket, then dies
        csid = await sim.start_call(direction="in", contact_phone_number="79260000301")
        await sim.answer(csid)
        body = {
            "notification_name": "Начало разговора",
            "notification_mnemonic": "talk_started",
            "call_session_id": csid,
            "direction": "in",
            "contact_phone_number": "79260000301",
            "secret": SECRET,
        }
        # Handed to the kernel of a's socket: a never reads it.
        payload = orjson.dumps(body)
        _reader, writer = await asyncio.open_connection("127.0.0.1", listening["port"])
        writer.write(
            b"POST /uis/notify HTTP/1.1\r\nHost: holdd\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(payload)}\r\n\r\n".encode()
            + payload
        )
        await writer.drain()
        assert await a.stop(signal.SIGKILL) == -signal.SIGKILL
        writer.close()
        await b.wait_event(lambda e: e["event"] == "instance_work_adopted", 20)
        await b.wait_event(lambda e: e["event"] == "hold_sent" and e["call_session_id"] == csid, 20)
        assert holds(sim, csid) == 1
    finally:
        await a.kill()
        assert await b.stop() == 0
