"""Problems of one TOML file, each with the line of the offending key (core).

The one validation pipeline of holdd's files: the daemon config
(`config/settings.py`), rule files (`config/rulefiles.py`) and rule test
files (`cli/ruletest_file.py`) all parse their text with `Reporter.parse` and check
each table with `Reporter.convert`, so every problem is printed the same way,
`path:line: rule "name": what (hint)`, and every problem of a file is found in
one go:

* unknown keys are checked before msgspec sees the table (msgspec stops at
  the first), each with a suggestion: the close spelling, or the table the key
  belongs to when TOML put it in the wrong one (every key after a `[table]`
  header belongs to that table, the commonest mistake in hand-written TOML);
* every missing required key is reported, naming its table;
* every key is type-checked on its own, so two wrong types are two problems,
  said in an operator's words ("expected text in quotes, got a whole number")
  with the field's own hint where it has one ("durations are strings such as
  \"5s\"", from the `Duration` annotation).
"""

from __future__ import annotations

import difflib
import re
import tomllib
import types
import typing
from collections.abc import Mapping
from pathlib import Path as FilePath
from typing import Annotated, Any, TypeVar

import msgspec

from holdd.config.toml import KeyLines, Path, validation_path
from holdd.core.errors import Problem

T = TypeVar("T")

#: The hint of a duration key given a value of the wrong type.
DURATION_WORDS = 'durations are strings such as "5s"'
#: A duration key ("500ms", "15s", "2m", "1h30m"); parsed by the loader.
Duration = Annotated[str, msgspec.Meta(extra={"words": DURATION_WORDS})]

#: msgspec's type names, as an operator reads them.
_WORDS = {
    "int": "a whole number",
    "float": "a number",
    "str": "text in quotes",
    "bool": "true or false",
    "array": "a list",
    "object": "a table",
    "datetime": "a date and time",
    "date": "a date",
    "time": "a time of day",
}
_EXPECTED = re.compile(r"Expected `([^`]+)`, got `([^`]+)`")


def keys_of(struct: type[msgspec.Struct]) -> tuple[str, ...]:
    """The key names a Struct accepts, as written in files."""
    return tuple(f.encode_name for f in msgspec.structs.fields(struct))


class Reporter:
    """Collects the problems of one file."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.problems: list[Problem] = []
        self.lines = KeyLines("")

    def read(self, file: FilePath, what: str) -> dict[str, Any] | None:
        """Read and parse `file`; None after recording why it cannot be used.
        `what` names it in the problem: "config", "rule file", "test file"."""
        try:
            text = file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            self.problems.append(Problem(self.path, None, f"cannot read {what}: {exc}"))
            return None
        return self.parse(text)

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
        the caller knows from the grown `problems` that the table is not
        usable. A missing key or a value of the wrong type makes it None.
        """
        if not issubclass(struct, msgspec.Struct):
            return typing.cast(
                "T | None",
                self._value(raw, struct, where, str(where[-1]) if where else "", rule, subject),
            )
        if not isinstance(raw, dict):
            name = table or (str(where[-1]) if where else "the file")
            self.add(where, subject + f"{name} must be a table, not {_got(raw)}", rule)
            return None
        fields = msgspec.structs.fields(struct)
        known = tuple(f.encode_name for f in fields)
        unknown = self.unknown_keys(
            raw, known, where, rule=rule, table=table, elsewhere=elsewhere, subject=subject
        )
        if unknown:
            raw = {k: v for k, v in raw.items() if k not in unknown}
        before = len(self.problems)
        for f in fields:
            if f.encode_name not in raw:
                if f.required:
                    # The line is that of the table the key is missing from.
                    self.add(where, subject + missing_key(f.encode_name, table), rule)
                continue
            self._value(
                raw[f.encode_name], f.type, (*where, f.encode_name), f.encode_name, rule, subject
            )
        if len(self.problems) > before:
            return None
        try:
            return msgspec.convert(raw, struct, strict=True)
        except msgspec.ValidationError as exc:  # a constraint the per-key check cannot see
            path, what = validation_path(str(exc))
            self.add((*where, *path), subject + what, rule)
            return None

    def _value(
        self, value: object, typ: Any, where: Path, key: str, rule: str | None, subject: str
    ) -> Any:
        try:
            return msgspec.convert(value, typ, strict=True)
        except msgspec.ValidationError as exc:
            inner, _ = validation_path(str(exc))
            what, hint = type_problem(key, typ, str(exc), inner)
            self.add((*where, *inner), subject + what, rule, hint)
            return None


def type_problem(key: str, typ: Any, message: str, inner: Path = ()) -> tuple[str, str | None]:
    """A msgspec complaint about `key` in an operator's words, and its hint."""
    message = re.sub(r" - at `\$[^`]*`$", "", message)
    name = key + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in inner)
    hint = _hint_of(typ)
    m = _EXPECTED.search(message)
    if m:
        wanted = [w for w in m.group(1).split(" | ") if w != "null"]
        want = " or ".join(_WORDS.get(w, w) for w in wanted)
        got = {"str": "text", "null": "nothing"}.get(m.group(2)) or _WORDS.get(
            m.group(2), m.group(2)
        )
        return f"{name}: expected {want}, got {got}", hint
    enum = re.search(r"Invalid enum value (.+)$", message)
    if enum:
        choices = _literals(typ)
        if choices:
            return (
                f"{name}: {enum.group(1)} is not one of " + ", ".join(map(str, choices)),
                hint,
            )
    return f"{name}: {message}", hint


def _hint_of(typ: Any) -> str | None:
    """The `words` of a `msgspec.Meta` annotation anywhere in `typ`."""
    if typing.get_origin(typ) is Annotated:
        for meta in typ.__metadata__:
            if isinstance(meta, msgspec.Meta) and meta.extra and "words" in meta.extra:
                return str(meta.extra["words"])
    for arg in typing.get_args(typ):
        found = _hint_of(arg)
        if found is not None:
            return found
    return None


def _literals(typ: Any) -> tuple[object, ...]:
    if typing.get_origin(typ) is typing.Literal:
        return typing.get_args(typ)
    if typing.get_origin(typ) in (typing.Union, types.UnionType):
        for arg in typing.get_args(typ):
            found = _literals(arg)
            if found:
                return found
    return ()


def _got(value: object) -> str:
    for kind, word in (
        (bool, "true or false"),
        (int, "a whole number"),
        (float, "a number"),
        (str, "text"),
        (list, "a list"),
    ):
        if isinstance(value, kind):
            return word
    return type(value).__name__


def unknown_key(key: str, table: str) -> str:
    return f"unknown key {key!r}" + (f" in {table}" if table else "")


def missing_key(key: str, table: str) -> str:
    return f"missing key {key!r}" + (f" in {table}" if table else "")


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
