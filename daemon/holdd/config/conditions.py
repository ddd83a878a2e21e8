"""The parts of a rule built from its checked tables: `[rule.match]` /
`[rule.unless]` conditions (phone number patterns and `@file:` lists, text,
employees, schedules) and the `[rule.hold]` action (a media file id or TTS
text with placeholders) (core: reads only the `@file:` lists a rule names).

Problems go to the rule file's `Reporter`; a problem found in an `@file:` list
is anchored at the line of the key naming it (`RuleParts.anchors`), so that
config/rulefiles.py lists it where the rule file refers to the list.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from holdd.config.report import Reporter
from holdd.config.rule_schema import HOMES, MATCH_KEYS, HoldSpec, MatchSpec, RuleSpec, as_list
from holdd.config.toml import Path as KeyPath
from holdd.core.errors import Problem
from holdd.core.events import INT_FIELDS, TEXT_FIELDS
from holdd.core.rules.model import (
    Condition,
    EmployeeCondition,
    HoldAction,
    NumberCondition,
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
from holdd.core.rules.schedule import Schedule

#: Keys compared as phone numbers (digits, globs, `re:`, `@file:`).
NUMBER_KEYS = ("virtual_phone_number", "contact_phone_number")
#: Keys compared as text, without case.
TEXT_KEYS = ("direction", "call_source", "scenario_name")
#: Fields a TTS template may use.
PLACEHOLDER_FIELDS = TEXT_FIELDS | INT_FIELDS | {"call_session_id"}
FILE_PREFIX = "@file:"


@dataclass(frozen=True, slots=True)
class DefinedSchedule:
    """A schedule name and where it was defined (broken ones too, so that a
    rule using a broken schedule is not also told the name is unknown)."""

    schedule: Schedule | None
    where: str


class RuleParts:
    """Conditions and hold actions of the rules of one file."""

    def __init__(self, path: Path, tts_max_length: int, report: Reporter) -> None:
        self.path = path
        self.tts_max_length = tts_max_length
        self.report = report
        # Resolved list path -> its patterns, or the reason it cannot be read.
        self.lists: dict[Path, list[tuple[int, str]] | str] = {}
        # Problems found in an @file: list -> the line of the key naming it,
        # so that they are listed where the rule file refers to them.
        self.anchors: dict[int, int] = {}

    def conditions(
        self,
        base: KeyPath,
        spec: RuleSpec,
        section: Literal["match", "unless"],
        schedules: dict[str, DefinedSchedule],
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
            values = as_list(value)
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
        schedules: dict[str, DefinedSchedule],
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
