"""Read rule files into a `RuleSet`, reporting every problem at once (core:
it reads the files it is given and the `@file:` lists they name, nothing else).

Each problem carries the file and the line of the offending key (or list
element, or line of an `@file:` list): the parsing and checking is
`config.report.Reporter`, the pipeline shared with holdd.toml and rule test
files.
Unknown keys are errors: a misspelt `contact_phone` must never silently match
every call.

Loading runs in two passes over all files: first every `[schedule.NAME]` (a
rule may use a schedule defined in another file), then every `[[rule]]`.
Either the whole set loads or `ConfigError` lists every problem of every
file; the daemon keeps its previous rule set in that case (spec section 5).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import msgspec

from holdd.config.report import Duration, Reporter, keys_of
from holdd.config.toml import Path as KeyPath
from holdd.core.durations import parse_duration
from holdd.core.errors import ConfigError, Problem
from holdd.core.events import INT_FIELDS, TEXT_FIELDS
from holdd.core.rules.model import (
    Condition,
    EmployeeCondition,
    HoldAction,
    Mode,
    NumberCondition,
    Rule,
    RuleSet,
    ScheduleCondition,
    TextCondition,
    placeholders,
)
from holdd.core.rules.patterns import (
    NumberPattern,
    NumberSet,
    PatternError,
    list_file_lines,
    number_pattern,
    text_set,
)
from holdd.core.rules.schedule import Schedule, build_schedule

StrOrList = str | list[str]

#: Keys compared as phone numbers (digits, globs, `re:`, `@file:`).
NUMBER_KEYS = ("virtual_phone_number", "contact_phone_number")
#: Keys compared as text, without case.
TEXT_KEYS = ("direction", "call_source", "scenario_name")
#: Fields a TTS template may use.
PLACEHOLDER_FIELDS = TEXT_FIELDS | INT_FIELDS | {"call_session_id"}
FILE_PREFIX = "@file:"


class MatchSpec(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    direction: StrOrList | None = None
    virtual_phone_number: StrOrList | None = None
    contact_phone_number: StrOrList | None = None
    employee_id: int | list[int] | None = None
    call_source: StrOrList | None = None
    scenario_name: StrOrList | None = None
    schedule: StrOrList | None = None


class HoldSpec(msgspec.Struct, forbid_unknown_fields=True):
    media: str | int | None = None
    tts: str | None = None


class ThenSpec(msgspec.Struct, forbid_unknown_fields=True):
    unhold_after: Duration | None = None


class LimitSpec(msgspec.Struct, forbid_unknown_fields=True):
    cooldown: Duration | None = None


class RuleSpec(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    hold: dict[str, Any]
    priority: int = 0
    after: Duration = "0s"
    mode: Literal["live", "shadow"] = "live"
    enabled: bool = True
    match: dict[str, Any] = msgspec.field(default_factory=dict)
    unless: dict[str, Any] = msgspec.field(default_factory=dict)
    then: dict[str, Any] = msgspec.field(default_factory=dict)
    limit: dict[str, Any] = msgspec.field(default_factory=dict)


class ScheduleSpec(msgspec.Struct, forbid_unknown_fields=True):
    timezone: str
    days: StrOrList = msgspec.field(default_factory=list)
    hours: StrOrList = msgspec.field(default_factory=list)
    # A string or a list of strings and TOML dates: checked by build_schedule.
    except_: Any = msgspec.field(default_factory=list, name="except")


def _table_of_keys() -> dict[str, str]:
    """Where each key of the rule language lives, for "belongs in" hints."""
    homes: dict[str, str] = {}
    for struct, table in (
        (RuleSpec, "[[rule]]"),
        (MatchSpec, "[rule.match] or [rule.unless]"),
        (HoldSpec, "[rule.hold]"),
        (ThenSpec, "[rule.then]"),
        (LimitSpec, "[rule.limit]"),
        (ScheduleSpec, "[schedule.NAME]"),
    ):
        for key in keys_of(struct):
            homes.setdefault(key, table)
    return homes


HOMES = _table_of_keys()
MATCH_KEYS = keys_of(MatchSpec)


def _as_list(value: object) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


@dataclass(frozen=True, slots=True)
class _Defined:
    """A schedule name and where it was defined (broken ones too, so that a
    rule using a broken schedule is not also told the name is unknown)."""

    schedule: Schedule | None
    where: str


class _FileLoader:
    """Problems and results of one rule file."""

    def __init__(self, path: Path, tts_max_length: int) -> None:
        self.path = path
        self.tts_max_length = tts_max_length
        self.report = Reporter(str(path))
        self.doc: dict[str, Any] = {}
        # Resolved list path -> its patterns, or the reason it cannot be read.
        self.lists: dict[Path, list[tuple[int, str]] | str] = {}
        # Problems found in an @file: list -> the line of the key naming it,
        # so that they are listed where the rule file refers to them.
        self.anchors: dict[int, int] = {}

    def ordered_problems(self) -> list[Problem]:
        """Problems top to bottom of the file (passes find them out of order)."""

        def line(p: Problem) -> int:
            anchor = self.anchors.get(id(p))
            return anchor if anchor is not None else (p.line or 0)

        return sorted(self.report.problems, key=line)

    def read(self) -> None:
        doc = self.report.read(self.path, "rule file")
        if doc is None:
            return
        self.doc = doc
        for key in doc:
            if key not in ("rule", "schedule"):
                self.report.add(
                    (key,),
                    f"unknown top-level key {key!r}",
                    hint="a rule file holds [[rule]] and [schedule.NAME] tables",
                )

    # -- schedules -------------------------------------------------------

    def schedules(self) -> list[tuple[str, Schedule | None, int | None]]:
        raw = self.doc.get("schedule")
        if raw is None:
            return []
        if not isinstance(raw, dict):
            self.report.add(
                ("schedule",), "`schedule` must be a table", hint="write [schedule.NAME]"
            )
            return []
        out = []
        for name, body in raw.items():
            where: KeyPath = ("schedule", name)
            label = f'schedule "{name}"'
            spec = self.report.convert(
                body,
                ScheduleSpec,
                where,
                table=f"[schedule.{name}]",
                elsewhere=HOMES,
                subject=f"{label}: ",
            )
            schedule = None
            if spec is not None:
                schedule, errors = build_schedule(
                    name,
                    spec.timezone,
                    _as_list(spec.days),
                    _as_list(spec.hours),
                    _as_list(spec.except_),
                )
                for err in errors:
                    key_path: KeyPath = (*where, err.key)
                    if err.index is not None and isinstance(body.get(err.key), list):
                        key_path = (*key_path, err.index)
                    self.report.add(key_path, f"{label}: {err}", hint=err.hint)
            out.append((name, schedule, self.report.line(where)))
        return out

    # -- rules -------------------------------------------------------------

    def rules(self, schedules: dict[str, _Defined]) -> list[Rule]:
        raw_rules = self.doc.get("rule", [])
        if not isinstance(raw_rules, list):
            self.report.add(("rule",), "`rule` must be an array of tables", hint="write [[rule]]")
            return []
        out = []
        for i, raw in enumerate(raw_rules):
            rule = self.rule(i, raw, schedules)
            if rule is not None:
                out.append(rule)
        return out

    def rule(self, index: int, raw: object, schedules: dict[str, _Defined]) -> Rule | None:
        base: KeyPath = ("rule", index)
        name = raw.get("name") if isinstance(raw, dict) else None
        label = name if isinstance(name, str) else None
        if label is None and isinstance(raw, dict) and "name" not in raw:
            # Without a name, problems could not say which rule they are about.
            self.report.add(base, f"rule number {index + 1} has no name", hint='add name = "..."')
            return None
        before = len(self.report.problems)
        spec = self.report.convert(
            raw, RuleSpec, base, rule=label, table="[[rule]]", elsewhere=HOMES
        )
        if spec is None:
            return None
        conditions = self.conditions(base, spec, "match", schedules)
        exclusions = self.conditions(base, spec, "unless", schedules)
        hold = self.hold(base, spec)
        after = self.duration(spec.after, (*base, "after"), spec.name, allow_zero=True)
        then = self.report.convert(
            spec.then,
            ThenSpec,
            (*base, "then"),
            rule=spec.name,
            table="[rule.then]",
            elsewhere=HOMES,
        )
        limit = self.report.convert(
            spec.limit,
            LimitSpec,
            (*base, "limit"),
            rule=spec.name,
            table="[rule.limit]",
            elsewhere=HOMES,
        )
        unhold_after = cooldown = None
        if then is not None and then.unhold_after is not None:
            unhold_after = self.duration(
                then.unhold_after, (*base, "then", "unhold_after"), spec.name
            )
        if limit is not None and limit.cooldown is not None:
            cooldown = self.duration(limit.cooldown, (*base, "limit", "cooldown"), spec.name)
        if hold is None or len(self.report.problems) > before:
            return None
        return Rule(
            name=spec.name,
            hold=hold,
            priority=spec.priority,
            mode=Mode(spec.mode),
            conditions=conditions,
            exclusions=exclusions,
            after=after or 0.0,
            unhold_after=unhold_after,
            cooldown=cooldown,
            enabled=spec.enabled,
            path=str(self.path),
            line=self.report.line(base),
        )

    def duration(
        self, text: str, where: KeyPath, rule: str, *, allow_zero: bool = False
    ) -> float | None:
        key = str(where[-1])
        try:
            seconds = parse_duration(text)
        except ValueError as exc:
            self.report.add(where, f"{key}: {exc}", rule)
            return None
        if seconds <= 0 and not allow_zero:
            self.report.add(where, f"{key} must be longer than 0s", rule, "or remove the key")
            return None
        return seconds

    def conditions(
        self,
        base: KeyPath,
        spec: RuleSpec,
        section: Literal["match", "unless"],
        schedules: dict[str, _Defined],
    ) -> tuple[Condition, ...]:
        raw = getattr(spec, section)
        where: KeyPath = (*base, section)
        table = f"[rule.{section}]"
        checked = self.report.convert(
            raw, MatchSpec, where, rule=spec.name, table=table, elsewhere=HOMES
        )
        if checked is None:
            return ()
        out: list[Condition] = []
        # Keys in the order the operator wrote them, so a trace's "first
        # condition that failed" is the first one in the file.
        for key, value in raw.items():
            if key not in MATCH_KEYS:
                continue  # reported by convert
            values = _as_list(value)
            at: KeyPath = (*where, key)
            if not values:
                self.report.add(
                    at,
                    f"{key} is an empty list: it can never match",
                    spec.name,
                    "give at least one value, or remove the key",
                )
                continue
            condition = self.condition(
                key, values, at, isinstance(value, list), spec.name, schedules
            )
            if condition is not None:
                out.append(condition)
        return tuple(out)

    def condition(
        self,
        key: str,
        values: list[Any],
        at: KeyPath,
        is_list: bool,
        rule: str,
        schedules: dict[str, _Defined],
    ) -> Condition | None:
        def element(i: int) -> KeyPath:
            return (*at, i) if is_list else at

        if key in NUMBER_KEYS:
            patterns: list[NumberPattern] = []
            for i, text in enumerate(values):
                patterns.extend(self.number_patterns(str(text), element(i), rule))
            return NumberCondition(key, NumberSet(tuple(patterns)))
        if key == "employee_id":
            return EmployeeCondition(frozenset(int(v) for v in values))
        if key == "schedule":
            found: list[Schedule] = []
            for i, name in enumerate(values):
                defined = schedules.get(name)
                if defined is None:
                    close = difflib.get_close_matches(name, list(schedules), n=1)
                    known = ", ".join(sorted(schedules)) or "none is defined"
                    self.report.add(
                        element(i),
                        f"unknown schedule {name!r}",
                        rule,
                        f"did you mean {close[0]!r}?"
                        if close
                        else f"define [schedule.{name}] in a rule file; known: {known}",
                    )
                elif defined.schedule is not None:
                    found.append(defined.schedule)
            return ScheduleCondition(tuple(found)) if len(found) == len(values) else None
        # Text keys.
        texts = [str(v) for v in values]
        if key == "direction":
            for i, d in enumerate(texts):
                if d.strip().casefold() not in ("in", "out"):
                    self.report.add(
                        element(i),
                        f"direction {d!r} is not in or out",
                        rule,
                        '"in" for calls to your numbers, "out" for calls your staff make',
                    )
                    return None
        try:
            return TextCondition(key, text_set(texts))
        except PatternError as exc:
            self.report.add(at, str(exc), rule, exc.hint)
            return None

    def number_patterns(self, text: str, at: KeyPath, rule: str) -> list[NumberPattern]:
        if not text.startswith(FILE_PREFIX):
            try:
                return [number_pattern(text)]
            except PatternError as exc:
                self.report.add(at, str(exc), rule, exc.hint)
                return []
        name = text[len(FILE_PREFIX) :].strip()
        target = self.path.parent / name
        lines = self.lists.get(target)
        if lines is None:
            try:
                lines = list_file_lines(target.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError) as exc:
                reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
                lines = f"cannot read {text} ({target}): {reason}"
            self.lists[target] = lines
            report_lines = True
        else:
            # A list used by several rules is reported once, with the first.
            report_lines = False
        if isinstance(lines, str):
            self.report.add(at, lines, rule, "paths of @file: lists are relative to the rule file")
            return []
        out = []
        for number, line in lines:
            problem: tuple[str, str | None] | None = None
            if line.startswith(FILE_PREFIX):
                problem = (f"{line!r}: a list cannot include another list", None)
            else:
                try:
                    out.append(number_pattern(line))
                except PatternError as exc:
                    problem = (str(exc), exc.hint)
            if problem is not None and report_lines:
                found = Problem(str(target), number, problem[0], rule, problem[1])
                self.report.problems.append(found)
                self.anchors[id(found)] = self.report.line(at) or 0
            elif problem is not None:
                self.report.add(at, f"{text} has bad lines (reported above)", rule)
                return []
        return out

    def hold(self, base: KeyPath, spec: RuleSpec) -> HoldAction | None:
        where: KeyPath = (*base, "hold")
        before = len(self.report.problems)
        hold = self.report.convert(
            spec.hold, HoldSpec, where, rule=spec.name, table="[rule.hold]", elsewhere=HOMES
        )
        if hold is None or len(self.report.problems) > before:
            return None  # an unknown key is reported; "needs one of" would only repeat it
        media, tts = hold.media, hold.tts
        if (media is None) == (tts is None):
            self.report.add(
                where,
                "[rule.hold] needs exactly one of media and tts",
                spec.name,
                'media = "2034" (a media file id) or tts = "text"',
            )
            return None
        if media is not None:
            text = str(media).strip()
            if not text.isdigit() or not text.isascii():
                self.report.add(
                    (*where, "media"),
                    f"media {media!r} is not a media file id",
                    spec.name,
                    "the numeric id from the Data API's get.media_files",
                )
                return None
            return HoldAction(media=text)
        assert tts is not None  # noqa: S101 - checked just above
        try:
            names = placeholders(tts)
        except ValueError as exc:
            self.report.add((*where, "tts"), str(exc), spec.name, "write {{ and }} for braces")
            return None
        unknown = [n for n in names if n not in PLACEHOLDER_FIELDS]
        if unknown:
            self.report.add(
                (*where, "tts"),
                f"unknown placeholder {{{unknown[0]}}}",
                spec.name,
                "use a notification variable such as {contact_full_name}",
            )
            return None
        if not tts.strip():
            self.report.add((*where, "tts"), "tts text is empty", spec.name)
            return None
        # Placeholders may be empty, so the fixed text is the shortest the
        # message can be: longer than the limit means it can never be sent.
        fixed = len(HoldAction(tts=tts).render({}).value)
        if fixed > self.tts_max_length:
            self.report.add(
                (*where, "tts"),
                f"tts text is {fixed} characters before placeholders, over tts_max_length "
                f"{self.tts_max_length}",
                spec.name,
                "shorten it or raise [callapi] tts_max_length to your tariff's limit",
            )
            return None
        return HoldAction(tts=tts)


def load_rules(paths: Iterable[Path], tts_max_length: int = 500) -> RuleSet:
    """Load every file; raise ConfigError with every problem of every file."""
    loaders: list[_FileLoader] = []
    problems: list[Problem] = []
    for path in paths:
        loader = _FileLoader(Path(path), tts_max_length)
        loaders.append(loader)
        loader.read()

    schedules: dict[str, _Defined] = {}
    for loader in loaders:
        for name, schedule, line in loader.schedules():
            first = schedules.get(name)
            if first is not None:
                loader.report.problems.append(
                    Problem(
                        str(loader.path),
                        line,
                        f"schedule {name!r} is defined twice",
                        None,
                        f"first defined in {first.where}",
                    )
                )
                continue
            schedules[name] = _Defined(schedule, f"{loader.path}:{line}")

    rules: list[Rule] = []
    names: dict[str, str] = {}
    for loader in loaders:
        for rule in loader.rules(schedules):
            if rule.name in names:
                loader.report.problems.append(
                    Problem(
                        rule.path,
                        rule.line,
                        "duplicate rule name",
                        rule.name,
                        f"first defined in {names[rule.name]}",
                    )
                )
                continue
            names[rule.name] = rule.where
            rules.append(rule)
        problems.extend(loader.ordered_problems())
    if problems:
        raise ConfigError(problems)
    # sorted() is stable: equal priorities keep file order.
    ordered = sorted((r for r in rules if r.enabled), key=lambda r: -r.priority)
    return RuleSet(
        rules=tuple(ordered),
        files=tuple(str(loader.path) for loader in loaders),
        tts_max_length=tts_max_length,
        schedules={n: d.schedule for n, d in schedules.items() if d.schedule is not None},
        disabled=tuple(r.name for r in rules if not r.enabled),
    )
