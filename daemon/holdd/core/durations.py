"""Duration strings such as "500ms", "15s", "2m", "1h30m" (core)."""

from __future__ import annotations

import re

#: One part, "1h" or "30m"; parts may stand apart ("1h 30m"), a number and
#: its unit may not ("1 5s" is refused, not read as 15 s).
_PART = re.compile(r"\s*(\d+(?:\.\d+)?)(ms|s|m|h|d)")
#: The longest duration holdd accepts: ten years. Anything longer is a typo,
#: and a timer that far out overflows the clocks it is added to.
MAX_SECONDS = 10 * 365 * 86400.0
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: str) -> float:
    """Seconds in `text`; raises ValueError with a hint on anything else.

    Units must be given ("30" alone is refused: seconds or minutes is exactly
    the kind of guess an operator should not have to make).
    """
    s = text.strip()
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
    if not total <= MAX_SECONDS:  # also catches inf
        raise ValueError(f"duration {text!r} is longer than ten years")
    return total


def format_duration(seconds: float) -> str:
    """The inverse of `parse_duration`, for messages: 90 -> "1m30s", 0.25 -> "250ms".

    Whole milliseconds are kept exactly; anything finer is rounded, because a
    virtual clock built from duration strings never needs it.
    """
    sign = "-" if seconds < 0 else ""
    ms = round(abs(seconds) * 1000)
    if ms == 0:
        return "0s"
    parts = []
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000)):
        if ms >= size:
            parts.append(f"{ms // size}{unit}")
            ms %= size
    if ms:
        # Seconds with a fraction read better as "1.5s" than "1s500ms", but a
        # duration under a second is clearer in milliseconds.
        if ms % 1000 == 0:
            parts.append(f"{ms // 1000}s")
        elif ms >= 1000 or parts:
            parts.append(f"{ms / 1000:g}s")
        else:
            parts.append(f"{ms}ms")
    return sign + "".join(parts)
