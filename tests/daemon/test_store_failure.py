"""A state store that cannot be written: nothing goes out without its durable
claim, the daemon says why and stops (EX_TEMPFAIL, so systemd restarts it),
and the next start holds the call once."""

from __future__ import annotations

import asyncio
import io
import sqlite3
from pathlib import Path

import orjson

from holdd.config.rulefiles import load_rules
from holdd.config.settings import load_settings
from holdd.io import logs
from holdd.io.daemon import EX_TEMPFAIL, Daemon
from holdd.io.store.sqlite import StateDb
from holdd.sim.server import Simulator
from support.config import MEDIA_RULE, config_text, write_config
from support.inproc import ready


def hold_calls(sim: Simulator) -> list[int]:
    return [r.params["call_session_id"] for r in sim.requests if r.method == "hold.call"]


async def test_a_store_that_cannot_be_written_sends_nothing_and_stops(
    sim: Simulator, tmp_path: Path
) -> None:
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
    locker = sqlite3.connect(db, isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")
    try:
        csid = await sim.start_call(direction="in", contact_phone_number="79260000301")
        await sim.answer(csid)
        async with asyncio.timeout(15):
            code = await task
    finally:
        locker.execute("ROLLBACK")
        locker.close()
        store.close()
    assert code == EX_TEMPFAIL
    assert hold_calls(sim) == []  # no claim on disk, no request
    events = [orjson.loads(line) for line in buf.getvalue().splitlines()]
    [failed] = [e for e in events if e["event"] == "state_write_failed"]
    assert failed["level"] == "error" and "locked" in failed["error"]
    assert failed["requests_not_sent"] == 1

    # The next start: the call is still talking, found by resync, held once.
    again = Daemon(settings, rules)  # opens the same [state] path itself
    task = asyncio.create_task(again.run(install_signals=False))
    try:
        await again.wait_for(lambda: csid in again.outcomes, within=20)
    finally:
        again.request_stop("test over")
        async with asyncio.timeout(15):
            assert await task == 0
    assert hold_calls(sim) == [csid]
    assert again.outcomes[csid].result == "held"


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
