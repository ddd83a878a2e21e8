"""Memory of calls held in the call table while they talk (bench helper).

Every call arrives as the daemon receives it: a `call_started` and a
`talk_started` notification decoded from JSON, so the table keeps exactly
the objects it keeps in production (the call record, its variables, the
strings orjson made). Measured twice, in separate passes: with tracemalloc
(the Python objects, exact) and as the growth of the resident set (what
the operating system sees, allocator overhead included).
"""

from __future__ import annotations

import gc
import os
import tracemalloc
from dataclasses import dataclass
from pathlib import Path

import orjson

from corepath import call_fields
from holdd.core.calls import CallTable
from holdd.core.events import decode
from holdd.core.states import CallState


@dataclass(frozen=True, slots=True)
class MemoryResult:
    calls: int
    traced_bytes: int
    rss_bytes: int | None
    #: The largest allocation sites still alive: (file:line, bytes per call).
    sites: list[tuple[str, float]]

    @property
    def traced_per_call(self) -> float:
        return self.traced_bytes / self.calls

    @property
    def rss_per_call(self) -> float | None:
        return None if self.rss_bytes is None else self.rss_bytes / self.calls


def _fill(table: CallTable, calls: int) -> None:
    for i in range(calls):
        fields = call_fields(i)
        started = {
            "notification_name": "Входящий звонок на виртуальный номер",
            "notification_mnemonic": "call_started",
            "notification_time": "2026-11-26 10:00:00.000",
            **fields,
        }
        talk = {
            **started,
            "notification_name": "Начало разговора",
            "notification_mnemonic": "talk_started",
            "leg_ids": [500_000 + 2 * i, 500_001 + 2 * i],
        }
        now = 1_790_000_000.0 + i * 0.001
        for raw in (orjson.dumps(started), orjson.dumps(talk)):
            for n in decode(raw).notifications:
                table.apply(n, now)


def _rss() -> int | None:
    """The resident set now, in bytes (Linux); None elsewhere."""
    statm = Path("/proc/self/statm")
    if not statm.exists():
        return None
    pages = int(statm.read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE")


def calls_in_talk(calls: int = 100_000) -> MemoryResult:
    # Pass 1: resident set growth, without tracemalloc (which adds its own
    # bookkeeping per block to the process).
    gc.collect()
    before = _rss()
    table = CallTable()
    _fill(table, calls)
    gc.collect()
    after = _rss()
    assert len(table) == calls
    assert all(c.state is CallState.TALK for c in table)
    rss = None if before is None or after is None else after - before
    del table
    gc.collect()

    # Pass 2: exactly what the table keeps alive.
    tracemalloc.start()
    try:
        start = tracemalloc.take_snapshot()
        table = CallTable()
        _fill(table, calls)
        gc.collect()
        end = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    diff = end.compare_to(start, "lineno")
    traced = sum(d.size_diff for d in diff)
    sites = []
    for d in diff[:6]:
        frame = d.traceback[0]
        sites.append((f"{Path(frame.filename).name}:{frame.lineno}", d.size_diff / calls))
    del table
    return MemoryResult(calls, traced, rss, sites)
