"""Connection slots of the Call API client (shell): one per pooled connection.

Every exchange takes a slot for as long as it uses its connection, so none
ever waits inside aiohttp's pool, where the request timeout would already be
running and a request that never left would look like an unknown outcome.
Requests wait for a slot first come, first served, no longer than their
deadline; how many wait and for how long are metrics (docs/operations.md).
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable


class Slots:
    def __init__(self, limit: int, monotonic: Callable[[], float]) -> None:
        self._free = asyncio.Semaphore(limit)
        self._monotonic = monotonic
        self._ids = itertools.count()
        #: Requests waiting for a slot: their number -> since when (monotonic).
        self._waiting: dict[int, float] = {}

    async def take(self, deadline: float | None) -> None:
        """Wait for a free slot; TimeoutError when `deadline` (monotonic) passes first."""
        if not self._free.locked():
            await self._free.acquire()
            return
        ticket = next(self._ids)
        self._waiting[ticket] = self._monotonic()
        try:
            left = None if deadline is None else max(0.0, deadline - self._monotonic())
            async with asyncio.timeout(left):
                await self._free.acquire()
        finally:
            del self._waiting[ticket]

    def release(self) -> None:
        self._free.release()

    @property
    def depth(self) -> int:
        return len(self._waiting)

    @property
    def oldest_wait(self) -> float:
        if not self._waiting:
            return 0.0
        return self._monotonic() - min(self._waiting.values())
