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
file; the daemon keeps its previous rule set in that case
(docs/operations.md section 5).

The tables' keys and types are config/rule_schema.py; the conditions and hold
actions of each rule (and the `@file:` lists) are built by config/conditions.py.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from holdd.config.conditions import DefinedSchedule, RuleParts
from holdd.config.report import Reporter
from holdd.config.rule_schema import HOMES, LimitSpec, RuleSpec, ScheduleSpec, ThenSpec, as_list
from holdd.config.toml import Path as KeyPath
from holdd.core.durations import parse_duration
from holdd.core.errors import ConfigError, Problem
from holdd.core.rules.model import Mode, Rule, RuleSet
from holdd.core.rules.schedule import Schedule, build_schedule


class _FileLoader:
    """Problems and results of one rule file."""

    def __init__(self, path: Path, tts_max_length: int) -> None:
        self.path = path
        self.report = Reporter(str(path))
        self.doc: dict[str, Any] = {}
        # The conditions and hold actions of its rules (and their @file: lists).
        self.parts = RuleParts(path, tts_max_length, self.report)

    def ordered_problems(self) -> list[Problem]:
        """Problems top to bottom of the file (passes find them out of order)."""

        def line(p: Problem) -> int:
            anchor = self.parts.anchors.get(id(p))
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
                    as_list(spec.days),
                    as_list(spec.hours),
                    as_list(spec.except_),
                )
                for err in errors:
                    key_path: KeyPath = (*where, err.key)
                    if err.index is not None and isinstance(body.get(err.key), list):
                        key_path = (*key_path, err.index)
                    self.report.add(key_path, f"{label}: {err}", hint=err.hint)
            out.append((name, schedule, self.report.line(where)))
        return out

    # -- rules -------------------------------------------------------------

    def rules(self, schedules: dict[str, DefinedSchedule]) -> list[Rule]:
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

    def rule(self, index: int, raw: object, schedules: dict[str, DefinedSchedule]) -> Rule | None:
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
        conditions = self.parts.conditions(base, spec, "match", schedules)
        exclusions = self.parts.conditions(base, spec, "unless", schedules)
        hold = self.parts.hold(base, spec)
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


def load_rules(paths: Iterable[Path], tts_max_length: int = 500) -> RuleSet:
    """Load every file; raise ConfigError with every problem of every file."""
    loaders: list[_FileLoader] = []
    problems: list[Problem] = []
    for path in paths:
        loader = _FileLoader(Path(path), tts_max_length)
        loaders.append(loader)
        loader.read()

    schedules: dict[str, DefinedSchedule] = {}
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
            schedules[name] = DefinedSchedule(schedule, f"{loader.path}:{line}")

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
