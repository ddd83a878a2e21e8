"""What a loaded rule is (core): compiled conditions, the hold action, timing
and limits. Everything here is immutable: a `RuleSet` can be swapped whole
on reload while timers and cooldowns, which are data outside it, stay."""

from __future__ import annotations

import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from holdd.core.rules.patterns import NumberSet, TextSet, digits
from holdd.core.rules.schedule import Schedule


class Mode(StrEnum):
    LIVE = "live"
    #: Evaluate and log `would_hold`, never call the API.
    SHADOW = "shadow"


@dataclass(frozen=True, slots=True)
class ContactMessage:
    """`contact_message` of `hold.call`: type "media" (file id) or "tts" (text)."""

    type: str
    value: str


class CallView:
    """A call's variables as conditions read them. Numbers are reduced to
    digits once per evaluation, not once per rule tried."""

    __slots__ = ("_digits", "_folded", "fields")

    def __init__(self, fields: Mapping[str, object]) -> None:
        self.fields = fields
        self._digits: dict[str, str | None] = {}
        self._folded: dict[str, tuple[str, str] | None] = {}

    def get(self, key: str) -> object:
        return self.fields.get(key)

    def digits(self, key: str) -> str | None:
        # A membership test, not try/except KeyError: half the calls are
        # the first for their key, and raising costs more than a second look-up.
        cache = self._digits
        if key in cache:
            return cache[key]
        value = self.fields.get(key)
        number = None if value is None else digits(value)
        cache[key] = number
        return number

    def text(self, key: str) -> tuple[str, str] | None:
        """(the value as text, and case-folded), once per evaluation."""
        cache = self._folded
        if key in cache:
            return cache[key]
        value = self.fields.get(key)
        text = None if value is None else str(value)
        found = None if text is None else (text, text.casefold())
        cache[key] = found
        return found


# Conditions: one `[rule.match]` / `[rule.unless]` key each. `test` is the hot
# path (no allocation beyond the lookup); `actual` is only called for traces.


@dataclass(frozen=True, slots=True)
class NumberCondition:
    """`virtual_phone_number` / `contact_phone_number`: the digits of the call's
    number match any of the patterns."""

    key: str
    numbers: NumberSet

    def test(self, call: CallView, at: float) -> bool:
        number = call.digits(self.key)
        return number is not None and self.numbers.matches(number)

    def actual(self, call: CallView, at: float) -> object:
        return call.get(self.key)


@dataclass(frozen=True, slots=True)
class TextCondition:
    """`direction` / `call_source` / `scenario_name`, compared without case."""

    key: str
    texts: TextSet

    def test(self, call: CallView, at: float) -> bool:
        found = call.text(self.key)
        return found is not None and self.texts.matches(*found)

    def actual(self, call: CallView, at: float) -> object:
        return call.get(self.key)


@dataclass(frozen=True, slots=True)
class EmployeeCondition:
    """`employee_id`: a whole number, any of the listed ones."""

    ids: frozenset[int]
    key: str = "employee_id"

    def test(self, call: CallView, at: float) -> bool:
        value = call.get(self.key)
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value)
        return isinstance(value, int) and value in self.ids

    def actual(self, call: CallView, at: float) -> object:
        return call.get(self.key)


@dataclass(frozen=True, slots=True)
class ScheduleCondition:
    """`schedule`: the decision moment lies in any of the named schedules."""

    schedules: tuple[Schedule, ...]
    key: str = "schedule"

    def test(self, call: CallView, at: float) -> bool:
        return any(s.contains(at) for s in self.schedules)

    def actual(self, call: CallView, at: float) -> object:
        return self.schedules[0].describe(at)

    @property
    def names(self) -> str:
        return ", ".join(s.name for s in self.schedules)


Condition = NumberCondition | TextCondition | EmployeeCondition | ScheduleCondition


@dataclass(frozen=True, slots=True)
class HoldAction:
    media: str | None = None
    #: TTS template with `{placeholders}` from the notification's variables.
    tts: str | None = None

    def render(self, fields: Mapping[str, object]) -> ContactMessage:
        if self.media is not None:
            return ContactMessage("media", self.media)
        assert self.tts is not None  # noqa: S101 - the loader guarantees one of the two
        return ContactMessage("tts", render_template(self.tts, fields))


@dataclass(frozen=True, slots=True)
class Rule:
    name: str
    hold: HoldAction
    priority: int = 0
    mode: Mode = Mode.LIVE
    #: `[rule.match]`, in the order written (a trace names the first that failed).
    conditions: tuple[Condition, ...] = ()
    #: `[rule.unless]`, in the order written: any that matches excludes the call.
    exclusions: tuple[Condition, ...] = ()
    #: Seconds the call must have been in TALK before the rule acts.
    after: float = 0.0
    #: `[rule.then] unhold_after`: seconds on hold before `unhold.call`.
    unhold_after: float | None = None
    #: `[rule.limit] cooldown`: seconds before the rule acts again for the same contact.
    cooldown: float | None = None
    enabled: bool = True
    path: str = ""
    line: int | None = None

    @property
    def where(self) -> str:
        return f"{self.path}:{self.line}" if self.line else self.path


@dataclass(frozen=True, slots=True)
class RuleSet:
    """Rules in the order they are tried: priority (higher first), then file order.

    Disabled rules (`enabled = false`) are validated but not in `rules`.
    """

    rules: tuple[Rule, ...] = ()
    files: tuple[str, ...] = field(default=())
    tts_max_length: int = 500
    schedules: Mapping[str, Schedule] = field(default_factory=dict)
    disabled: tuple[str, ...] = ()

    def by_name(self) -> dict[str, Rule]:
        return {r.name: r for r in self.rules}

    @property
    def longest_cooldown(self) -> float:
        """How long cooldown records must be kept (for pruning the store)."""
        return max((r.cooldown or 0.0 for r in self.rules), default=0.0)


def placeholders(template: str) -> list[str]:
    """The `{names}` a TTS template uses; raises ValueError when malformed."""
    names = []
    for _text, name, spec, conv in string.Formatter().parse(template):
        if name is None:
            continue
        if not name.isidentifier() or spec or conv:
            raise ValueError(f"placeholder {{{name}}} is not a plain field name")
        names.append(name)
    return names


def render_template(template: str, fields: Mapping[str, object]) -> str:
    """Fill `{name}` from `fields`; a variable without a value becomes empty."""
    out = []
    for text, name, _spec, _conv in string.Formatter().parse(template):
        out.append(text)
        if name is not None:
            value = fields.get(name)
            out.append("" if value is None else str(value))
    return "".join(out)
