"""`holdd simulate -c CONFIG EVENTS.jsonl`: replay recorded notifications
through the rules on a virtual clock and print every decision; never calls
the API (shell: reads files, prints; the run is core/virtual.py, the same machine as the daemon).

EVENTS.jsonl holds one transport message a line: a notification object as the
websocket or webhook delivers it (wrappers under params/data/args and arrays
work as in the daemon). Blank lines are skipped. Each line's moment is, in
this order of preference:

- `"at"`: an offset from the start, a duration ("45s") or a number of seconds
  (the key is removed before the message is decoded);
- its `notification_time` ("2026-11-26 10:00:00.000"), in `[notify] timezone`;
- the moment of the line before it.

The start is `--start` (ISO date and time with zone), else the first
`notification_time` in the file, else the current time. The virtual clock
never runs backwards: a line stamped earlier than the one before it is taken
to arrive at the same moment. Timers (`after`, `unhold_after`) fire at their
due time; those still pending after the last line fire too, as if the calls
went on talking. Every hold and unhold is taken to succeed.

Output, one JSON object a line on stdout, `event` being one of:

    hold | would_hold        a rule acts (would_hold: shadow mode)
    hold_pending             a rule matched; acts at due_at if the call still talks
    no_rule_matched          trace: every rule with the first condition that failed
    hold_skipped             the matching rule cannot act (reason)
    unhold | would_unhold    unhold_after ran out
    timer_cancelled          a pending hold or unhold is void (reason)

each with `at` (ISO, in the config's time zone), `offset` (seconds from the
start) and `call_session_id`. Dropped lines and a summary go to stderr.
"""

from __future__ import annotations

import datetime as dt
import sys
import time
from pathlib import Path
from typing import Any, TextIO
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import orjson

from holdd.cli.rule_source import read_rule_config
from holdd.cli.ruletest_file import parse_clock
from holdd.core.durations import parse_duration
from holdd.core.errors import ConfigError
from holdd.core.rules.driver import Cancelled, Effect, Hold, NoHold, Pending, Unhold
from holdd.core.virtual import VirtualRun

_WRAPPERS = ("params", "data", "args")


def _notification_time(doc: object, tz: dt.tzinfo) -> float | None:
    """The `notification_time` of a message (first item of an array), if it parses."""
    item = doc[0] if isinstance(doc, list) and doc else doc
    if not isinstance(item, dict):
        return None
    value = item.get("notification_time")
    for key in _WRAPPERS:
        inner = item.get(key)
        if value is None and isinstance(inner, dict):
            value = inner.get("notification_time")
    if not isinstance(value, str):
        return None
    try:
        stamp = dt.datetime.fromisoformat(value.strip().strip('"'))
    except ValueError:
        return None
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=tz)
    return stamp.timestamp()


def _offset(value: object) -> float:
    if isinstance(value, bool):
        raise ValueError(f"at {value!r} is not an offset")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        return parse_duration(value)
    raise ValueError(f"at {value!r} is not an offset")


def _record(effect: Effect, start: float, tz: dt.tzinfo, at: float) -> dict[str, Any]:
    out: dict[str, Any] = {
        "at": dt.datetime.fromtimestamp(at, tz).isoformat(timespec="milliseconds"),
        "offset": round(at - start, 3),
        "call_session_id": effect.call_session_id,
    }
    if isinstance(effect, Hold):
        d = effect.decision
        out["event"] = "would_hold" if d.shadow else "hold"
        out.update(d.as_dict())
        out.pop("due_at", None)
        out["trace"] = [t.as_dict() for t in effect.evaluation.trace]
    elif isinstance(effect, Pending):
        t = effect.timer
        out["event"] = "hold_pending"
        out["rule"] = t.rule
        out["due_at"] = dt.datetime.fromtimestamp(t.due_at, tz).isoformat(timespec="milliseconds")
        out["trace"] = [x.as_dict() for x in effect.evaluation.trace]
    elif isinstance(effect, NoHold):
        ev = effect.evaluation
        if ev.error is not None:
            out["event"] = "hold_skipped"
            out["rule"] = ev.rule
            out["reason"] = ev.error
        else:
            out["event"] = "no_rule_matched"
        out["trace"] = [x.as_dict() for x in ev.trace]
    elif isinstance(effect, Unhold):
        out["event"] = "would_unhold" if effect.timer.shadow else "unhold"
        out["rule"] = effect.timer.rule
    elif isinstance(effect, Cancelled):
        out["event"] = "timer_cancelled"
        out["timer"] = effect.timer.kind.value
        out["rule"] = effect.timer.rule
        out["reason"] = effect.reason
    return out


def run_simulation(
    config: Path,
    events: Path,
    *,
    start: str | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
    clock: float | None = None,
) -> int:
    """`holdd simulate`: the exit status. `clock` stands in for the current
    time when nothing in the file or the arguments says when it starts."""
    stdout = out if out is not None else sys.stdout
    stderr = err if err is not None else sys.stderr
    try:
        source = read_rule_config(config)
        rules = source.load()
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=stderr)
        return 1
    try:
        tz: dt.tzinfo = ZoneInfo(source.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        print(f"{config}: unknown [notify] timezone {source.timezone!r}", file=stderr)
        return 1
    try:
        text = events.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        print(f"{events}: cannot read: {exc}", file=stderr)
        return 1

    lines: list[tuple[int, object, bytes]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            doc = orjson.loads(line)
        except orjson.JSONDecodeError:
            doc = None  # the decoder reports it, as the daemon would
        lines.append((number, doc, line.encode()))

    if start is not None:
        try:
            origin = parse_clock(start).timestamp()
        except ValueError as exc:
            print(f"--start: {exc}", file=stderr)
            return 1
    else:
        stamps = (_notification_time(doc, tz) for _n, doc, _raw in lines)
        found = next((s for s in stamps if s is not None), None)
        origin = found if found is not None else (clock if clock is not None else time.time())

    replay = VirtualRun(rules, source.names, start=origin)
    counts: dict[str, int] = {}
    notifications = dropped = unknown = 0
    shown = 0

    def emit() -> None:
        nonlocal shown
        for h in replay.happened[shown:]:
            record = _record(h.effect, origin, tz, h.at)
            counts[record["event"]] = counts.get(record["event"], 0) + 1
            stdout.write(orjson.dumps(record).decode() + "\n")
        shown = len(replay.happened)

    now = origin
    for number, doc, raw in lines:
        moment: float | None = None
        if isinstance(doc, dict) and "at" in doc:
            try:
                moment = origin + _offset(doc.pop("at"))
            except ValueError as exc:
                print(f"{events}:{number}: {exc}", file=stderr)
                dropped += 1
                continue
            raw = orjson.dumps(doc)
        else:
            moment = _notification_time(doc, tz)
        now = max(now, moment if moment is not None else now)
        decoded = replay.feed(raw, now)
        notifications += len(decoded.notifications)
        for name in decoded.unknown_names:
            unknown += 1
            print(
                f"{events}:{number}: notification name {name!r} maps to no event kind"
                f' (map it in [notify] events, e.g. {name!r} = "talk_started")',
                file=stderr,
            )
        for rejection in decoded.rejections:
            dropped += 1
            print(
                f"{events}:{number}: notification dropped: {rejection.reason.value} "
                f"({rejection.detail})",
                file=stderr,
            )
        emit()
    replay.finish()
    emit()
    summary = ", ".join(f"{n} {event}" for event, n in sorted(counts.items())) or "no decisions"
    print(
        f"{events}: {notifications} notification(s), {dropped} dropped,"
        f" {unknown} with an unknown name; {summary}",
        file=stderr,
    )
    return 0
