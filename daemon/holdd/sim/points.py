"""The simulated account's Call API points per minute and per day (core: no clock).

Every successful request costs 1 point (docs/callapi.md §6, the old CoMagic
page); the minute and day windows are whole UTC minutes and UTC days. The
budget is told `now` on every use and answers with `metadata.limits` or a
`limit_exceeded` RpcError.
"""

from __future__ import annotations

import math
from typing import Final

from holdd.sim.rpc import JsonDict, RpcError

MINUTE: Final = 60
DAY: Final = 86400


class PointBudget:
    """Points used in the current minute and day windows, against the tariff's limits (§6).

    The attributes are public so that tests and the fault layer can set any
    budget directly (`minute_limit`, `minute_used`, ...).
    """

    def __init__(self, *, minute_limit: int = 250, day_limit: int = 10000) -> None:
        self.minute_limit = minute_limit
        self.day_limit = day_limit
        self.minute_used = 0
        self.day_used = 0
        self._minute_window: int | None = None
        self._day_window: int | None = None

    def limits(self, now: float) -> JsonDict:
        """`metadata.limits` as of `now` (§6); the resets are in seconds."""
        self._roll(now)
        return {
            "day_limit": self.day_limit,
            "day_remaining": max(0, self.day_limit - self.day_used),
            "day_reset": _seconds_to_next(now, DAY),
            "minute_limit": self.minute_limit,
            "minute_remaining": max(0, self.minute_limit - self.minute_used),
            "minute_reset": _seconds_to_next(now, MINUTE),
        }

    def check(self, now: float) -> None:
        """RpcError `limit_exceeded` when one more point does not fit (§6)."""
        self._roll(now)
        # The day is checked first: backing off for a minute cannot help then.
        if self.day_used + 1 > self.day_limit:
            raise RpcError(
                "limit_exceeded",
                {"params": {"limit_type": "day", "limit_max_value": self.day_limit}},
            )
        if self.minute_used + 1 > self.minute_limit:
            raise RpcError(
                "limit_exceeded",
                {"params": {"limit_type": "minute", "limit_max_value": self.minute_limit}},
            )

    def charge(self, now: float) -> None:
        """Spend the point of one successful request."""
        self._roll(now)
        self.minute_used += 1
        self.day_used += 1

    def _roll(self, now: float) -> None:
        """Start new minute / day windows when `now` left the current ones."""
        minute, day = math.floor(now / MINUTE), math.floor(now / DAY)
        if self._minute_window is not None and minute != self._minute_window:
            self.minute_used = 0
        if self._day_window is not None and day != self._day_window:
            self.day_used = 0
        self._minute_window, self._day_window = minute, day


def _seconds_to_next(now: float, period: int) -> int:
    """Whole seconds until the next window of `period` seconds starts (at least 1)."""
    return max(1, math.ceil((math.floor(now / period) + 1) * period - now))


__all__ = ["DAY", "MINUTE", "PointBudget"]
