"""A state store that cannot be written: nothing goes out without its durable
claim, the daemon says why, tries the same writes again until they land,
and then holds the call once; a store deleted under it stops it (78)."""

from __future__ import annotations

import asyncio
import io
import sqlite3
from pathlib import Path

import aiohttp
import orjson

from holdd.config.rulefiles import load_rules
from holdd.config.settings import load_settings
from holdd.io import logs
from holdd.io.daemon import Daemon
from holdd.io.store.sqlite import StateDb
from holdd.sim.server import Simulator
from support.config import MEDIA_RULE, config_text, write_config
from support.inproc import ready


def hold_calls(sim: Simulator) -> list[int]:
    return [r.params["call_session_id"] for r in sim.requests if r.method == "hold.call"]


async def probe(url: str, path: str) -> tuple[int, dict[str, object]]:
    async with aiohttp.ClientSession() as http, http.get(f"{url}{path}") as resp:
        return resp.status, await resp.json()


async def test_a_locked_store_sends_nothing_until_it_can_write_then_holds_once(
    sim: Simulator, tmp_path: Path
) -> None:
    """Another connection holds the write lock: the turn's writes are tried
    again; nothing is sent meanwhile, /readyz says why, /healthz answers;
    once the lock goes the call is held once and /readyz is 200 again."""
    config = write_config(tmp_path, config_text(sim), MEDIA_RULE)
    settings = load_settings(config)
    rules = load_rules(settings.rule_files, settings.tts_max_length)
    db = settings.state_path
    buf = io.BytesIO()
    logs.configure(fmt="json", level="info", secrets=settings.secrets, stream=buf)

    # A short busy timeout: another process holding the write lock fails the commit.
    store = StateDb.open(db, busy_timeout=0.2)
    daemon = Daemon(settings, rules, store=store)
    task = asyncio.create_task(daemon.run(install_signals=False))
    await ready(daemon, sim)
    assert daemon.services.http is not None
    url = daemon.services.http.url
    locker = sqlite3.connect(db, isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")
    try:
        csid = await sim.start_call(direction="in", contact_phone_number="79260000301")
        await sim.answer(csid)
        await daemon.wait_for(lambda: daemon.store_trouble is not None, within=15)
        status, body = await probe(url, "/readyz")
        assert status == 503
        assert "state store failing" in str(body) and "locked" in str(body)
        # The loop waits for the store, the probes do not.
        assert (await probe(url, "/healthz"))[0] == 200
        attempts = daemon._store_failures
        await daemon.wait_for(lambda: daemon._store_failures >= attempts + 2, within=15)
        assert hold_calls(sim) == []  # no claim on disk, no request
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    try:
        await daemon.wait_for(lambda: csid in daemon.outcomes, within=20)
        status, body = await probe(url, "/readyz")
    finally:
        daemon.request_stop("test over")
        async with asyncio.timeout(15):
            code = await task
        store.close()
    assert code == 0
    assert status == 200, body
    assert hold_calls(sim) == [csid]
    assert daemon.outcomes[csid].result == "held"
    events = [orjson.loads(line) for line in buf.getvalue().splitlines()]
    [failed] = [e for e in events if e["event"] == "state_write_failed"]
    assert failed["level"] == "error" and "locked" in failed["error"]
    assert failed["requests_waiting"] == 1  # the hold decided in the turn that waited
    [recovered] = [e for e in events if e["event"] == "state_write_recovered"]
    assert recovered["attempts"] >= 3


async def test_a_state_database_deleted_under_the_daemon_stops_it_with_78(
    sim: Simulator, tmp_path: Path
) -> None:
    """Not a write to an unlinked file, nor a restart on an empty ledger that
    could act on calls again: a clear error, exit 78 (no restart loop)."""
    settings = load_settings(write_config(tmp_path, config_text(sim), MEDIA_RULE))
    buf = io.BytesIO()
    logs.configure(fmt="json", level="info", secrets=settings.secrets, stream=buf)
    daemon = Daemon(settings, load_rules(settings.rule_files))
    task = asyncio.create_task(daemon.run(install_signals=False))
    await ready(daemon, sim)
    for path in settings.state_path.parent.glob(settings.state_path.name + "*"):
        path.unlink()
    csid = await sim.start_call(direction="in", contact_phone_number="79260000302")
    await sim.answer(csid)
    async with asyncio.timeout(15):
        code = await task
    assert code == 78
    assert hold_calls(sim) == []
    events = [orjson.loads(line) for line in buf.getvalue().splitlines()]
    [replaced] = [e for e in events if e["event"] == "state_replaced"]
    assert replaced["level"] == "error" and "deleted or replaced" in replaced["error"]
    assert str(settings.state_path) in replaced["error"]
