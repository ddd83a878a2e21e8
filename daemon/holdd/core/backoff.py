"""Retry delays: exponential backoff with full jitter (core).

A plain generator, injectable wherever something is retried (the notification
stream, Call API requests), so tests can drive the policy without a loop.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator


def full_jitter(
    base: float = 0.5,
    cap: float = 60.0,
    rng: Callable[[], float] = random.random,
) -> Iterator[float]:
    """Delays `uniform(0, min(cap, base * 2**n))` for n = 0, 1, 2, ..."""
    attempt = 0
    while True:
        yield rng() * min(cap, base * (2.0**attempt))
        attempt = min(attempt + 1, 62)
