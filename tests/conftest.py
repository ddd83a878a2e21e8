"""Shared fixtures: the simulator on 127.0.0.1:0; the Hypothesis profiles."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import pytest_asyncio
from hypothesis import settings

from holdd.sim.server import Simulator

TOKEN = "e2e-permanent-key-7f3a9c1d"

# Properties take their example counts from the profile, never from their own
# @settings: "ci" (the default, `make test`) runs about 100 examples each,
# derandomised so that a red run is red again on the same commit; "fuzz"
# (`make fuzz`, HYPOTHESIS_PROFILE=fuzz) runs 50 times as many, seeded anew each
# run, and keeps what it finds in .hypothesis/ for the next run.
settings.register_profile("ci", max_examples=100, derandomize=True, database=None, deadline=None)
settings.register_profile("fuzz", max_examples=5000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest_asyncio.fixture
async def sim() -> AsyncIterator[Simulator]:
    simulator = Simulator(tokens=(TOKEN,), media_ids=("2034", "2561"))
    await simulator.start()
    try:
        yield simulator
    finally:
        await simulator.stop()
