"""The simulator for chaos tests: a budget far above the traffic (the tests
are about faults, not pacing), and the chaos fault layer in place."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator

import pytest_asyncio

from chaos.support import ChaosFaults
from conftest import TOKEN
from holdd.sim.server import Simulator

LIMIT = 10_000_000


@pytest_asyncio.fixture
async def sim() -> AsyncIterator[Simulator]:
    simulator = Simulator(
        tokens=(TOKEN,), media_ids=("2034", "2561"), minute_limit=LIMIT, day_limit=LIMIT
    )
    simulator.faults = ChaosFaults(simulator, random.Random(0))
    await simulator.start()
    try:
        yield simulator
    finally:
        simulator.faults.clear()
        await simulator.stop()
