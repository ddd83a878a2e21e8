"""A task of the daemon that crashes (a bug) takes the daemon down cleanly:
one `holdd_failed` line with the exception, every other task stopped, exit
code 1 for systemd to restart it; recovery then starts from the store."""

from __future__ import annotations

import asyncio
from pathlib import Path

from holdd.config.rulefiles import load_rules
from holdd.config.settings import load_settings
from holdd.io import logs
from holdd.io.daemon import Daemon
from holdd.sim.server import Simulator
from support.config import config_text, write_config
from support.logs import LogCapture


async def test_a_crashing_task_is_logged_once_and_exits_1(sim: Simulator, tmp_path: Path) -> None:
    settings = load_settings(write_config(tmp_path, config_text(sim)))
    capture = LogCapture()
    logs.configure(fmt="json", level="info", secrets=settings.secrets, stream=capture.buffer)
    daemon = Daemon(settings, load_rules(settings.rule_files))

    async def sweep_with_a_bug() -> None:
        await daemon.wait_for(lambda: daemon.resyncs >= 1, within=20)
        raise RuntimeError("a bug in the sweep")

    # The daemon's own sweep task, replaced by one that fails once it is running.
    daemon.services._sweep = sweep_with_a_bug  # type: ignore[method-assign]
    async with asyncio.timeout(30):
        code = await daemon.run(install_signals=False)
    assert code == 1
    [failed] = capture.events("holdd_failed")
    assert failed["level"] == "error"
    assert "a bug in the sweep" in str(failed.get("exception"))
    [stopped] = capture.events("holdd_stopped")
    assert stopped["exit_code"] == 1
