"""What is logged and counted of the notifications the machine cannot use (core).

A rejected message is counted by reason and logged with the reason, throttled
per reason so that a flood of bad input cannot flood the log. A notification
whose name or mnemonic maps to no event kind (UIS sends whatever name the
account owner typed) is counted by name and logged once per name at WARNING,
with the `[notify] events` hint (docs/uis.md).
"""

from __future__ import annotations

from holdd.core.commands import Commands
from holdd.core.events import Decoded
from holdd.core.throttle import Throttle

UNKNOWN_NAME_HINT = 'map it to an event kind in [notify] events, e.g. "NAME" = "talk_started"'


def note_rejected(
    decoded: Decoded,
    source: str,
    now: float,
    throttle: Throttle,
    names_seen: set[str],
    out: Commands,
) -> None:
    for rejection in decoded.rejections:
        reason = rejection.reason.value
        out.count("notification", "unknown", reason)
        held_back = throttle.allow(reason, now)
        if held_back is not None:
            out.log(
                "warning",
                "notification_dropped",
                reason=reason,
                detail=rejection.detail,
                call_session_id=rejection.call_session_id,
                source=source,
                held_back=held_back,
            )
    for name in decoded.unknown_names:
        out.count("unknown_name", name)
        if name not in names_seen:
            names_seen.add(name)
            out.log(
                "warning",
                "notification_name_unknown",
                name=name,
                source=source,
                hint=UNKNOWN_NAME_HINT,
            )
