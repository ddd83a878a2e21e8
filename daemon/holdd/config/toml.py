"""Find the line of a key in a TOML document (core).

`tomllib` reports positions only for syntax errors. For the errors holdd finds
itself (an unknown key, a bad value) the operator still deserves `file:line`,
so this module reads the text once and records the line where each key path
is written: `("rule", 2, "match", "direction")` -> 14. Elements of arrays and
keys of inline tables are recorded too, so the third pattern of a list written
one per line is found on its own line: `("rule", 2, "match",
"contact_phone_number", 2)`.

The scanner only runs on text `tomllib` has already accepted, so it assumes
well-formed TOML and never raises: at worst a path is not found and
`find` falls back to the nearest enclosing key.
"""

from __future__ import annotations

import re

Path = tuple[str | int, ...]

_BARE = re.compile(r"[A-Za-z0-9_\-]+")


class _Scanner:
    """A cursor over the text that knows the line it is on."""

    def __init__(self, text: str) -> None:
        self.s = text
        self.i = 0
        self.line = 1

    def peek(self, n: int = 1) -> str:
        return self.s[self.i : self.i + n]

    def advance(self, n: int = 1) -> None:
        chunk = self.s[self.i : self.i + n]
        self.line += chunk.count("\n")
        self.i += len(chunk)

    def at_end(self) -> bool:
        return self.i >= len(self.s)

    def skip_blank(self, *, newlines: bool) -> None:
        """Skip spaces (and newlines and comments, when `newlines`)."""
        while not self.at_end():
            c = self.s[self.i]
            if c in " \t\r":
                self.i += 1
            elif c == "\n" and newlines:
                self.advance()
            elif c == "#" and newlines:
                self.skip_line()
            else:
                return

    def skip_line(self) -> None:
        end = self.s.find("\n", self.i)
        self.i = len(self.s) if end < 0 else end

    def key(self) -> list[str]:
        """A dotted key: bare or quoted parts separated by dots."""
        parts: list[str] = []
        while not self.at_end():
            self.skip_blank(newlines=False)
            c = self.peek()
            if c and c in "\"'":
                parts.append(self.string()[1:-1])
            else:
                m = _BARE.match(self.s, self.i)
                if not m:
                    break
                parts.append(m.group())
                self.i = m.end()
            self.skip_blank(newlines=False)
            if self.peek() != ".":
                break
            self.i += 1
        return parts

    def string(self) -> str:
        """One string of any of the four kinds, returned with its quotes."""
        start = self.i
        quote = self.peek()
        triple = self.peek(3) == quote * 3
        delim = quote * 3 if triple else quote
        self.i += len(delim)
        while not self.at_end():
            c = self.s[self.i]
            if c == "\\" and quote == '"':
                self.advance(2)
            elif self.s.startswith(delim, self.i):
                self.i += len(delim)
                # A multi-line string may end with up to two extra quotes ("""a"""").
                extra = 0
                while triple and extra < 2 and self.peek() == quote:
                    self.i += 1
                    extra += 1
                break
            else:
                self.advance()
        return self.s[start : self.i]


class KeyLines:
    """Lines of every table header, key, array element and inline-table key in
    one TOML text (1-based)."""

    def __init__(self, text: str) -> None:
        self.lines: dict[Path, int] = {}
        self._arrays: dict[tuple[str, ...], int] = {}
        sc = _Scanner(text)
        current: Path = ()
        while True:
            sc.skip_blank(newlines=True)
            if sc.at_end():
                break
            if sc.peek() == "[":
                is_array = sc.peek(2) == "[["
                line = sc.line
                sc.i += 2 if is_array else 1
                names = sc.key()
                current = self._resolve(names, is_array=is_array)
                # Tables the header implies ([a.b] implies [a]) and the array
                # of an [[a]] are "written" where they first appear.
                for end in range(1, len(current) + 1):
                    self.lines.setdefault(current[:end], line)
                sc.skip_line()
                continue
            line = sc.line
            names = sc.key()
            sc.skip_blank(newlines=False)
            if not names or sc.peek() != "=":
                sc.skip_line()  # not TOML we understand; tomllib accepted it, so move on
                continue
            sc.i += 1
            path = current + tuple(names)
            self.lines.setdefault(path, line)
            self._value(sc, path)
            sc.skip_line()

    def _value(self, sc: _Scanner, path: Path) -> None:
        sc.skip_blank(newlines=False)
        c = sc.peek()
        if c and c in "\"'":
            sc.string()
        elif c == "[":
            sc.i += 1
            index = 0
            while True:
                sc.skip_blank(newlines=True)
                if sc.at_end() or sc.peek() == "]":
                    sc.i += 1
                    return
                if sc.peek() == ",":
                    sc.i += 1
                    index += 1
                    continue
                self.lines.setdefault((*path, index), sc.line)
                self._value(sc, (*path, index))
        elif c == "{":
            sc.i += 1
            while True:
                sc.skip_blank(newlines=False)
                if sc.at_end() or sc.peek() == "\n":
                    return  # not TOML 1.0; tomllib accepted it, so stop here
                if sc.peek() == "}":
                    sc.i += 1
                    return
                if sc.peek() == ",":
                    sc.i += 1
                    continue
                line = sc.line
                names = sc.key()
                sc.skip_blank(newlines=False)
                if not names or sc.peek() != "=":
                    sc.skip_line()
                    return
                sc.i += 1
                key_path = (*path, *names)
                self.lines.setdefault(key_path, line)
                self._value(sc, key_path)
        else:
            # A number, boolean or date: up to the next delimiter.
            while not sc.at_end() and sc.peek() not in ",]}\n#":
                sc.i += 1

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
_MISSING = re.compile(r"missing required field `([^`]+)`")


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
    # TOML has no null: "Expected `int | null`" would only puzzle an operator.
    message = message.replace(" | null`", "`")
    unknown = _UNKNOWN.search(message)
    missing = _MISSING.search(message)
    if unknown:
        path.append(unknown.group(1))
        message = f"unknown key {unknown.group(1)!r}"
    elif missing:
        # The line is that of the table the key is missing from.
        message = f"missing key {missing.group(1)!r}"
    elif path and isinstance(path[-1], str):
        # Name the key: "mode: Invalid enum value 'loud'".
        message = f"{path[-1]}: {message}"
    elif path:
        message = f"{'.'.join(str(p) for p in path)}: {message}"
    return tuple(path), message
