"""Patterns for the values a rule matches (core).

Phone numbers are compared as digits only (`+7 (926) 000-00-00` equals
`79260000000`). A number pattern is exact digits, a glob with `*` and `?`, or
`re:` followed by a regular expression matched against the whole digit string.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fnmatch import translate

_NON_DIGITS = re.compile(r"\D+")


def digits(value: object) -> str:
    """The digits of a phone number, whatever punctuation it came with."""
    return _NON_DIGITS.sub("", str(value))


@dataclass(frozen=True, slots=True)
class NumberPattern:
    text: str
    exact: str | None
    regex: re.Pattern[str] | None

    def matches(self, number: str) -> bool:
        """`number` must already be digits only."""
        if self.exact is not None:
            return number == self.exact
        assert self.regex is not None  # noqa: S101 - one of the two is always set
        return self.regex.fullmatch(number) is not None


def number_pattern(text: str) -> NumberPattern:
    """Compile one number pattern; raises ValueError with the reason."""
    if text.startswith("re:"):
        try:
            return NumberPattern(text, None, re.compile(text[3:]))
        except re.error as exc:
            raise ValueError(f"regular expression {text[3:]!r} does not compile: {exc}") from None
    if "*" in text or "?" in text:
        # Punctuation is dropped as for exact numbers; the wildcards are kept.
        core = re.sub(r"[^\d*?]", "", text)
        return NumberPattern(text, None, re.compile(translate(core)))
    exact = digits(text)
    if not exact:
        raise ValueError(f"number pattern {text!r} has no digits")
    return NumberPattern(text, exact, None)
