"""Patterns for the values a rule matches (core).

Phone numbers are compared as digits only (`+7 (926) 000-00-00` equals
`79260000000`). A number pattern is exact digits, a glob with `*` and `?`, or
`re:` followed by a regular expression matched against the whole digit string.
`@file:` lists are read by the loader and arrive here as the patterns they
contain (one a line; `list_file_lines` splits such a file).

Text values (`direction`, `call_source`, `scenario_name`) are compared without
case, exactly or by `re:` regex.

Every pattern also reports what the rule index (index.py) may use to find it
without trying it: the exact digits, or a literal prefix that every number it
matches must start with.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from fnmatch import translate

_NON_DIGITS = re.compile(r"\D+")
_LEADING_DIGITS = re.compile(r"\d+")


class PatternError(ValueError):
    """A pattern that cannot be used: `str()` says why, `hint` what to do."""

    def __init__(self, what: str, hint: str | None = None) -> None:
        super().__init__(what)
        self.hint = hint


def digits(value: object) -> str:
    """The digits of a phone number, whatever punctuation it came with."""
    return _NON_DIGITS.sub("", str(value))


@dataclass(frozen=True, slots=True)
class NumberPattern:
    text: str
    exact: str | None
    regex: re.Pattern[str] | None
    #: Digits every matching number starts with ("" when nothing is known).
    prefix: str = ""
    #: True when starting with `prefix` is the whole test (a glob like "7495*").
    prefix_only: bool = False

    def matches(self, number: str) -> bool:
        """`number` must already be digits only."""
        if self.exact is not None:
            return number == self.exact
        if self.prefix_only:
            return number.startswith(self.prefix)
        assert self.regex is not None  # noqa: S101 - one of the three is always set
        return self.regex.fullmatch(number) is not None


def number_pattern(text: str) -> NumberPattern:
    """Compile one number pattern; raises PatternError with the reason."""
    text = text.strip()
    if text.startswith("re:"):
        source = text[3:]
        try:
            regex = re.compile(source)
        except (re.error, OverflowError, RecursionError) as exc:
            raise PatternError(
                f"regular expression {source!r} does not compile: {exc}",
                "the part after re: is a Python regular expression over the digits",
            ) from None
        return NumberPattern(text, None, regex, _regex_prefix(source))
    if "*" in text or "?" in text:
        # Punctuation is dropped as for exact numbers; the wildcards are kept.
        core = re.sub(r"[^\d*?]", "", text)
        cut = min(i for i in (core.find("*"), core.find("?")) if i >= 0)
        prefix = core[:cut]
        only = core[cut:].strip("*") == ""
        return NumberPattern(text, None, re.compile(translate(core)), prefix, only)
    exact = digits(text)
    if not exact:
        raise PatternError(
            f"number pattern {text!r} has no digits",
            "write digits, a glob like '7495*', re:REGEX or @file:LIST",
        )
    return NumberPattern(text, exact, None, exact)


def _regex_prefix(source: str) -> str:
    """Digits every full match of `source` must begin with, or "".

    Conservative on purpose: any alternation, group or class at the start
    means "unknown", so the index never hides a rule that could match.
    """
    if "|" in source:
        return ""
    body = source[1:] if source.startswith("^") else source
    m = _LEADING_DIGITS.match(body)
    if m is None:
        return ""
    literal = m.group()
    following = body[m.end() : m.end() + 1]
    if following and following in "?*+{":
        # The quantifier applies to the last digit only ("7916?" may lack the 6).
        literal = literal[:-1]
    return literal


@dataclass(frozen=True, slots=True)
class NumberSet:
    """Any of several number patterns, tested in O(1) for exact numbers and
    O(length) for prefix globs, however long the list (a blocklist file may
    hold thousands)."""

    patterns: tuple[NumberPattern, ...]
    exact: frozenset[str] = field(init=False)
    prefixes: frozenset[str] = field(init=False)
    prefix_lengths: tuple[int, ...] = field(init=False)
    others: tuple[NumberPattern, ...] = field(init=False)
    #: The regexes of `others` (every pattern that is neither an exact number
    #: nor a prefix glob has one), tested in a plain loop.
    regexes: tuple[re.Pattern[str], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        exact = {p.exact for p in self.patterns if p.exact is not None}
        prefixes = {p.prefix for p in self.patterns if p.prefix_only}
        others = tuple(p for p in self.patterns if p.exact is None and not p.prefix_only)
        object.__setattr__(self, "exact", frozenset(exact))
        object.__setattr__(self, "prefixes", frozenset(prefixes))
        object.__setattr__(self, "prefix_lengths", tuple(sorted({len(p) for p in prefixes})))
        object.__setattr__(self, "others", others)
        regexes = tuple(p.regex for p in others if p.regex is not None)
        assert len(regexes) == len(others)  # noqa: S101 - see NumberPattern.matches
        object.__setattr__(self, "regexes", regexes)

    def matches(self, number: str) -> bool:
        if number in self.exact:
            return True
        for n in self.prefix_lengths:
            if n > len(number):
                break
            if number[:n] in self.prefixes:
                return True
        for regex in self.regexes:  # noqa: SIM110 - no generator per test: the hot path
            if regex.fullmatch(number) is not None:
                return True
        return False

    def index_keys(self) -> tuple[frozenset[str], frozenset[str]] | None:
        """(exact numbers, literal prefixes) that find every number this set
        matches, or None when some pattern gives no handle (a regex or glob
        that starts with a wildcard)."""
        if any(p.exact is None and not p.prefix for p in self.patterns):
            return None
        prefixes = frozenset(p.prefix for p in self.patterns if p.exact is None)
        return self.exact, prefixes


@dataclass(frozen=True, slots=True)
class TextSet:
    """Any of several text values, compared without case; `re:` for a regex."""

    values: frozenset[str]
    regexes: tuple[re.Pattern[str], ...] = ()

    def matches(self, text: str, folded: str | None = None) -> bool:
        """`text` is one of the values without case, or matches a regex;
        `folded` is `text.casefold()` when the caller has it already."""
        if (text.casefold() if folded is None else folded) in self.values:
            return True
        for regex in self.regexes:  # noqa: SIM110 - no generator per test: the hot path
            if regex.fullmatch(text) is not None:
                return True
        return False


def text_set(texts: Iterable[str]) -> TextSet:
    """Compile text patterns; raises PatternError naming the first bad regex."""
    values = set()
    regexes = []
    for text in texts:
        if text.startswith("re:"):
            try:
                regexes.append(re.compile(text[3:], re.IGNORECASE))
            except (re.error, OverflowError, RecursionError) as exc:
                raise PatternError(
                    f"regular expression {text[3:]!r} does not compile: {exc}"
                ) from None
        else:
            values.add(text.strip().casefold())
    return TextSet(frozenset(values), tuple(regexes))


def list_file_lines(text: str) -> list[tuple[int, str]]:
    """(line number, pattern) of an `@file:` list: one pattern a line; blank
    lines and `#` comments (at the start of a line, or after a space) skipped."""
    out = []
    for number, line in enumerate(text.splitlines(), start=1):
        body = re.split(r"(?:^|\s)#", line, maxsplit=1)[0].strip()
        if body:
            out.append((number, body))
    return out
