"""Lines of keys, array elements and inline-table keys; durations both ways;
the new core modules stay free of I/O libraries."""

from __future__ import annotations

import subprocess
import sys

import pytest

from holdd.config.toml import KeyLines, validation_path
from holdd.core.durations import format_duration, parse_duration

TEXT = '''# a comment with [brackets] and key = "value"
title = "x # not a comment"
[[rule]]
name = "a"
[rule.match]
contact_phone_number = [
  "7926*",   # a comment, with a comma
  # a whole-line comment
  "re:((",
]
"quoted.key" = 1
[[rule]]
name = "b"
tts = """
multi-line with "quotes" and [brackets]
= not a key
"""
after = "2s"
call = { call_session_id = 1, direction = "in" }
events = [
  { at = "0s", x = [1, 2] },
  { at = "1s" },
]
'''


def test_key_lines() -> None:
    k = KeyLines(TEXT)
    assert k.find(("title",)) == 2
    assert k.find(("rule",)) == 3
    assert k.find(("rule", 0, "match", "contact_phone_number")) == 6
    assert k.find(("rule", 0, "match", "contact_phone_number", 0)) == 7
    assert k.find(("rule", 0, "match", "contact_phone_number", 1)) == 9
    assert k.find(("rule", 0, "match", "quoted.key")) == 11
    assert k.find(("rule", 1)) == 12
    assert k.find(("rule", 1, "after")) == 18
    assert k.find(("rule", 1, "call", "direction")) == 19
    assert k.find(("rule", 1, "events", 1, "at")) == 22
    assert k.find(("rule", 1, "events", 0, "x", 1)) == 21
    # Not written: the nearest written ancestor.
    assert k.find(("rule", 1, "hold", "media")) == 12
    assert k.find(("nothing",)) is None


def test_validation_messages_name_the_key() -> None:
    assert validation_path("Object contains unknown field `x` - at `$.match`") == (
        ("match", "x"),
        "unknown key 'x'",
    )
    assert validation_path("Object missing required field `hold` - at `$`") == (
        (),
        "missing key 'hold'",
    )
    assert validation_path("Expected `int | null`, got `str` - at `$.priority`") == (
        ("priority",),
        "priority: Expected `int`, got `str`",
    )


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (0.25, "250ms"),
        (1.5, "1.5s"),
        (45, "45s"),
        (90, "1m30s"),
        (3660, "1h1m"),
        (86400 + 1, "1d1s"),
        (-2, "-2s"),
    ],
)
def test_durations_both_ways(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text
    if seconds >= 0:
        assert parse_duration(text) == seconds


NEW_CORE = [
    "holdd.core.rules.driver",
    "holdd.core.virtual",
    "holdd.core.machine",
    "holdd.core.hold_policy",
    "holdd.core.rules.index",
    "holdd.core.rules.schedule",
    "holdd.core.rules.cooldowns",
    "holdd.config.report",
    "holdd.config.toml",
]


def test_new_core_modules_import_no_io_libraries() -> None:
    code = (
        "import sys\n"
        + "".join(f"import {m}\n" for m in NEW_CORE)
        + "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('asyncio', 'aiohttp', 'websockets')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
