"""The `holdd test` file format: reading and checking a rule test file into
cases to run (shell: reads files; the run and the report are cli/ruletest.py).

A rule test file is TOML. It names the rules to load, a start clock, and any
number of tests; each test is a timeline of notifications and the actions
expected from it:

```toml
rules = ["../rules.d/*.toml"]   # rule files, globs relative to this test file
# config = "../holdd.toml"      # or: the daemon config's [rules] files,
                                # [callapi] tts_max_length and [notify] events
tts_max_length = 500            # with `rules`; default 500
clock = "2026-11-26T10:00:00+03:00"   # the moment of "0s", with its UTC offset

[[test]]
name = "a VIP caller hears music at once"
clock = "2026-11-28T10:00:00+03:00"   # optional: this test's own start
# Optional: variables every event of this test carries (an event may override).
call = { call_session_id = 1, direction = "in", contact_phone_number = "+7 926 111-22-33" }
# Notifications, each a table of UIS notification variables plus `at`, the
# offset from the clock. Several calls may share a timeline (call_session_id).
events = [
  { at = "0s", notification_name = "Начало разговора" },
  { at = "45s", notification_name = "Завершение звонка" },
]
# What must happen, in time order: action = hold | would_hold (a shadow rule)
# | unhold | would_unhold, with the rule; for holds optionally type
# (media | tts) and value, compared when given. call_session_id may be left
# out when the test has one call. `expect = []`: nothing may happen.
expect = [
  { at = "0s", action = "hold", rule = "vip-welcome", type = "media", value = "2034" },
]
```

`events` and `expect` may also be written as `[[test.events]]` /
`[[test.expect]]` tables; `expect` must then come before them (in TOML every
key after a table header belongs to that table). A test without `expect` is an
error, so that a forgotten expectation never passes silently.

Every problem of a file is reported at once, with its line, through
`config.report.Reporter`, the pipeline shared with holdd.toml and rule files.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import msgspec
import orjson

from holdd.cli.rule_source import RuleSource, globs, read_rule_config
from holdd.config.report import Duration, Reporter
from holdd.config.toml import Path as KeyPath
from holdd.core.durations import format_duration, parse_duration
from holdd.core.errors import ConfigError, Problem
from holdd.core.events import DEFAULT_EVENT_NAMES, EventKind, decode
from holdd.core.rules import RuleSet

# -- actions ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Action:
    """A hold or unhold at an offset from the test's clock."""

    at: float
    action: str
    call_session_id: int
    rule: str
    #: For holds: "media" or "tts" and the value sent; None in an expectation
    #: means "not compared".
    type: str | None = None
    value: str | None = None

    def render(self) -> str:
        text = f"at={format_duration(self.at)} {self.action} call={self.call_session_id} "
        text += f"rule={self.rule}"
        if self.type is not None:
            text += f" {self.type}"
            if self.value is not None:
                text += "=" + json.dumps(self.value, ensure_ascii=False)
        elif self.value is not None:
            text += " value=" + json.dumps(self.value, ensure_ascii=False)
        return text

    def satisfies(self, expected: Action) -> bool:
        return (
            abs(self.at - expected.at) < 1e-6
            and self.action == expected.action
            and self.call_session_id == expected.call_session_id
            and self.rule == expected.rule
            and (expected.type is None or self.type == expected.type)
            and (expected.value is None or self.value == expected.value)
        )


# -- test files ------------------------------------------------------------------


class _FileSpec(msgspec.Struct, forbid_unknown_fields=True):
    test: list[Any]
    rules: str | list[str] | None = None
    config: str | None = None
    tts_max_length: int | None = None
    clock: Any = None


class _TestSpec(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    events: list[Any]
    # Required, but checked by hand to say how to write "nothing".
    expect: list[Any] | None = None
    clock: Any = None
    call: dict[str, Any] = msgspec.field(default_factory=dict)


class _ExpectSpec(msgspec.Struct, forbid_unknown_fields=True):
    at: Duration
    action: Literal["hold", "would_hold", "unhold", "would_unhold"]
    rule: str
    call_session_id: int | None = None
    type: Literal["media", "tts"] | None = None
    value: str | int | None = None


#: Keys of a test that TOML moves into the last `[[test.events]]` table when
#: written after it.
_TEST_KEYS = ("name", "expect", "clock", "call", "events")


@dataclass(frozen=True, slots=True)
class Event:
    at: float
    raw: bytes
    line: int | None
    label: str


@dataclass(slots=True)
class Case:
    name: str
    line: int | None
    start: float
    tz: dt.tzinfo | None
    events: list[Event]
    expect: list[Action]


@dataclass(slots=True)
class TestFile:
    path: Path
    problems: list[Problem]
    cases: list[Case]
    rules: RuleSet | None = None
    names: Mapping[str, EventKind] = field(default_factory=lambda: dict(DEFAULT_EVENT_NAMES))


def parse_clock(value: object) -> dt.datetime:
    """An aware datetime from an ISO string or a TOML offset date-time."""
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value.strip())
        except ValueError:
            raise ValueError(f"clock {value!r} is not an ISO date and time") from None
    if not isinstance(value, dt.datetime):
        raise ValueError(f"clock {value!r} is not a date and time")
    if value.tzinfo is None:
        raise ValueError(f"clock {value.isoformat()!r} has no UTC offset")
    return value


def read_test_file(path: Path) -> TestFile:
    """Parse and check one test file and load its rules; problems, never raises."""
    report = Reporter(str(path))
    out = TestFile(path, report.problems, [])
    doc = report.read(path, "test file")
    if doc is None:
        return out
    if "test" not in doc:
        report.add((), "no [[test]] in the file", hint="see `holdd test --help` for the format")
        return out
    spec = report.convert(doc, _FileSpec, (), table="the test file")
    if spec is None:
        return out
    source = _rule_source(path, spec, report)
    if source is not None:
        out.names = source.names
        try:
            out.rules = source.load()
        except ConfigError as err:
            report.problems.extend(err.problems)
    default_clock = None
    if spec.clock is not None:
        try:
            default_clock = parse_clock(spec.clock)
        except ValueError as exc:
            report.add(("clock",), str(exc), hint='e.g. clock = "2026-11-26T10:00:00+03:00"')
    for i, raw in enumerate(spec.test):
        case = _case(i, raw, default_clock, out.names, report)
        if case is not None:
            out.cases.append(case)
    return out


def _rule_source(path: Path, spec: _FileSpec, report: Reporter) -> RuleSource | None:
    if (spec.rules is None) == (spec.config is None):
        report.add(
            ("rules",) if spec.rules is not None else ("test",),
            "give exactly one of rules and config",
            hint='rules = ["../rules.d/*.toml"] or config = "../holdd.toml"',
        )
        return None
    if spec.config is not None:
        if spec.tts_max_length is not None:
            report.add(("tts_max_length",), "tts_max_length comes from the config given")
        try:
            return read_rule_config(path.parent / spec.config)
        except ConfigError as err:
            report.problems.extend(err.problems)
            return None
    patterns = [spec.rules] if isinstance(spec.rules, str) else spec.rules
    files = globs(patterns, path.parent, report, ("rules",))
    return RuleSource(tuple(files), spec.tts_max_length or 500)


def _case(
    index: int,
    raw: object,
    default_clock: dt.datetime | None,
    names: Mapping[str, EventKind],
    report: Reporter,
) -> Case | None:
    where: KeyPath = ("test", index)
    label = raw.get("name") if isinstance(raw, dict) else None
    subject = f"test {label!r}: " if isinstance(label, str) else f"test number {index + 1}: "
    before = len(report.problems)
    spec = report.convert(raw, _TestSpec, where, table="[[test]]", subject=subject)
    if spec is None:
        return None
    clock = default_clock
    if spec.clock is not None:
        try:
            clock = parse_clock(spec.clock)
        except ValueError as exc:
            report.add((*where, "clock"), subject + str(exc))
    elif clock is None:
        report.add(
            where, subject + "no clock", hint='set clock = "2026-11-26T10:00:00+03:00" in the file'
        )
    events: list[Event] = []
    calls: set[int] = set()
    for j, item in enumerate(spec.events):
        event = _event(spec, j, item, (*where, "events", j), names, report, subject, calls)
        if event is not None:
            events.append(event)
    if not events and len(report.problems) == before:
        report.add((*where, "events"), subject + "no events")
    misplaced = any(isinstance(e, dict) and "expect" in e for e in spec.events)
    if spec.expect is None and not misplaced:
        report.add(
            where,
            subject + "no expect",
            hint="write expect = [] when nothing may happen, above any [[test.events]] table",
        )
    expect = []
    for j, item in enumerate(spec.expect or ()):
        at_path: KeyPath = (*where, "expect", j)
        e = report.convert(item, _ExpectSpec, at_path, table="an expectation", subject=subject)
        if e is None:
            continue
        try:
            at = parse_duration(e.at)
        except ValueError as exc:
            report.add((*at_path, "at"), subject + str(exc))
            continue
        csid = e.call_session_id
        if csid is None:
            if len(calls) != 1:
                report.add(
                    at_path, subject + "call_session_id is needed: the test has several calls"
                )
                continue
            csid = next(iter(calls))
        value = None if e.value is None else str(e.value)
        expect.append(Action(at, e.action, csid, e.rule, e.type, value))
    if len(report.problems) > before or clock is None:
        return None
    expect.sort(key=lambda a: a.at)  # stable: same-moment actions keep file order
    events.sort(key=lambda e: e.at)
    return Case(spec.name, report.line(where), clock.timestamp(), clock.tzinfo, events, expect)


def _event(
    spec: _TestSpec,
    index: int,
    item: object,
    where: KeyPath,
    names: Mapping[str, EventKind],
    report: Reporter,
    subject: str,
    calls: set[int],
) -> Event | None:
    if not isinstance(item, dict):
        report.add(where, subject + "an event must be a table of notification variables")
        return None
    misplaced = [k for k in item if k in _TEST_KEYS]
    for key in misplaced:
        report.add(
            (*where, key),
            subject + f"{key!r} inside an event",
            hint=f"TOML put it into the [[test.events]] table above it: write {key} before "
            "the first [[test.events]]",
        )
    if misplaced:
        return None
    merged = {**spec.call, **item}
    at_text = merged.pop("at", None)
    if not isinstance(at_text, str):
        report.add(
            where, subject + f'event {index + 1} needs at = "OFFSET"', hint='e.g. at = "45s"'
        )
        return None
    try:
        at = parse_duration(at_text)
    except ValueError as exc:
        report.add((*where, "at"), subject + str(exc))
        return None
    try:
        raw = orjson.dumps(merged)
    except TypeError as exc:
        report.add(where, subject + f"event {index + 1} cannot be sent as JSON: {exc}")
        return None
    decoded = decode(raw, names)
    for rejection in decoded.rejections:
        report.add(
            where,
            subject + f"event {index + 1} would be dropped: {rejection.reason.value} "
            f"({rejection.detail})",
        )
    if decoded.rejections:
        return None
    for unknown in decoded.unknown_names:
        # The daemon would keep the call's state as it is (and warn): a test
        # built on it would pass or fail for the wrong reason.
        report.add(
            where,
            subject + f"event {index + 1}: notification name {unknown!r} maps to no event kind",
            hint='use a name holdd knows (e.g. "Начало разговора") or map it in [notify]'
            ' events of the config (config = "..." instead of rules = [...])',
        )
    if decoded.unknown_names:
        return None
    calls.update(n.call_session_id for n in decoded.notifications)
    name = merged.get("notification_name") or merged.get("notification_mnemonic")
    label = str(name) if name else ("state " + str(merged["state"]) if "state" in merged else "?")
    csid = merged.get("call_session_id")
    return Event(at, raw, report.line(where), f"call {csid}: notification {label}")
