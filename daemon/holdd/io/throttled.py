"""Log lines that a client, or the event loop, can trigger at will: one per
reason per source per minute, the rest counted (shell).

A wrong webhook secret, a connection that never sends its headers, a request
aiohttp cannot parse: each is a warning an operator wants to see, and each
can be sent a thousand times a second. `ThrottledLog` writes the first of a
(event, reason, source) in a window and counts the rest; when the window
ends, one line says how many were held back (`suppressed`) and opens the
next window (core/throttle.py `SourceThrottle`). At stop, whatever is still
held back is said. The counts of every request are in /metrics
(docs/operations.md section 7).

`LoopErrorLog` is the event loop's exception handler: asyncio reports each
failed `accept()` (EMFILE, "Too many open files", once per retry), each
callback that raised, each unclosed transport there; it logs `loop_error`
once per reason per minute the same way.
"""

from __future__ import annotations

import asyncio
from typing import Any

import structlog

from holdd.core.throttle import Held, SourceThrottle

#: (level, event, reason, fields of the latest line held back)
_Payload = tuple[str, str, str, dict[str, Any]]

#: The window of every throttled line.
WINDOW = 60.0


class ThrottledLog:
    """`warning(event, reason=..., source=..., **fields)`: at most one line
    per (event, reason, source) per `per` seconds, each with `suppressed`,
    the number of the same held back before it.

    Runs on the event loop (its windows end on a loop timer); `close()` at
    stop says the counts still held back.
    """

    def __init__(self, logger: Any = None, *, per: float = WINDOW, max_sources: int = 200) -> None:
        self.log = logger if logger is not None else structlog.get_logger("holdd")
        self._throttle: SourceThrottle[_Payload] = SourceThrottle(per, max_sources)
        self._timer: asyncio.TimerHandle | None = None

    def warning(self, event: str, *, reason: str, source: str, **fields: Any) -> bool:
        """Log (or count) a warning; True when it was logged now."""
        return self.emit("warning", event, reason, source, fields)

    def error(self, event: str, *, reason: str, source: str, **fields: Any) -> bool:
        return self.emit("error", event, reason, source, fields)

    def emit(
        self,
        level: str,
        event: str,
        reason: str,
        source: str,
        fields: dict[str, Any],
        exc_info: BaseException | None = None,
    ) -> bool:
        """`exc_info` goes on the line logged now only, never on a count line."""
        loop = asyncio.get_running_loop()
        held = self._throttle.hit(
            f"{event}\x1f{reason}", source, loop.time(), (level, event, reason, fields)
        )
        if held is not None:
            extra: dict[str, Any] = {"exc_info": exc_info} if exc_info is not None else {}
            self._write(level, event, reason, source, held, fields, extra)
        self._arm(loop)
        return held is not None

    def close(self) -> None:
        """Say every count still held back; forget the windows."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for held in self._throttle.drain():
            self._say(held)

    # -- windows -------------------------------------------------------------------

    def _arm(self, loop: asyncio.AbstractEventLoop) -> None:
        due = self._throttle.next_due()
        if self._timer is not None:
            if due is not None and self._timer.when() == due:
                return
            self._timer.cancel()
            self._timer = None
        if due is not None:
            self._timer = loop.call_at(due, self._windows_ended, loop)

    def _windows_ended(self, loop: asyncio.AbstractEventLoop) -> None:
        self._timer = None
        for held in self._throttle.close_due(loop.time()):
            self._say(held)
        self._arm(loop)

    def _say(self, held: Held[_Payload]) -> None:
        level, event, reason, fields = held.payload
        self._write(level, event, reason, held.source, held.suppressed, fields, {})

    def _write(
        self,
        level: str,
        event: str,
        reason: str,
        source: str,
        suppressed: int,
        fields: dict[str, Any],
        extra: dict[str, Any],
    ) -> None:
        write = self.log.error if level == "error" else self.log.warning
        write(event, reason=reason, source=source, suppressed=suppressed, **fields, **extra)


class LoopErrorLog:
    """The loop's exception handler while installed: `loop_error` once per
    reason per minute (`reason`: asyncio's message, with the errno when
    there is one), with the exception's traceback on the line logged."""

    def __init__(self, *, per: float = WINDOW) -> None:
        self.lines = ThrottledLog(per=per)
        #: Errors reported while installed (logged or counted), and an event
        #: set at each, for whoever waits on the next one.
        self.seen = 0
        self.noticed = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._previous: Any = None

    def install(self) -> None:
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._previous = loop.get_exception_handler()
        loop.set_exception_handler(self)

    def uninstall(self) -> None:
        if self._loop is not None:
            self._loop.set_exception_handler(self._previous)
            self._loop = None
        self.lines.close()

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        self.seen += 1
        self.noticed.set()
        message = str(context.get("message") or "unhandled exception in the event loop")
        exc = context.get("exception")
        fields: dict[str, Any] = {}
        errno = getattr(exc, "errno", None)
        reason = message if errno is None else f"{message} (errno {errno})"
        if isinstance(exc, BaseException):
            fields["error"] = f"{type(exc).__name__}: {exc}"
        # An OSError (EMFILE, ENOBUFS) is the system's state, not a bug: its
        # traceback would only show asyncio's accept loop.
        trace = exc if isinstance(exc, BaseException) and not isinstance(exc, OSError) else None
        try:
            self.lines.emit("error", "loop_error", reason, "loop", fields, trace)
        except Exception:  # the handler of last resort must not raise: asyncio's own says it
            loop.default_exception_handler(context)
