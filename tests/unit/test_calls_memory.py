"""100,000 calls through the table leave memory bounded: ended calls are swept."""

from __future__ import annotations

import tracemalloc

from holdd.core.calls import CallTable
from holdd.core.events import EventKind, Notification

CALLS = 100_000


def test_memory_stays_bounded_as_calls_pass_through() -> None:
    table = CallTable(ended_ttl=60.0)
    fields = {"direction": "in", "virtual_phone_number": "74993720692"}
    tracemalloc.start()
    try:
        peak_live = 0
        for i in range(CALLS):
            now = i * 0.01  # 100 calls a second
            csid = 10_000_000 + i
            number = {"contact_phone_number": f"7926{i:07d}", **fields}
            table.apply(Notification(csid, EventKind.CALL_STARTED, None, number), now)
            table.apply(Notification(csid, EventKind.TALK_STARTED, None, {}), now)
            table.apply(Notification(csid, EventKind.CALL_FINISHED, None, {}), now)
            if i % 1000 == 0:
                table.sweep(now)
                peak_live = max(peak_live, len(table))
        current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    print(
        f"{CALLS} calls: at most {peak_live} kept, {current / 1024:.0f} KiB now, "
        f"{peak / 1024:.0f} KiB peak"
    )
    # 60 s of ended calls at 100 calls/s, plus one sweep period.
    assert peak_live <= 60 * 100 + 1000
    assert current < 12 * 1024 * 1024
