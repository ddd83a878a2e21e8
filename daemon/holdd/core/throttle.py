"""Log throttling per key (core): a flood of bad input cannot flood the log.

Each key (a drop reason, say) may log `burst` lines per `per` seconds; the
lines held back are counted and reported on the next line that is let through.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class _Window:
    started: float
    logged: int = 0
    held_back: int = 0


class Throttle:
    def __init__(self, per: float = 10.0, burst: int = 5) -> None:
        self.per = per
        self.burst = burst
        self._windows: dict[str, _Window] = {}

    def allow(self, key: str, now: float) -> int | None:
        """None to stay quiet; else the number of lines held back before this one."""
        window = self._windows.get(key)
        if window is None or now - window.started >= self.per:
            held = window.held_back if window is not None else 0
            self._windows[key] = _Window(now, logged=1)
            return held
        if window.logged < self.burst:
            window.logged += 1
            held, window.held_back = window.held_back, 0
            return held
        window.held_back += 1
        return None
