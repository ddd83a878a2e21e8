"""Shared fixtures (defined in support/, registered here): the simulator on
127.0.0.1:0 (`sim`), an aiohttp session (`http`), the captured log
(`captured`), a fake systemd (`systemd`, `short_dir`); the Hypothesis profiles.

Tests import their helpers from the `support` package (tests/support/)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import aiohttp
import pytest_asyncio
from hypothesis import settings

from support.logs import captured
from support.postgres import pg, pg_cluster
from support.sim import sim
from support.systemd import short_dir, systemd

__all__ = ["captured", "http", "pg", "pg_cluster", "short_dir", "sim", "systemd"]

# Properties take their example counts from the profile, never from their own
# @settings: "ci" (the default, `make test`) runs about 100 examples each,
# derandomised so that a red run is red again on the same commit; "fuzz"
# (`make fuzz`, HYPOTHESIS_PROFILE=fuzz) runs 50 times as many, seeded anew each
# run, and keeps what it finds in .hypothesis/ for the next run.
settings.register_profile("ci", max_examples=100, derandomize=True, database=None, deadline=None)
settings.register_profile("fuzz", max_examples=5000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest_asyncio.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session
