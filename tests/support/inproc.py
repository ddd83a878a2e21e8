"""The daemon in this test's own event loop, against the simulator (test helper)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

from holdd.config.rulefiles import load_rules
from holdd.config.settings import load_settings
from holdd.io import logs
from holdd.io.daemon import Daemon
from holdd.sim.server import Simulator
from support.config import MEDIA_RULE, write_config
from support.logs import LogCapture


@contextlib.asynccontextmanager
async def running_daemon(
    tmp_path: Path, config: str, rules: str = MEDIA_RULE, *, debug: bool = False
) -> AsyncIterator[tuple[Daemon, LogCapture]]:
    """Start a Daemon with `config`; stop it (and check it stopped cleanly) on exit.

    The capture takes every line the daemon's loggers make; the machine
    makes a call's debug lines (`call_talk_started`, `rule_matched`, ...)
    only at `[log] level = "debug"`, or with `debug`."""
    settings = load_settings(write_config(tmp_path, config, rules))
    if debug:
        settings = replace(settings, log_level="debug")
    capture = LogCapture()
    logs.configure(fmt="json", level="debug", secrets=settings.secrets, stream=capture.buffer)
    daemon = Daemon(settings, load_rules(settings.rule_files, settings.tts_max_length))
    task = asyncio.create_task(daemon.run(install_signals=False))
    try:
        yield daemon, capture
    finally:
        daemon.request_stop("test over")
        async with asyncio.timeout(15):
            code = await task
        assert code == 0


async def ready(daemon: Daemon, sim: Simulator | None = None) -> None:
    """Wait until the daemon is ready: its stream client connected to `sim`
    (if given) and a resync done; with no `sim` (webhook only), its webhook
    listening as well."""
    if sim is not None:
        await sim.wait_for_clients(1)
        await daemon.wait_for(lambda: daemon.resyncs >= 1)
    else:
        await daemon.wait_for(lambda: daemon.webhook_address is not None and daemon.resyncs >= 1)
