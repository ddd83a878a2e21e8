"""`holdd test FILE...`: rule test files, run on a virtual clock (shell: reads
files, prints; the run itself is core/virtual.py: the daemon's machine on a virtual clock).

The file format and its checks are cli/ruletest_file.py; this module runs the
cases and reports.

How a test runs: the notifications go through holdd.core.events.decode ->
holdd.core.calls.CallTable.apply -> the rule engine, as in the daemon, on a
virtual clock; `after` and `unhold_after` timers fire at their due times, in
order (a timer due at the same moment as a notification fires first); every
hold and unhold succeeds at once. Timers still pending after the last event
fire too (the calls are taken to go on talking). Each test starts afresh: no
call, no cooldown, no timer from another test.

A failing test prints the expected and the produced actions as a diff, then
the timeline: every notification and what the rules made of it, with the
first condition that failed for each rule tried. The last line is
"N passed, M failed"; the exit status is 1 when a test failed or a file could
not be run, else 0.
"""

from __future__ import annotations

import difflib
import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from holdd.cli.rule_source import RuleSource, read_rule_config
from holdd.cli.ruletest_file import Action, Case, TestFile, parse_clock, read_test_file
from holdd.core.durations import format_duration
from holdd.core.events import EventKind
from holdd.core.rules import RuleSet
from holdd.core.rules.driver import Effect, Hold, NoHold, Pending, TimerKind, Unhold
from holdd.core.rules.engine import Evaluation
from holdd.core.virtual import Happened, VirtualRun

#: What other modules import from here (the file format lives in ruletest_file).
__all__ = [
    "Action",
    "Case",
    "Outcome",
    "RuleSource",
    "TestFile",
    "actions_of",
    "describe",
    "parse_clock",
    "read_rule_config",
    "read_test_file",
    "run_case",
    "run_tests",
]

# -- actions ---------------------------------------------------------------------


def actions_of(happened: Sequence[Happened], start: float) -> list[Action]:
    out = []
    for h in happened:
        effect = h.effect
        if isinstance(effect, Hold):
            d = effect.decision
            out.append(
                Action(
                    h.at - start,
                    "would_hold" if d.shadow else "hold",
                    h.call_session_id,
                    d.rule.name,
                    d.message.type,
                    d.message.value,
                )
            )
        elif isinstance(effect, Unhold):
            kind = "would_unhold" if effect.timer.shadow else "unhold"
            out.append(Action(h.at - start, kind, h.call_session_id, effect.timer.rule))
    return out


def describe(effect: Effect, start: float) -> list[str]:
    """Lines of a timeline, for people: what happened, then the rules tried."""
    if isinstance(effect, Hold):
        d = effect.decision
        verb = "would hold" if d.shadow else "hold"
        what = f"{d.message.type} {json.dumps(d.message.value, ensure_ascii=False)}"
        return [f"{verb} by rule {d.rule.name} ({what})", *_tried(effect.evaluation)]
    if isinstance(effect, Pending):
        t = effect.timer
        return [
            f"rule {t.rule} matched; acts at {format_duration(t.due_at - start)} if the call "
            "is still talking",
            *_tried(effect.evaluation),
        ]
    if isinstance(effect, NoHold):
        ev = effect.evaluation
        if ev.error is not None:
            return [f"rule {ev.rule} matched but cannot act: {ev.error}"]
        return ["no rule acts", *_tried(ev)]
    if isinstance(effect, Unhold):
        verb = "would unhold" if effect.timer.shadow else "unhold"
        return [f"{verb} (rule {effect.timer.rule}, unhold_after)"]
    t = effect.timer
    what = "pending rule" if t.kind is TimerKind.AFTER else "unhold of rule"
    return [f"{what} {t.rule} cancelled ({effect.reason})"]


def _tried(evaluation: Evaluation) -> list[str]:
    return [f"  - {t.describe()}" for t in evaluation.trace]


# -- running ---------------------------------------------------------------------


@dataclass(slots=True)
class Outcome:
    case: Case
    got: list[Action]
    timeline: list[str]

    @property
    def passed(self) -> bool:
        return _aligned(self.case.expect, self.got) is None


def run_case(case: Case, rules: RuleSet, names: Mapping[str, EventKind]) -> Outcome:
    replay = VirtualRun(rules, names, start=case.start)
    lines: list[str] = []
    shown = 0

    def catch_up() -> None:
        nonlocal shown
        for h in replay.happened[shown:]:
            offset = format_duration(h.at - case.start)
            first, *rest = describe(h.effect, case.start)
            lines.append(f"at={offset} call {h.call_session_id}: {first}")
            lines.extend(f"  {line}" for line in rest)
        shown = len(replay.happened)

    for event in case.events:
        at = case.start + event.at
        replay.advance(at)
        catch_up()
        lines.append(f"at={format_duration(event.at)} {event.label}")
        replay.feed(event.raw, at)
        catch_up()
    replay.finish()
    catch_up()
    return Outcome(case, actions_of(replay.happened, case.start), lines)


def _aligned(expected: list[Action], got: list[Action]) -> list[str] | None:
    """None when `got` is exactly what `expected` asks for, else the diff lines."""
    used: set[int] = set()
    pairs: dict[int, int] = {}
    for i, e in enumerate(expected):
        for j, g in enumerate(got):
            if j not in used and g.satisfies(e):
                used.add(j)
                pairs[i] = j
                break
    # Same actions, and in the same order (by time, then as listed).
    same = len(pairs) == len(expected) == len(got)
    if same and all(pairs[i] < pairs[i + 1] for i in range(len(expected) - 1)):
        return None
    # An expectation that matched is shown as what was produced, so the diff
    # only marks real differences.
    left = [got[pairs[i]].render() if i in pairs else e.render() for i, e in enumerate(expected)]
    right = [g.render() for g in got]
    diff = list(difflib.unified_diff(left, right, "expected", "got", lineterm="", n=len(left)))
    return [d for d in diff if not d.startswith("@@")] or ["(same actions, different order)"]


def run_tests(paths: Sequence[Path], *, verbose: bool = False, out: TextIO | None = None) -> int:
    """`holdd test`: the exit status."""
    stream = out if out is not None else sys.stdout
    passed = failed = broken = 0
    for path in paths:
        tf = read_test_file(path)
        if tf.problems or tf.rules is None:
            broken += 1
            for problem in tf.problems:
                print(problem, file=stream)
            print(f"{path}: not run", file=stream)
            continue
        for case in tf.cases:
            outcome = run_case(case, tf.rules, tf.names)
            diff = _aligned(case.expect, outcome.got)
            where = f"{path}:{case.line}:" if case.line else f"{path}:"
            if diff is None:
                passed += 1
                if verbose:
                    print(f"ok   {where} test {case.name!r}", file=stream)
                    for line in outcome.timeline:
                        print(f"       {line}", file=stream)
                continue
            failed += 1
            print(f"FAIL {where} test {case.name!r}", file=stream)
            for line in diff:
                print(f"  {line}", file=stream)
            print("  timeline:", file=stream)
            for line in outcome.timeline:
                print(f"    {line}", file=stream)
    summary = f"{passed} passed, {failed} failed"
    if broken:
        summary += f", {broken} file(s) could not be run"
    print(summary, file=stream)
    return 1 if failed or broken else 0
