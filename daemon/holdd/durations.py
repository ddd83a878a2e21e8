"""Duration strings such as "500ms", "15s", "2m", "1h30m" (core)."""

from __future__ import annotations

import re

_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: str) -> float:
    """Seconds in `text`; raises ValueError with a hint on anything else.

    Units must be given ("30" alone is refused: seconds or minutes is exactly
    the kind of guess an operator should not have to make).
    """
    s = text.strip().replace(" ", "")
    if not s:
        raise ValueError("empty duration (write e.g. '500ms', '15s', '2m', '1h30m')")
    pos = 0
    total = 0.0
    for m in _PART.finditer(s):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNIT[m.group(2)]
        pos = m.end()
    if pos != len(s):
        raise ValueError(f"bad duration {text!r} (write e.g. '500ms', '15s', '2m', '1h30m')")
    return total
