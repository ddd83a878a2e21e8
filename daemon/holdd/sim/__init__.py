"""The built-in UIS simulator: a fake Call API v4.0 and notification stream.

Used by `holdd sim`, `holdd demo`, the tests and the benchmarks. The core
imports no asyncio or aiohttp: the account (`holdd.sim.account`) with its
switchboard of calls (`switchboard`, `calls`), its points (`points`) and its
JSON-RPC surface (`rpc`). The shell is the server (`holdd.sim.server`) with its
fault layer (`faults`) and webhook rendering (`webhooks`); the server is
imported here only when `Simulator` is first used, so that importing the core
stays free of the event loop.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from holdd.sim.account import SimAccount
from holdd.sim.calls import SimCall
from holdd.sim.rpc import RecordedRequest

if TYPE_CHECKING:
    from holdd.sim.server import Simulator


def __getattr__(name: str) -> object:
    if name == "Simulator":
        from holdd.sim.server import Simulator

        return Simulator
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["RecordedRequest", "SimAccount", "SimCall", "Simulator"]
