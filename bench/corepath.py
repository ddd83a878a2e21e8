"""The core path without sockets: notifications in, commands out (bench helper).

Decode and the machine (core/machine.py: call table, rule driver, claims,
the store operations, log records and metrics it asks for, each hold taken
as held at once), which is what the daemon's loop does with each message
minus the I/O, against the baseline of `orjson.loads` alone on the same
messages.
"""

from __future__ import annotations

import cProfile
import pstats
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import orjson

from holdd.config.rulefiles import load_rules
from holdd.core.commands import SendHold
from holdd.core.events import DEFAULT_EVENT_NAMES, decode
from holdd.core.hold_policy import Result, Verdict
from holdd.core.machine import Machine
from holdd.core.rules import RuleEngine

#: The four notifications of one call, as the simulator (and UIS, section 8.3) sends them.
CALL_NOTIFICATIONS = (
    ("Входящий звонок на виртуальный номер", "call_started"),
    ("Начало разговора", "talk_started"),
    ("Окончание разговора", "talk_finished"),
    ("Завершение звонка", "call_finished"),
)


def rule_file(directory: Path, count: int, *, catch_all: bool = True) -> Path:
    """`count` rules that do not match the traffic, the last a catch-all
    (without `catch_all`: `count` rules, and no call matches any).

    A mix as operators write them: lines by exact number and glob, lines by
    regex, callers by exact number and regex, and every 50th rule a regex with
    no literal prefix (which no index can narrow down, so it is tried on
    every call).
    """
    parts = []
    for i in range(count - 1 if catch_all else count):
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
    if catch_all:
        parts.append('[[rule]]\nname = "last"\n[rule.hold]\nmedia = "2034"\n')
    path = directory / f"rules-{count}{'' if catch_all else '-nomatch'}.toml"
    path.write_text("\n".join(parts), encoding="utf-8")
    return path


def engine_with(directory: Path, count: int, *, catch_all: bool = True) -> RuleEngine:
    return RuleEngine(load_rules([rule_file(directory, count, catch_all=catch_all)]))


def call_fields(i: int) -> dict[str, object]:
    """The variables of call number `i`, shaped like the simulator's notifications."""
    return {
        "call_session_id": 10_000_000 + i,
        "direction": "in",
        "virtual_phone_number": "74993720692",
        "contact_phone_number": f"7926{i % 10_000_000:07d}",
        "contact_full_name": None,
        "employee_id": 25,
        "employee_full_name": "Анна Смирнова",
        "call_source": "va",
        "scenario_name": "Основной",
        "external_id": None,
    }


def messages(n: int) -> list[bytes]:
    """A realistic stream: each call starts, talks and finishes (4 messages)."""
    out = []
    for i in range(n // 4):
        base = call_fields(i)
        for name, mnemonic in CALL_NOTIFICATIONS:
            note = {
                "notification_name": name,
                "notification_mnemonic": mnemonic,
                "notification_time": "2026-11-26 10:00:00.000",
                **base,
            }
            if mnemonic.startswith("talk"):
                note["leg_ids"] = [500_000 + 2 * i, 500_001 + 2 * i]
            out.append(orjson.dumps(note))
    return out


def timed(fn: Callable[[], int]) -> tuple[float, int]:
    """(seconds, count) of one run of `fn`."""
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


def decode_only(msgs: list[bytes]) -> Callable[[], int]:
    """The first step of the core path alone: each message to a `Decoded`."""

    def run() -> int:
        n = 0
        for m in msgs:
            n += len(decode(m).notifications)
        assert n == len(msgs), n
        return n

    return run


#: How often the daemon sweeps ended calls out of the table (`sweep_every`
#: of io/daemon.py, run by io/services.py), in seconds of the clock below.
SWEEP_EVERY = 60.0


def core_path(msgs: list[bytes], engine: RuleEngine, *, matching: bool = True) -> Callable[[], int]:
    """What the daemon does with each message, without I/O: every decision to a sink.

    The clock moves 0.1 ms per message and the table is swept on the
    daemon's schedule (`SWEEP_EVERY`): in 200,000 messages (20 s), never,
    as ended calls stay for `ended_ttl` (60 s) in the daemon too. Sweeping
    more often would sweep nothing and charge messages with what a sweep
    costs (a pass over the rules for their longest cooldown).
    """

    def run() -> int:
        # As `holdd run` makes it (io/daemon.py): no snapshot for full traces.
        machine = Machine(engine.rules, DEFAULT_EVENT_NAMES, ended_ttl=60, full_traces=False)
        held = Verdict(Result.HELD, attempts=1)
        sink: list[object] = []
        decisions = 0
        now = 0.0
        next_sweep = SWEEP_EVERY
        for m in msgs:
            now += 0.0001
            out = machine.notifications(decode(m), "bench", now)
            sink.extend(out.persist)
            for send in out.sends:
                if isinstance(send, SendHold):
                    decisions += 1
                    sink.extend(machine.hold_settled(send.decision, held, now).persist)
            if len(sink) > 1000:
                sink.clear()
            if now >= next_sweep:
                machine.sweep(now)
                next_sweep = now + SWEEP_EVERY
        # Every call matches the catch-all rule once (none, without one),
        # and every call ended.
        assert decisions == (len(msgs) // 4 if matching else 0), decisions
        assert not machine.driver.agenda.timers
        return len(msgs)

    return run


@dataclass(frozen=True, slots=True)
class Hotspot:
    function: str
    own: float
    cumulative: float
    calls: int


@dataclass(frozen=True, slots=True)
class Profile:
    #: Seconds of own time of every function (the whole run).
    total: float
    spots: list[Hotspot]

    def top(self, n: int) -> list[Hotspot]:
        """The `n` functions with the most own time."""
        return sorted(self.spots, key=lambda h: h.own, reverse=True)[:n]

    def find(self, file: str, name: str) -> Hotspot | None:
        """The function `name` of `file` (the most expensive, if several)."""
        found = [
            h
            for h in self.spots
            if h.function.startswith(f"{file}:") and h.function.endswith(f"({name})")
        ]
        return max(found, key=lambda h: h.cumulative, default=None)


def profile(fn: Callable[[], object]) -> Profile:
    """cProfile one run of `fn`."""
    profiler = cProfile.Profile()
    profiler.enable()
    try:
        fn()
    finally:
        profiler.disable()
    # pstats keeps (file, line, name) -> (primitive calls, calls, own, cumulative, callers).
    raw = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    spots = []
    for (file, line, name), (_prim, calls, own, cumulative, _callers) in raw.items():
        where = f"{Path(file).name}:{line}({name})" if line else name
        spots.append(Hotspot(where, own, cumulative, calls))
    return Profile(sum(h.own for h in spots), spots)
