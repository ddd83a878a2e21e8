"""Read rule files into a `RuleSet`, reporting every problem at once (core:
it reads the files it is given, nothing else).

Each problem carries the file and the line of the offending key, found with
`tomlpos.KeyLines` because msgspec reports a JSON path and tomllib positions
only for syntax errors. Unknown keys are errors: a misspelt `contact_phone`
must never silently match every call.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

import msgspec

from holdd.errors import ConfigError, Problem
from holdd.events import INT_FIELDS, TEXT_FIELDS
from holdd.rules.model import Condition, HoldAction, Mode, Rule, RuleSet, placeholders
from holdd.rules.patterns import number_pattern
from holdd.tomlpos import KeyLines, validation_path

StrOrList = str | list[str]

#: Keys compared as phone numbers (digits, globs, `re:`).
NUMBER_KEYS = ("virtual_phone_number", "contact_phone_number")
#: Keys compared as text, without case.
TEXT_KEYS = ("direction", "call_source", "scenario_name")
#: Fields a TTS template may use.
PLACEHOLDER_FIELDS = TEXT_FIELDS | INT_FIELDS | {"call_session_id"}


class MatchSpec(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    direction: StrOrList | None = None
    virtual_phone_number: StrOrList | None = None
    contact_phone_number: StrOrList | None = None
    employee_id: int | list[int] | None = None
    call_source: StrOrList | None = None
    scenario_name: StrOrList | None = None


class HoldSpec(msgspec.Struct, forbid_unknown_fields=True):
    media: str | int | None = None
    tts: str | None = None


class RuleSpec(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    hold: HoldSpec
    priority: int = 0
    mode: Literal["live", "shadow"] = "live"
    match: MatchSpec = msgspec.field(default_factory=MatchSpec)


def _as_list(value: StrOrList | int | list[int] | None) -> list[str]:
    if value is None:
        return []
    if isinstance(value, list):
        return [str(v) for v in value]
    return [str(value)]


class _FileLoader:
    def __init__(self, path: str, tts_max_length: int) -> None:
        self.path = path
        self.tts_max_length = tts_max_length
        self.problems: list[Problem] = []
        self.lines = KeyLines("")

    def problem(
        self,
        where: tuple[str | int, ...],
        what: str,
        rule: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.problems.append(Problem(self.path, self.lines.find(where), what, rule, hint))

    def load(self, text: str) -> list[Rule]:
        try:
            doc = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            # tomllib says "... (at line 3, column 7)": keep its words, add the line.
            m = re.search(r"\(at line (\d+), column \d+\)", str(exc))
            self.problems.append(
                Problem(self.path, int(m.group(1)) if m else None, f"not valid TOML: {exc}")
            )
            return []
        self.lines = KeyLines(text)
        for key in doc:
            if key != "rule":
                self.problem((key,), f"unknown top-level key {key!r}", hint="expected [[rule]]")
        raw_rules = doc.get("rule", [])
        if not isinstance(raw_rules, list):
            self.problem(("rule",), "`rule` must be an array of tables", hint="write [[rule]]")
            return []
        return [r for i, raw in enumerate(raw_rules) if (r := self.rule(i, raw)) is not None]

    def rule(self, index: int, raw: object) -> Rule | None:
        name = raw.get("name") if isinstance(raw, dict) else None
        label = name if isinstance(name, str) else None
        base: tuple[str | int, ...] = ("rule", index)
        try:
            spec = msgspec.convert(raw, RuleSpec, strict=True)
        except msgspec.ValidationError as exc:
            where, what = validation_path(str(exc))
            self.problem((*base, *where), what, label)
            return None
        before = len(self.problems)
        conditions: list[Condition] = []
        for key in NUMBER_KEYS:
            values = _as_list(getattr(spec.match, key))
            compiled = []
            for v in values:
                try:
                    compiled.append(number_pattern(v))
                except ValueError as exc:
                    self.problem((*base, "match", key), str(exc), spec.name)
            if values:
                conditions.append(Condition(key, tuple(values), tuple(compiled)))
        for key in TEXT_KEYS:
            values = _as_list(getattr(spec.match, key))
            if values:
                conditions.append(Condition(key, tuple(v.casefold() for v in values)))
        employees = _as_list(spec.match.employee_id)
        if employees:
            conditions.append(Condition("employee_id", tuple(employees)))
        for d in _as_list(spec.match.direction):
            if d.casefold() not in ("in", "out"):
                self.problem(
                    (*base, "match", "direction"), f"direction {d!r} is not in or out", spec.name
                )
        # Test conditions in the order the operator wrote them, so a trace's
        # "first condition that failed" is the first one in the file.
        written = raw.get("match") if isinstance(raw, dict) else None
        order = list(written) if isinstance(written, dict) else []
        conditions.sort(key=lambda c: order.index(c.key) if c.key in order else len(order))
        hold = self.hold(base, spec)
        if hold is None or len(self.problems) > before:
            return None
        return Rule(
            name=spec.name,
            hold=hold,
            priority=spec.priority,
            mode=Mode(spec.mode),
            conditions=tuple(conditions),
            path=self.path,
            line=self.lines.find(base),
        )

    def hold(self, base: tuple[str | int, ...], spec: RuleSpec) -> HoldAction | None:
        where = (*base, "hold")
        media, tts = spec.hold.media, spec.hold.tts
        if (media is None) == (tts is None):
            self.problem(where, "[rule.hold] needs exactly one of media and tts", spec.name)
            return None
        if media is not None:
            text = str(media).strip()
            if not text.isdigit():
                self.problem(
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
            self.problem((*where, "tts"), str(exc), spec.name)
            return None
        unknown = [n for n in names if n not in PLACEHOLDER_FIELDS]
        if unknown:
            self.problem(
                (*where, "tts"),
                f"unknown placeholder {{{unknown[0]}}}",
                spec.name,
                "use a notification variable such as {contact_full_name}",
            )
            return None
        fixed = len(HoldAction(tts=tts).render({}).value)
        if not tts.strip():
            self.problem((*where, "tts"), "tts text is empty", spec.name)
            return None
        if fixed > self.tts_max_length:
            self.problem(
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
    problems: list[Problem] = []
    rules: list[Rule] = []
    names: dict[str, str] = {}
    files = []
    for path in paths:
        files.append(str(path))
        loader = _FileLoader(str(path), tts_max_length)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            problems.append(Problem(str(path), None, f"cannot read rule file: {exc}"))
            continue
        for rule in loader.load(text):
            if rule.name in names:
                loader.problems.append(
                    Problem(
                        rule.path,
                        rule.line,
                        "duplicate rule name",
                        rule.name,
                        f"first defined in {names[rule.name]}",
                    )
                )
                continue
            names[rule.name] = f"{rule.path}:{rule.line}"
            rules.append(rule)
        problems.extend(loader.problems)
    if problems:
        raise ConfigError(problems)
    # sorted() is stable: equal priorities keep file order.
    ordered = sorted(rules, key=lambda r: -r.priority)
    return RuleSet(tuple(ordered), tuple(files), tts_max_length)
