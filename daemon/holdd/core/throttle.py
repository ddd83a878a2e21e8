"""Log throttling per key (core): a flood of bad input cannot flood the log.

`Throttle`: each key (a drop reason, say) may log `burst` lines per `per`
seconds; the lines held back are counted and reported on the next line that
is let through.

`SourceThrottle`: one line per reason per client per window, the count held
back said when the window ends (the webhook's and the HTTP listeners'
warnings, docs/operations.md section 6).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

P = TypeVar("P")


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


#: The source that stands for every source beyond `SourceThrottle.max_keys`.
OTHER_SOURCES = "(other)"


@dataclass(slots=True)
class _Span(Generic[P]):
    started: float
    #: What the caller attached to the latest hit held back (its log fields).
    payload: P
    suppressed: int = 0


@dataclass(frozen=True, slots=True)
class Held(Generic[P]):
    """The hits of one (what, source) a window held back, to be said in one line."""

    what: str
    source: str
    suppressed: int
    payload: P


class SourceThrottle(Generic[P]):
    """One line per `what` (an event and its reason) per source per window.

    A client can make the daemon log at will (a wrong secret, a connection
    that never sends its headers): the first hit of a (what, source) opens a
    window of `per` seconds and is logged; the rest of the window is counted.
    When a window that held hits back ends, `close_due` returns it so that
    the count is logged in one line, and that line opens the next window: a
    steady flood from one source costs one line per window. A window that
    held nothing back is forgotten.

    Memory is bounded: past `max_keys` windows, new sources share the source
    `OTHER_SOURCES` (one window per `what`); `what` should come from a fixed
    set, and past twice `max_keys` windows every new one shares a single
    window all the same.
    """

    def __init__(self, per: float = 60.0, max_keys: int = 200) -> None:
        self.per = per
        self.max_keys = max_keys
        #: In the order the windows opened (a reopened window moves to the end).
        self._spans: dict[tuple[str, str], _Span[P]] = {}

    def __len__(self) -> int:
        return len(self._spans)

    def hit(self, what: str, source: str, now: float, payload: P) -> int | None:
        """None to stay quiet; else log now, saying how many were held back before."""
        key = (what, source)
        if key not in self._spans and len(self._spans) >= self.max_keys:
            key = (what, OTHER_SOURCES)
            if key not in self._spans and len(self._spans) >= 2 * self.max_keys:
                key = (OTHER_SOURCES, OTHER_SOURCES)  # `what`s were meant to be a fixed set
        span = self._spans.get(key)
        if span is None or now - span.started >= self.per:
            # A window that ended before `close_due` saw it: its count goes on this line.
            held = span.suppressed if span is not None else 0
            self._spans.pop(key, None)
            self._spans[key] = _Span(now, payload)
            return held
        span.suppressed += 1
        span.payload = payload
        return None

    def next_due(self) -> float | None:
        """When the oldest window ends (None: no window open)."""
        for span in self._spans.values():
            return span.started + self.per
        return None

    def close_due(self, now: float) -> list[Held[P]]:
        """End the windows whose time is up; those that held hits back are
        returned and open a new window at `now`."""
        ended: list[tuple[tuple[str, str], _Span[P]]] = []
        for key, span in self._spans.items():
            if now - span.started < self.per:
                break
            ended.append((key, span))
        out: list[Held[P]] = []
        for key, span in ended:
            del self._spans[key]
            if span.suppressed:
                out.append(Held(key[0], key[1], span.suppressed, span.payload))
                self._spans[key] = _Span(now, span.payload)
        return out

    def drain(self) -> list[Held[P]]:
        """Every count still held back (at stop); forget every window."""
        out = [
            Held(what, source, span.suppressed, span.payload)
            for (what, source), span in self._spans.items()
            if span.suppressed
        ]
        self._spans.clear()
        return out
