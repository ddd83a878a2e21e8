"""Problems of one TOML file, each with the line of the offending key (core).

Shared by the rule loader and the rule test runner: parse a file, convert its
tables with msgspec, and turn every complaint into a `Problem` printed as
`path:line: rule "name": what (hint)`. Unknown keys are checked before msgspec
sees the table, so that every unknown key of a table is reported (msgspec
stops at the first) with a suggestion: the close spelling, or the table the
key belongs to when TOML put it in the wrong one (every key after a `[table]`
header belongs to that table, the commonest mistake in hand-written TOML).
"""

from __future__ import annotations

import difflib
import re
import tomllib
from collections.abc import Mapping
from typing import Any, TypeVar

import msgspec

from holdd.config.toml import KeyLines, Path, validation_path
from holdd.core.errors import Problem

T = TypeVar("T")


def keys_of(struct: type[msgspec.Struct]) -> tuple[str, ...]:
    """The key names a Struct accepts, as written in files."""
    return tuple(f.encode_name for f in msgspec.structs.fields(struct))


class Reporter:
    """Collects the problems of one file."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.problems: list[Problem] = []
        self.lines = KeyLines("")

    def parse(self, text: str) -> dict[str, Any] | None:
        """The TOML document, or None after recording the syntax error."""
        try:
            doc = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            # tomllib says "... (at line 3, column 7)": keep its words, add the line.
            m = re.search(r"\(at line (\d+), column \d+\)", str(exc))
            self.problems.append(
                Problem(self.path, int(m.group(1)) if m else None, f"not valid TOML: {exc}")
            )
            return None
        self.lines = KeyLines(text)
        return doc

    def add(
        self,
        where: Path,
        what: str,
        rule: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.problems.append(Problem(self.path, self.lines.find(where), what, rule, hint))

    def line(self, where: Path) -> int | None:
        return self.lines.find(where)

    def unknown_keys(
        self,
        raw: Mapping[str, object],
        known: tuple[str, ...],
        where: Path,
        *,
        rule: str | None = None,
        table: str = "",
        elsewhere: Mapping[str, str] | None = None,
        subject: str = "",
    ) -> list[str]:
        """Report every key of `raw` not in `known`; return them."""
        unknown = [key for key in raw if key not in known]
        for key in unknown:
            self.add(
                (*where, key),
                subject + unknown_key(key, table),
                rule,
                suggest(key, known, table, elsewhere),
            )
        return unknown

    def convert(
        self,
        raw: object,
        struct: type[T],
        where: Path,
        *,
        rule: str | None = None,
        table: str = "",
        elsewhere: Mapping[str, str] | None = None,
        subject: str = "",
    ) -> T | None:
        """`raw` as `struct`, or None after recording what is wrong with it.

        Unknown keys are reported and then left out, so that the rest of the
        table is still checked and the operator sees every problem in one go;
        the caller knows from the grown `problems` that the table is not usable.
        """
        if isinstance(raw, dict) and issubclass(struct, msgspec.Struct):
            known = keys_of(struct)
            unknown = self.unknown_keys(
                raw, known, where, rule=rule, table=table, elsewhere=elsewhere, subject=subject
            )
            if unknown:
                raw = {k: v for k, v in raw.items() if k not in unknown}
        try:
            return msgspec.convert(raw, struct, strict=True)
        except msgspec.ValidationError as exc:
            path, what = validation_path(str(exc))
            self.add((*where, *path), subject + what, rule)
            return None


def unknown_key(key: str, table: str) -> str:
    return f"unknown key {key!r}" + (f" in {table}" if table else "")


def suggest(
    key: str,
    known: tuple[str, ...],
    table: str = "",
    elsewhere: Mapping[str, str] | None = None,
) -> str:
    """What the operator probably meant by an unknown `key`."""
    home = (elsewhere or {}).get(key)
    if home is not None and home != table:
        where = f"above {table}" if table else "there"
        return (
            f"{key} belongs in {home}; every key after a [table] header belongs to "
            f"that table, so move it {where}"
        )
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    if close:
        return f"did you mean {close[0]!r}?"
    return "known keys: " + ", ".join(known)
