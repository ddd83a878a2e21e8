"""Memory of the calls the machine tracks while they talk (bench helper).

Every call arrives as the daemon receives it: a `call_started` and a
`talk_started` notification decoded from JSON, fed to the machine
(core/machine.py) with 100 rules; the rule that matches holds it (taken as
held at once). What is measured is everything the machine keeps: the call
record and its variables, the claim, the outcome, the latest evaluations.
Measured twice, in separate passes: with tracemalloc
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
from holdd.core.commands import SendHold
from holdd.core.events import DEFAULT_EVENT_NAMES, decode
from holdd.core.hold_policy import Result, Verdict
from holdd.core.machine import Machine
from holdd.core.rules import RuleSet
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


def _fill(machine: Machine, calls: int) -> None:
    held = Verdict(Result.HELD, attempts=1)
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
            out = machine.notifications(decode(raw), "bench", now)
            for send in out.sends:
                if isinstance(send, SendHold):
                    machine.hold_settled(send.decision, held, now)


def _rss() -> int | None:
    """The resident set now, in bytes (Linux); None elsewhere."""
    statm = Path("/proc/self/statm")
    if not statm.exists():
        return None
    pages = int(statm.read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE")


def calls_in_talk(rules: RuleSet, calls: int = 100_000) -> MemoryResult:
    # Pass 1: resident set growth, without tracemalloc (which adds its own
    # bookkeeping per block to the process).
    gc.collect()
    before = _rss()
    machine = Machine(rules, DEFAULT_EVENT_NAMES, full_traces=False)  # as holdd run
    _fill(machine, calls)
    gc.collect()
    after = _rss()
    assert len(machine.table) == calls
    assert all(c.state is CallState.HOLD for c in machine.table)
    rss = None if before is None or after is None else after - before
    del machine
    gc.collect()

    # Pass 2: exactly what the table keeps alive.
    tracemalloc.start()
    try:
        start = tracemalloc.take_snapshot()
        machine = Machine(rules, DEFAULT_EVENT_NAMES, full_traces=False)  # as holdd run
        _fill(machine, calls)
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
    del machine
    return MemoryResult(calls, traced, rss, sites)
