"""When the next Call API request may go out: the account's point budget (core).

`Pacing` is the policy, `RateGate` the schedule it drives from the
`metadata.limits` of every answer and from `limit_exceeded` (docs/callapi.md
section 6). The gate only computes start times from an injected monotonic
clock; the client does the waiting.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from holdd.callapi.answers import Limits
from holdd.callapi.failures import RateLimitWait


@dataclass(frozen=True, slots=True)
class Pacing:
    """How the client spends the account's points (section 6)."""

    #: Spread the remaining points once at most this share of the limit is left...
    low_fraction: float = 0.1
    #: ...or at most this many points.
    low_points: int = 2
    #: Never send sooner than this after `limit_exceeded`, whatever the reset says.
    limit_wait_floor: float = 1.0
    #: Wait after a `limit_exceeded` whose answer has no `minute_reset` / `day_reset`.
    minute_fallback: float = 60.0
    day_fallback: float = 3600.0


class RateGate:
    """When the next request may go out: an account-wide schedule (core logic,
    clock injected; the client does the waiting).

    After every answer, `observe` reads `metadata.limits`: with the budget
    low, the remaining points are spread evenly over the time to the reset;
    with nothing left, nothing goes out until the reset. `block` does the
    same for `limit_exceeded`. `reserve` hands out start times one after
    another, so concurrent requests queue up instead of bursting.
    """

    def __init__(self, pacing: Pacing, monotonic: Callable[[], float]) -> None:
        self.pacing = pacing
        self.monotonic = monotonic
        self.blocked_until = 0.0
        self.blocked_by = ""
        #: Minimum seconds between request starts while the budget is low...
        self.spacing = 0.0
        #: ...until this time (the reset of the window that set it).
        self.spacing_until = 0.0
        self.spacing_by = ""
        self._last_start = -math.inf
        #: Instances sharing the account's budget (a shared store's live
        #: leases): each spends its share, so together they keep the pace.
        self.instances = 1
        #: When each window resets, from the latest `metadata.limits` seen.
        self._resets: dict[str, float] = {}

    def observe(self, limits: Limits) -> None:
        now = self.monotonic()
        spacing, until, by = 0.0, 0.0, ""
        for name, remaining, limit, reset in (
            ("minute", limits.minute_remaining, limits.minute_limit, limits.minute_reset),
            ("day", limits.day_remaining, limits.day_limit, limits.day_reset),
        ):
            if reset is not None:
                self._resets[name] = now + max(0, reset)
            if remaining is None or reset is None:
                continue
            if remaining <= 0:
                self._block(now + max(0, reset), name)
                continue
            low = max(self.pacing.low_points, math.ceil((limit or 0) * self.pacing.low_fraction))
            share = reset / remaining * max(1, self.instances)
            if remaining <= low and share > spacing:
                spacing, until, by = share, now + reset, name
        self.spacing, self.spacing_until, self.spacing_by = spacing, until, by

    def block(self, limit_type: str, reset: int | None) -> float:
        """After `limit_exceeded`: hold every request until the reset; return the wait.

        An answer without a reset of its own waits for the reset the latest
        `metadata.limits` gave for that window, aged by the time since; only
        with none known, the flat fallback.
        """
        now = self.monotonic()
        known = self._resets.get(limit_type)
        if reset is not None:
            wait = float(reset)
        elif known is not None and known > now:
            wait = known - now
        else:
            wait = self.pacing.day_fallback if limit_type == "day" else self.pacing.minute_fallback
        wait = max(wait, self.pacing.limit_wait_floor)
        self._block(now + wait, limit_type)
        return wait

    def _block(self, until: float, by: str) -> None:
        if until > self.blocked_until:
            self.blocked_until, self.blocked_by = until, by

    def reserve(self, method: str, deadline: float | None) -> float:
        """Reserve the next start time; return how long to wait for it.

        Raises RateLimitWait, reserving nothing, when that start would be past
        `deadline` (a monotonic time).
        """
        now = self.monotonic()
        start, by = now, ""
        if self.blocked_until > start:
            start, by = self.blocked_until, self.blocked_by
        if self.spacing and now < self.spacing_until and self._last_start + self.spacing > start:
            start, by = self._last_start + self.spacing, self.spacing_by
        if deadline is not None and start > deadline:
            raise RateLimitWait(method, start - now, by or "minute")
        self._last_start = start
        return start - now


__all__ = ["Pacing", "RateGate"]
