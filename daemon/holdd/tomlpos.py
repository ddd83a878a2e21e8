"""Find the line of a key in a TOML document (core).

`tomllib` reports positions only for syntax errors. For the errors holdd finds
itself (an unknown key, a bad value) the operator still deserves `file:line`,
so this module reads the text once and records the line where each key path
is written: `("rule", 2, "match", "direction")` -> 14.
"""

from __future__ import annotations

import re

Path = tuple[str | int, ...]

_HEADER = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*\]\]?\s*(?:#.*)?$")
_KEY = re.compile(
    r"""^\s*((?:"[^"]*"|'[^']*'|[A-Za-z0-9_\-]+)(?:\s*\.\s*(?:"[^"]*"|'[^']*'|[A-Za-z0-9_\-]+))*)\s*="""
)
_PART = re.compile(r"""\s*("[^"]*"|'[^']*'|[A-Za-z0-9_\-]+)\s*""")


def _split(dotted: str) -> list[str]:
    parts = []
    for chunk in _PART.findall(dotted):
        parts.append(chunk[1:-1] if chunk[:1] in "\"'" else chunk)
    return parts


class KeyLines:
    """Lines of every table header and key in one TOML text (1-based)."""

    def __init__(self, text: str) -> None:
        self.lines: dict[Path, int] = {}
        self._arrays: dict[tuple[str, ...], int] = {}
        current: Path = ()
        in_multiline: str | None = None
        for number, line in enumerate(text.splitlines(), start=1):
            if in_multiline is not None:
                if line.count(in_multiline) % 2 == 1:
                    in_multiline = None
                continue
            header = _HEADER.match(line)
            if header:
                names = _split(header.group(2))
                current = self._resolve(names, is_array=header.group(1) == "[[")
                self.lines.setdefault(current, number)
                continue
            key = _KEY.match(line)
            if key:
                path = current + tuple(_split(key.group(1)))
                self.lines.setdefault(path, number)
                rest = line[key.end() :]
                for quote in ('"""', "'''"):
                    if rest.count(quote) % 2 == 1:
                        in_multiline = quote

    def _resolve(self, names: list[str], *, is_array: bool) -> Path:
        # Each prefix that names an array of tables refers to its last element.
        path: list[str | int] = []
        plain: list[str] = []
        for i, name in enumerate(names):
            plain.append(name)
            path.append(name)
            last = i == len(names) - 1
            key = tuple(plain)
            if last and is_array:
                self._arrays[key] = self._arrays.get(key, -1) + 1
                path.append(self._arrays[key])
            elif key in self._arrays:
                path.append(self._arrays[key])
        return tuple(path)

    def find(self, path: Path) -> int | None:
        """The line of `path`, or of its nearest written ancestor."""
        for end in range(len(path), 0, -1):
            line = self.lines.get(path[:end])
            if line is not None:
                return line
        return None


_AT = re.compile(r" - at `\$(.*)`$")
_UNKNOWN = re.compile(r"unknown field `([^`]+)`")


def validation_path(message: str) -> tuple[Path, str]:
    """Split a msgspec validation message into the key path and the words.

    "Object contains unknown field `x` - at `$.match`" -> (("match", "x"), "unknown key 'x'")
    """
    m = _AT.search(message)
    path: list[str | int] = []
    if m:
        for name, index in re.findall(r"\.([A-Za-z0-9_\-]+)|\[(\d+)\]", m.group(1)):
            path.append(name if name else int(index))
        message = message[: m.start()]
    unknown = _UNKNOWN.search(message)
    if unknown:
        path.append(unknown.group(1))
        message = f"unknown key {unknown.group(1)!r}"
    elif path and isinstance(path[-1], str):
        # Name the key: "mode: Invalid enum value 'loud'".
        message = f"{path[-1]}: {message}"
    elif path:
        message = f"{'.'.join(str(p) for p in path)}: {message}"
    return tuple(path), message
