"""Shared fixtures: the simulator on 127.0.0.1:0."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest_asyncio

from holdd.sim.server import Simulator

TOKEN = "e2e-permanent-key-7f3a9c1d"


@pytest_asyncio.fixture
async def sim() -> AsyncIterator[Simulator]:
    simulator = Simulator(tokens=(TOKEN,), media_ids=("2034", "2561"))
    await simulator.start()
    try:
        yield simulator
    finally:
        await simulator.stop()
