"""A state database whose content is damaged (docs/operations.md
`state_corrupt`, `state_unusable`): whether holdd finds it at start or while
it runs, it stops with exit 78 (no restart loop on the same damage) and
sends nothing of the turn it could not write; unlike a full disk or a lock
(test_store_failure.py, test_store_faults.py), trying again cannot mend it.

The file is damaged for real: a clean run writes calls and claims, then its
bytes are overwritten - the first page's header ("file is not a database")
or every page after the first ("database disk image is malformed")."""

from __future__ import annotations

import asyncio
import io
import random
import sqlite3
from pathlib import Path
from typing import Any

import orjson
import pytest

from holdd.config.rulefiles import load_rules
from holdd.config.settings import Settings, load_settings
from holdd.io import logs
from holdd.io.daemon import Daemon
from holdd.sim.server import Simulator
from support.config import MEDIA_RULE, config_text, write_config
from support.inproc import ready
from support.sim import talking_call

#: What SQLite says for each kind of damage.
DAMAGE = {"header": "file is not a database", "pages": "database disk image is malformed"}


def hold_calls(sim: Simulator) -> list[int]:
    return [r.params["call_session_id"] for r in sim.requests if r.method == "hold.call"]


def damage(db: Path, where: str) -> None:
    """Overwrite `db` in place (same inode: not a replaced file): the first
    100 bytes (SQLite's header), or every page after the first, with bytes
    that are no SQLite page."""
    with sqlite3.connect(db) as conn:
        page = int(conn.execute("PRAGMA page_size").fetchone()[0])
    conn.close()
    size = db.stat().st_size
    assert size > page, "nothing past the first page to damage"
    noise = random.Random(7)
    with db.open("r+b") as f:
        if where == "header":
            f.write(noise.randbytes(100))
        else:
            f.seek(page)
            f.write(noise.randbytes(size - page))


def reset_wal(db: Path) -> None:
    """Copy the daemon's WAL into the file and empty it, from a second
    connection. SQLite keeps the pages a connection has read in its cache;
    the WAL reset makes the daemon's connection read them from the file
    again, as a long-running daemon does whenever its cache turns over."""
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        busy, _log, _done = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    finally:
        conn.close()
    assert busy == 0


def events(buf: io.BytesIO) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in buf.getvalue().splitlines()]


def start(settings: Settings) -> tuple[Daemon, io.BytesIO, asyncio.Task[int]]:
    buf = io.BytesIO()
    logs.configure(fmt="json", level="info", secrets=settings.secrets, stream=buf)
    daemon = Daemon(settings, load_rules(settings.rule_files))
    return daemon, buf, asyncio.create_task(daemon.run(install_signals=False))


async def first_run(sim: Simulator, settings: Settings) -> int:
    """A clean run that holds one call: the file has calls, claims, traces."""
    daemon, _buf, task = start(settings)
    await ready(daemon, sim)
    csid = await talking_call(sim, direction="in", contact_phone_number="79260000401")
    await daemon.wait_for(lambda: csid in daemon.outcomes)
    daemon.request_stop("test over")
    async with asyncio.timeout(15):
        assert await task == 0
    return csid


@pytest.mark.parametrize("where", ["header", "pages"])
async def test_a_damaged_file_at_start_exits_78(sim: Simulator, tmp_path: Path, where: str) -> None:
    """The header damaged: opening fails (`state_unusable`). Every page but
    the first: it opens, and reading the calls back fails (`state_corrupt`).
    Either way 78, so systemd does not restart into the same damage."""
    settings = load_settings(write_config(tmp_path, config_text(sim), MEDIA_RULE))
    held = await first_run(sim, settings)
    db = settings.state_path
    assert not db.with_name(db.name + "-wal").exists()  # checkpointed at the clean stop
    damage(db, where)
    _daemon, buf, task = start(settings)
    async with asyncio.timeout(15):
        code = await task
    assert code == 78
    assert hold_calls(sim) == [held]  # the second run sent nothing
    lines = events(buf)
    event = "state_unusable" if where == "header" else "state_corrupt"
    [line] = [e for e in lines if e["event"] == event]
    assert line["level"] == "error" and line["path"] == str(db)
    assert DAMAGE[where] in line["error"]
    if where == "pages":
        assert "backup" in line["hint"]
    assert not [e for e in lines if e["event"] == "state_write_failed"]
    print(f"damaged {where} at start: {event}: {line['error']}")


@pytest.mark.parametrize("where", ["header", "pages"])
async def test_a_file_damaged_while_holdd_runs_stops_it_with_78_sending_nothing(
    sim: Simulator, tmp_path: Path, where: str
) -> None:
    """The damage is found by the next write: `state_corrupt` with the path
    and what to do, the hold decided in that turn is not sent, exit 78 - not
    `state_write_failed` and a retry that could never succeed."""
    settings = load_settings(write_config(tmp_path, config_text(sim), MEDIA_RULE))
    daemon, buf, task = start(settings)
    try:
        await ready(daemon, sim)
        first = await talking_call(sim, direction="in", contact_phone_number="79260000402")
        await daemon.wait_for(lambda: first in daemon.outcomes)
        db = settings.state_path
        reset_wal(db)
        damage(db, where)
        second = await talking_call(sim, direction="in", contact_phone_number="79260000403")
        async with asyncio.timeout(15):
            code = await task
    finally:
        if not task.done():
            daemon.request_stop("test failed")
            await task
    assert code == 78
    assert hold_calls(sim) == [first]
    assert second not in daemon.outcomes
    lines = events(buf)
    [line] = [e for e in lines if e["event"] == "state_corrupt"]
    assert line["level"] == "error" and line["path"] == str(db)
    assert DAMAGE[where] in line["error"]
    assert line["requests_not_sent"] == 1  # the second call's hold
    assert "backup" in line["hint"] and "move it" in line["hint"]
    assert not [e for e in lines if e["event"] == "state_write_failed"]
    [stopped] = [e for e in lines if e["event"] == "holdd_stopped"]
    assert stopped["exit_code"] == 78
    print(f"damaged {where} while running: {line['error']}")
