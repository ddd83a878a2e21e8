"""`make bench`: figures measured side by side with a baseline in the same run.

1. Ingest: notifications through the core path (decode, call table, rules,
   decision to a null sink) against the baseline of `orjson.loads` alone on the
   same messages.
2. Rules: per-notification cost of the core path with 10, 100 and 1,000 rules,
   as a ratio to 10 rules.

Printed as a table and written to bench/RESULTS.md with the machine noted.
Nothing here asserts a wall time: the ratios are the result.
"""

from __future__ import annotations

import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import orjson

from holdd.calls import CallTable, ChangeKind
from holdd.events import decode
from holdd.rules import RuleEngine, load_rules

N = int(os.environ.get("HOLDD_BENCH_N", "200000"))
#: The 100- and 1,000-rule rows use fewer messages so that `make bench` stays short.
N_RULES = min(N, 20000)


def rule_file(directory: Path, count: int) -> Path:
    """`count` rules that do not match the traffic, and one catch-all at the end.

    A mix as operators write them: lines by exact number and glob, lines by
    regex, callers by exact number and regex, and every 50th rule a regex with
    no literal prefix (which no index can narrow down, so it is tried on
    every call).
    """
    parts = []
    for i in range(count - 1):
        if i % 50 == 49:
            match = f'virtual_phone_number = "re:\\\\d+{i:04d}99$"'
        elif i % 3 == 0:
            match = f'virtual_phone_number = ["7495{i:07d}", "7812{i:03d}*"]'
        elif i % 3 == 1:
            match = f'virtual_phone_number = ["7496{i:07d}", "re:^7813{i:03d}\\\\d{{4}}$"]'
        else:
            match = f'contact_phone_number = ["7903{i:07d}", "re:^7904{i:03d}\\\\d{{4}}$"]'
        parts.append(
            f'[[rule]]\nname = "r{i}"\npriority = {i % 7}\n[rule.match]\ndirection = "in"\n'
            f'{match}\n[rule.hold]\nmedia = "{1000 + i}"\n'
        )
    parts.append('[[rule]]\nname = "last"\n[rule.hold]\nmedia = "2034"\n')
    path = directory / f"rules-{count}.toml"
    path.write_text("\n".join(parts))
    return path


def messages(n: int) -> list[bytes]:
    """A realistic stream: each call starts, talks and finishes (4 messages)."""
    out = []
    for i in range(n // 4):
        base = {
            "call_session_id": 10_000_000 + i,
            "direction": "in",
            "contact_phone_number": f"7926{i % 10_000_000:07d}",
            "virtual_phone_number": "74993720692",
            "employee_id": 25,
            "notification_time": "2026-11-26 10:00:00.000",
        }
        for name in (
            "Входящий звонок на виртуальный номер",
            "Начало разговора",
            "Окончание разговора",
            "Завершение звонка",
        ):
            out.append(orjson.dumps({**base, "notification_name": name}))
    return out


def timed(fn: Callable[[], int]) -> tuple[float, int]:
    start = time.perf_counter()
    count = fn()
    return time.perf_counter() - start, count


def baseline(msgs: list[bytes]) -> Callable[[], int]:
    def run() -> int:
        n = 0
        for m in msgs:
            orjson.loads(m)
            n += 1
        return n

    return run


def core_path(msgs: list[bytes], engine: RuleEngine) -> Callable[[], int]:
    def run() -> int:
        table = CallTable(ended_ttl=60)
        decisions = 0
        now = 0.0
        for m in msgs:
            now += 0.0001
            for n in decode(m).notifications:
                for change in table.apply(n, now):
                    talk = change.kind is ChangeKind.TALK_ENTERED
                    if talk and engine.evaluate(change.call).decision is not None:
                        decisions += 1
            if len(table) > 5000:
                table.sweep(now)
        assert decisions == len(msgs) // 4, decisions
        return len(msgs)

    return run


def main() -> int:
    msgs = messages(N)
    rows: list[tuple[str, str, str, str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        engines = {c: RuleEngine(load_rules([rule_file(Path(tmp), c)])) for c in (10, 100, 1000)}
    base_s, base_n = timed(baseline(msgs))
    base_rate = base_n / base_s
    rows.append(
        (
            "orjson.loads only (baseline)",
            f"{base_rate:,.0f}",
            f"{base_s / base_n * 1e6:.2f}",
            "1.00",
        )
    )
    per_rule: dict[int, float] = {}
    for count, engine in engines.items():
        secs, n = timed(core_path(msgs if count == 10 else msgs[:N_RULES], engine))
        per_rule[count] = secs / n
        rows.append(
            (
                f"core path, {count} rules",
                f"{n / secs:,.0f}",
                f"{secs / n * 1e6:.2f}",
                f"{base_s / secs:.2f}",
            )
        )
    ratio = per_rule[1000] / per_rule[10]
    table = [
        "| path | notifications/s | µs per notification | rate vs baseline |",
        "|---|---|---|---|",
    ]
    table += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
    machine = (
        f"{os.cpu_count()} cores, Python {platform.python_version()}, "
        f"{platform.machine()}, N = {len(msgs):,} notifications"
    )
    summary = f"1,000 rules cost {ratio:.2f}x of 10 rules per notification."
    text = "\n".join(
        [
            "# holdd benchmark results",
            "",
            f"Machine: {machine}",
            "",
            "Regenerated by `make bench`. Rates are single-core, in one process.",
            "",
            *table,
            "",
            summary,
            "",
        ]
    )
    print(text)
    Path(__file__).with_name("RESULTS.md").write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
