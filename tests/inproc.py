"""The daemon in this test's own event loop, against the simulator (test helper)."""

from __future__ import annotations

import asyncio
import contextlib
import io
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson

from holdd.config.rulefiles import load_rules
from holdd.config.settings import load_settings
from holdd.io import logs
from holdd.io.daemon import Daemon

MEDIA_RULE = """
[[rule]]
name = "all-inbound"
[rule.match]
direction = "in"
[rule.hold]
media = "2034"
"""


def config_text(
    *, callapi_url: str, token: str, notify_url: str | None = None, extra: str = ""
) -> str:
    text = f'[callapi]\nurl = "{callapi_url}"\naccess_token = "{token}"\ntimeout = "5s"\n'
    if notify_url is not None:
        text += f'\n[notify]\nurl = "{notify_url}"\n'
    text += '\n[rules]\nfiles = ["rules.d/*.toml"]\n\n[http]\nlisten = "127.0.0.1:0"\n'
    return text + extra


class LogCapture:
    def __init__(self) -> None:
        self.buf = io.BytesIO()

    def events(self, name: str | None = None) -> list[dict[str, Any]]:
        out = [orjson.loads(line) for line in self.buf.getvalue().splitlines()]
        return [e for e in out if name is None or e["event"] == name]


@contextlib.asynccontextmanager
async def running_daemon(
    tmp_path: Path, config: str, rules: str = MEDIA_RULE
) -> AsyncIterator[tuple[Daemon, LogCapture]]:
    """Start a Daemon with `config`; stop it (and check it stopped cleanly) on exit."""
    (tmp_path / "rules.d").mkdir(exist_ok=True)
    (tmp_path / "rules.d" / "rules.toml").write_text(rules, encoding="utf-8")
    path = tmp_path / "holdd.toml"
    path.write_text(config, encoding="utf-8")
    settings = load_settings(path)
    capture = LogCapture()
    logs.configure(fmt="json", level="debug", secrets=settings.secrets, stream=capture.buf)
    daemon = Daemon(settings, load_rules(settings.rule_files, settings.tts_max_length))
    task = asyncio.create_task(daemon.run(install_signals=False))
    try:
        yield daemon, capture
    finally:
        daemon.request_stop("test over")
        async with asyncio.timeout(15):
            code = await task
        assert code == 0
