"""The built-in UIS simulator: a fake Call API v4.0 and notification stream.

Used by `holdd sim`, `holdd demo`, the tests and the benchmarks. The account
model (`holdd.sim.state`) is core and imports no asyncio or aiohttp; the server
(`holdd.sim.server`) is the shell, imported here only when `Simulator` is first
used, so that importing the core stays free of the event loop.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from holdd.sim.state import RecordedRequest, SimAccount, SimCall

if TYPE_CHECKING:
    from holdd.sim.server import Simulator


def __getattr__(name: str) -> object:
    if name == "Simulator":
        from holdd.sim.server import Simulator

        return Simulator
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["RecordedRequest", "SimAccount", "SimCall", "Simulator"]
