"""The core imports no asyncio, aiohttp or websockets (house-style.md "Shape")."""

from __future__ import annotations

import os
import subprocess
import sys

CORE = [
    "holdd.core.events",
    "holdd.core.calls",
    "holdd.core.states",
    "holdd.core.rules",
    "holdd.core.rules.engine",
    "holdd.config.rulefiles",
    "holdd.core.rules.patterns",
    "holdd.core.machine",
    "holdd.core.hold_policy",
    "holdd.core.virtual",
    "holdd.core.records",
    "holdd.config.settings",
    "holdd.core.durations",
    "holdd.core.backoff",
    "holdd.config.toml",
]
SHELL_ONLY = ("asyncio", "aiohttp", "websockets", "sqlite3")


def test_core_modules_import_no_io_libraries() -> None:
    code = (
        "import sys\n"
        + "".join(f"import {m}\n" for m in CORE)
        + f"bad = sorted(m for m in sys.modules if m.split('.')[0] in {SHELL_ONLY!r})\n"
        + "print(','.join(bad))\n"
    )
    # Without coverage's start-up hook: coverage itself keeps its data in sqlite3.
    env = {k: v for k, v in os.environ.items() if not k.startswith("COVERAGE")}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    )
    assert out.stdout.strip() == ""


def test_the_check_itself_sees_a_shell_module() -> None:
    # Guard against a test that cannot fail: the shell does pull these in.
    code = "import sys, holdd.callapi; print('aiohttp' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True"
