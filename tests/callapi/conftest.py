"""Fixtures for tests/callapi: the simulator on 127.0.0.1:0 with its fault
layer attached, a real aiohttp session, and every test's log captured as JSON
(helpers in callapi/support.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
import pytest_asyncio

from callapi.support import LOGIN, PASSWORD, TOKEN, LogCapture
from holdd.io import logs
from holdd.sim.server import Simulator


@pytest.fixture(autouse=True)
def captured() -> LogCapture:
    """Every test's log, as an operator would read it. No secrets are given to
    the redactor: what must not be logged is never logged in the first place."""
    capture = LogCapture()
    logs.configure(fmt="json", level="debug", secrets=(), stream=capture.buffer)
    return capture


@pytest_asyncio.fixture
async def sim() -> AsyncIterator[Simulator]:
    simulator = Simulator(tokens=(TOKEN,), users={LOGIN: PASSWORD}, media_ids=("2034", "2561"))
    simulator.faults.attach(simulator.account)
    await simulator.start()
    try:
        yield simulator
    finally:
        simulator.faults.clear()
        await simulator.stop()


@pytest_asyncio.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session
