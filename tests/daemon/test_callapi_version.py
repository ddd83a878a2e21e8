"""A deprecated API version (docs/callapi.md section 1): one WARNING per run,
in either spelling of the flag."""

from __future__ import annotations

from typing import Literal

import aiohttp
import pytest

from holdd.sim.server import Simulator
from support.callapi import make_client
from support.logs import LogCapture

# Every test's log is captured (support/logs.py), as an operator would read it.
pytestmark = [pytest.mark.timeout(30), pytest.mark.usefixtures("captured")]

Spelling = Literal["depricated", "deprecated"]


@pytest.mark.parametrize("spelling", ["depricated", "deprecated"])
async def test_a_deprecated_version_is_one_warning_per_run(
    sim: Simulator, http: aiohttp.ClientSession, captured: LogCapture, spelling: Spelling
) -> None:
    sim.faults.deprecate_version(spelling=spelling, current_version="4.0", latest_version="4.1")
    client = make_client(sim, http)
    for _ in range(3):
        await client.list_calls()
    sim.faults.fail_next(1, "internal_error")  # error answers carry it too
    with pytest.raises(Exception, match="internal_error"):
        await client.list_calls()

    [warning] = captured.events("callapi_version_deprecated")
    assert warning["level"] == "warning"
    assert (warning["current_version"], warning["latest_version"]) == ("4.0", "4.1")
    assert "2 months" in warning["hint"]


async def test_a_current_version_says_nothing(
    sim: Simulator, http: aiohttp.ClientSession, captured: LogCapture
) -> None:
    await make_client(sim, http).list_calls()
    assert not captured.events("callapi_version_deprecated")
