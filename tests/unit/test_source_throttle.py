"""core/throttle.py `SourceThrottle`: one line per reason per source per
window, the rest counted and said when the window ends; values in, values out."""

from __future__ import annotations

from holdd.core.throttle import OTHER_SOURCES, Held, SourceThrottle


def test_one_line_per_reason_per_source_per_window() -> None:
    t: SourceThrottle[int] = SourceThrottle(per=60.0)
    assert t.hit("unauthorized", "10.0.0.1", 0.0, 1) == 0
    assert [t.hit("unauthorized", "10.0.0.1", float(n), n) for n in range(1, 50)] == [None] * 49
    # Another source, another reason: their own windows.
    assert t.hit("unauthorized", "10.0.0.2", 5.0, 100) == 0
    assert t.hit("bad_request", "10.0.0.1", 6.0, 200) == 0
    assert t.next_due() == 60.0
    assert t.close_due(59.9) == []
    # The window of 10.0.0.1 ends with 49 held back: said once, with the
    # latest payload, and that line opens the next window.
    assert t.close_due(60.0) == [Held("unauthorized", "10.0.0.1", 49, 49)]
    assert t.hit("unauthorized", "10.0.0.1", 61.0, 61) is None
    assert t.next_due() == 65.0  # 10.0.0.2's window; nothing held back there
    assert t.close_due(66.0) == []  # it and bad_request's end, forgotten
    assert len(t) == 1  # 10.0.0.1's reopened window


def test_a_window_that_held_nothing_back_is_forgotten() -> None:
    t: SourceThrottle[str] = SourceThrottle(per=10.0)
    assert t.hit("timeout", "a", 0.0, "x") == 0
    assert t.close_due(10.0) == []
    assert len(t) == 0
    assert t.next_due() is None
    assert t.hit("timeout", "a", 11.0, "x") == 0


def test_a_window_ended_but_not_yet_closed_puts_its_count_on_the_next_line() -> None:
    t: SourceThrottle[None] = SourceThrottle(per=10.0)
    t.hit("r", "a", 0.0, None)
    t.hit("r", "a", 1.0, None)
    t.hit("r", "a", 2.0, None)
    assert t.hit("r", "a", 12.0, None) == 2
    assert t.hit("r", "a", 13.0, None) is None


def test_memory_is_bounded_past_max_keys() -> None:
    t: SourceThrottle[int] = SourceThrottle(per=60.0, max_keys=3)
    assert [t.hit("r", f"10.0.0.{n}", 0.0, n) for n in range(3)] == [0, 0, 0]
    # Every further source shares one window.
    assert t.hit("r", "10.0.0.3", 1.0, 3) == 0
    assert [t.hit("r", f"10.0.0.{n}", 2.0, n) for n in range(4, 100)] == [None] * 96
    assert len(t) == 4
    assert t.close_due(60.0) == []  # the first three held nothing back
    assert t.close_due(61.0) == [Held("r", OTHER_SOURCES, 96, 99)]
    # Reasons are a fixed set at the callers; should one not be, the windows
    # stay bounded all the same.
    for n in range(1000):
        t.hit(f"reason-{n}", f"10.1.0.{n}", 61.0, n)
    assert len(t) <= 2 * 3 + 1


def test_drain_says_what_is_still_held_back() -> None:
    t: SourceThrottle[int] = SourceThrottle(per=60.0)
    t.hit("r", "a", 0.0, 1)
    t.hit("r", "a", 1.0, 2)
    t.hit("s", "a", 1.0, 3)
    assert t.drain() == [Held("r", "a", 1, 2)]
    assert len(t) == 0
