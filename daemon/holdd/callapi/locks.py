"""Per-call locks: never two Call API requests in flight for one call (shell).

`hold.call` and `unhold.call` for the same `call_session_id` must not race
(docs/callapi.md sections 3.2 and 3.3: each is valid in one call state only), so the client
takes the call's lock around the whole request, re-login included.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator


class CallLocks:
    """One lock per call_session_id, kept only while someone uses it."""

    def __init__(self) -> None:
        self._locks: dict[int, tuple[asyncio.Lock, list[int]]] = {}

    @contextlib.asynccontextmanager
    async def hold(self, key: int | None) -> AsyncIterator[None]:
        if key is None:
            yield
            return
        entry = self._locks.get(key)
        if entry is None:
            entry = self._locks[key] = (asyncio.Lock(), [0])
        lock, users = entry
        users[0] += 1
        try:
            async with lock:
                yield
        finally:
            users[0] -= 1
            if users[0] == 0:
                del self._locks[key]


__all__ = ["CallLocks"]
