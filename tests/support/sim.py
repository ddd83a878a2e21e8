"""The simulator on 127.0.0.1:0: one builder, the `sim` fixture, and helpers
that read what it received."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterable

import pytest_asyncio

from holdd.sim.rpc import RecordedRequest
from holdd.sim.server import Simulator

#: The permanent key every simulator accepts (and every config writes).
TOKEN = "e2e-permanent-key-7f3a9c1d"
#: The login + password every simulator accepts.
LOGIN = "holdd-api-user"
PASSWORD = "pw-9f4c2e71d0b3"
MEDIA_IDS = ("2034", "2561")


def make_simulator(*, media_ids: Iterable[str] = MEDIA_IDS, limit: int | None = None) -> Simulator:
    """A simulator (not started) for TOKEN and LOGIN; `limit`, if given, is both
    its minute and its day budget (far above the traffic: no pacing)."""
    users = {LOGIN: PASSWORD}
    if limit is None:
        return Simulator(tokens=(TOKEN,), users=users, media_ids=tuple(media_ids))
    return Simulator(
        tokens=(TOKEN,),
        users=users,
        media_ids=tuple(media_ids),
        minute_limit=limit,
        day_limit=limit,
    )


@contextlib.asynccontextmanager
async def running(simulator: Simulator, *, apart: bool = False) -> AsyncIterator[Simulator]:
    """Start `simulator` (`apart`: its Call API on a port of its own); on exit
    disarm its faults and stop it."""
    await simulator.start(callapi_port=0 if apart else None)
    try:
        yield simulator
    finally:
        simulator.faults.clear()
        await simulator.stop()


@pytest_asyncio.fixture
async def sim() -> AsyncIterator[Simulator]:
    async with running(make_simulator()) as simulator:
        yield simulator


def hold_requests(sim: Simulator, csid: int) -> list[RecordedRequest]:
    """Every hold.call the simulated API received for call `csid`."""
    return [
        r
        for r in sim.requests
        if r.method == "hold.call" and r.params.get("call_session_id") == csid
    ]


async def talking_call(sim: Simulator, **fields: object) -> int:
    """A call that is in TALK (started and answered)."""
    call_session_id = await sim.start_call(**fields)
    await sim.answer(call_session_id)
    return call_session_id


def methods(sim: Simulator) -> list[str | None]:
    """The method of every request the Call API endpoint received, faults included."""
    return [r.method for r in sim.faults.log]
