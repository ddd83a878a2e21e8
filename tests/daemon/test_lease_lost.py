"""An instance on the shared store whose lease another instance took over
(here: the row removed, as an adopter does) sends nothing more: its next
write fails, it logs `lease_lost` and exits 75 for systemd to restart it
under a new lease."""

from __future__ import annotations

import asyncio
from pathlib import Path

import psycopg

from holdd.config.rulefiles import load_rules
from holdd.config.settings import load_settings
from holdd.io import logs
from holdd.io.daemon import EX_TEMPFAIL, Daemon
from holdd.io.store.postgres import PgStore
from holdd.sim.server import Simulator
from support.config import MEDIA_RULE, config_text, write_config
from support.inproc import ready
from support.logs import LogCapture
from support.postgres import PASSWORD, PgConfig


async def test_an_instance_whose_lease_was_taken_sends_nothing_and_exits_75(
    sim: Simulator, pg: PgConfig, tmp_path: Path
) -> None:
    settings = load_settings(
        write_config(tmp_path, config_text(sim) + pg.state(lease="30s"), MEDIA_RULE)
    )
    capture = LogCapture()
    logs.configure(fmt="json", level="info", secrets=settings.secrets, stream=capture.buffer)
    daemon = Daemon(settings, load_rules(settings.rule_files))
    task = asyncio.create_task(daemon.run(install_signals=False))
    await ready(daemon, sim)
    assert isinstance(daemon.store, PgStore)
    with psycopg.connect(pg.cluster.url, password=PASSWORD, autocommit=True) as conn:
        conn.execute("DELETE FROM leases WHERE instance = %s", (daemon.store.instance,))
    csid = await sim.start_call(direction="in", contact_phone_number="79260000601")
    await sim.answer(csid)
    async with asyncio.timeout(15):
        code = await task
    assert code == EX_TEMPFAIL
    [lost] = capture.events("lease_lost")
    assert lost["level"] == "error" and lost["requests_not_sent"] == 1
    assert sim.account.call(csid).hold_count == 0
    assert not [r for r in sim.requests if r.method == "hold.call"]
