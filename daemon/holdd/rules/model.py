"""What a loaded rule is (core): compiled conditions and the hold action."""

from __future__ import annotations

import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from holdd.rules.patterns import NumberPattern, digits


class Mode(StrEnum):
    LIVE = "live"
    #: Evaluate and log `would_hold`, never call the API.
    SHADOW = "shadow"


@dataclass(frozen=True, slots=True)
class ContactMessage:
    """`contact_message` of `hold.call`: type "media" (file id) or "tts" (text)."""

    type: str
    value: str


@dataclass(frozen=True, slots=True)
class Condition:
    """One `[rule.match]` key: the call's value must match any of `expected`."""

    key: str
    expected: tuple[str, ...]
    numbers: tuple[NumberPattern, ...] = ()

    def test(self, fields: Mapping[str, object]) -> tuple[bool, object]:
        """(passed, the call's actual value)."""
        actual = fields.get(self.key)
        if actual is None:
            return False, None
        if self.numbers:
            number = digits(actual)
            return any(p.matches(number) for p in self.numbers), actual
        return str(actual).casefold() in self.expected, actual


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
    conditions: tuple[Condition, ...] = ()
    path: str = ""
    line: int | None = None


@dataclass(frozen=True, slots=True)
class RuleSet:
    """Rules in the order they are tried: priority (higher first), then file order."""

    rules: tuple[Rule, ...] = ()
    files: tuple[str, ...] = field(default=())
    tts_max_length: int = 500

    def by_name(self) -> dict[str, Rule]:
        return {r.name: r for r in self.rules}


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
