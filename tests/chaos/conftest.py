"""The simulator for chaos tests (support/chaos.py `chaos_simulator`): a budget
far above the traffic, and the chaos fault layer in place."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest_asyncio

from holdd.sim.server import Simulator
from support.chaos import chaos_simulator
from support.sim import running


@pytest_asyncio.fixture
async def sim() -> AsyncIterator[Simulator]:
    async with running(chaos_simulator()) as simulator:
        yield simulator
