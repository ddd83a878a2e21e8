"""Logging: one JSON object per line on stdout, or a console rendering on a
TTY (shell).

structlog's production recipe: contextvars first, so a
task that bound `call_session_id` and `rule` has them on every line; an ISO
UTC `timestamp`; structured tracebacks; orjson bytes. The stdlib loggers of
aiohttp and websockets go through the same chain, so every line on stdout is
the same shape. A redaction step replaces every configured secret wherever it
appears, and the values of secret-named keys, before anything is rendered.

When stdout is the journal (`$JOURNAL_STREAM` names the device and inode of
the file descriptor we write to; docs/operations.md section 6) every line starts
with its syslog priority, `<3>{...}` for an error: journald strips the prefix
and stores it as PRIORITY (SyslogLevelPrefix=yes, the default), so
`journalctl -p err -u holdd` works and `journalctl -o cat` still shows plain
JSON. A child process inherits the variable but not our stdout, hence the
inode check. The level policy and the event names are in docs/operations.md.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterable, Mapping, MutableMapping
from typing import Any, BinaryIO

import orjson
import structlog
import structlog.tracebacks
from structlog.typing import EventDict, Processor, WrappedLogger

#: Bumped by every `configure`: each `Logger` then assembles its logger again.
_generation = 0

_SECRET_KEYS = frozenset({"access_token", "password", "secret", "authorization", "token"})
_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


class Logger:
    """`structlog.get_logger(name)` for a hot path: the bound logger is
    assembled once per `configure`, not once per line.

    `configure` keeps structlog's `cache_logger_on_first_use` off, since it
    runs again (a test, the demo); structlog's lazy proxy then assembles a new
    bound logger (processors, context, output) for every line it writes. This
    one keeps the logger it assembled until `configure` runs again, so a line
    goes to the stream and through the processors configured last, as before.
    """

    def __init__(self, name: str) -> None:
        self._proxy = structlog.get_logger(name)
        self._built = -1
        self._logger: Any = None

    @property
    def bound(self) -> Any:
        """The structlog logger of the current configuration."""
        if self._built != _generation:
            self._logger = self._proxy.bind()
            self._built = _generation
        return self._logger

    def __getattr__(self, name: str) -> Any:
        # info, warning, error, exception, debug, bind, ...
        return getattr(self.bound, name)


class Redactor:
    """Replace secrets anywhere in an event dict (keys, values, nested)."""

    def __init__(self, secrets: Iterable[str]) -> None:
        # Longest first, so a secret containing another is replaced whole.
        self.secrets = sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True)

    def __call__(self, _logger: WrappedLogger, _name: str, event: EventDict) -> EventDict:
        return {k: self._clean(k, v) for k, v in event.items()}

    def _clean(self, key: object, value: object) -> Any:
        if isinstance(key, str) and key.casefold() in _SECRET_KEYS and value:
            return "***"
        if isinstance(value, str):
            for secret in self.secrets:
                if secret in value:
                    value = value.replace(secret, "***")
            return value
        if isinstance(value, dict):
            return {k: self._clean(k, v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self._clean(None, v) for v in value]
        if isinstance(value, int | float | bool) or value is None:
            return value
        return self._clean(key, repr(value))


#: syslog priorities of sd-daemon(3) (SD_CRIT .. SD_DEBUG); structlog's
#: add_log_level already turns `exception` into `error`.
_PRIORITIES = {
    "critical": b"<2>",
    "error": b"<3>",
    "exception": b"<3>",
    "warning": b"<4>",
    "warn": b"<4>",
    "info": b"<6>",
    "debug": b"<7>",
}


def on_journal(stream: object, environ: Mapping[str, str] | None = None) -> bool:
    """True when `stream` is the journal's stdout/stderr connection.

    See docs/operations.md section 6.
    """
    expected = (os.environ if environ is None else environ).get("JOURNAL_STREAM", "")
    if not expected:
        return False
    fileno = getattr(stream, "fileno", None)
    if fileno is None:
        return False
    try:
        st = os.fstat(fileno())
    except (OSError, ValueError):  # io.UnsupportedOperation is both
        return False
    return expected == f"{st.st_dev}:{st.st_ino}"


#: Structured tracebacks without frame locals: a frame's locals can hold a
#: request body or a session key that no redaction list knows.
_TRACEBACKS = structlog.processors.ExceptionRenderer(
    structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
)


def _redact_keys(_logger: WrappedLogger, _name: str, event: EventDict) -> EventDict:
    """Values under a secret's key name (access_token, password, ...), at
    any depth of nested dicts, become "***"; lists are not walked (the
    rendered line is searched for every known secret anyway)."""
    return _keys_clean(event)


#: Keys seen to be no secret's name, so that a line whose keys are all
#: known (nearly every line: the keys are the code's) and whose values hold
#: no dict is copied in C, without a casefold per key. Bounded: keys that
#: come from outside (a nested dict's) never fill it past `_CLEAN_KEYS_MAX`.
_CLEAN_KEYS: set[str] = set()
_CLEAN_KEYS_MAX = 4096


def _keys_clean(d: Mapping[Any, Any]) -> dict[Any, Any]:
    if _CLEAN_KEYS.issuperset(d) and dict not in set(map(type, d.values())):
        return dict(d)
    out = {}
    for key, value in d.items():
        if isinstance(key, str) and key.casefold() in _SECRET_KEYS:
            if value:
                value = "***"
            elif type(value) is dict:
                value = {}
        else:
            if isinstance(key, str) and len(_CLEAN_KEYS) < _CLEAN_KEYS_MAX:
                _CLEAN_KEYS.add(key)
            if type(value) is dict:
                value = _keys_clean(value)
        out[key] = value
    return out


class _RedactingJson:
    """Render with orjson, then replace every known secret in the line's
    bytes, raw and JSON-escaped: one substring search per secret, in C,
    instead of a walk of every value in Python."""

    def __init__(self, secrets: Iterable[str]) -> None:
        found: set[bytes] = set()
        for secret in secrets:
            if len(secret) >= 4:
                found.add(secret.encode())
                found.add(orjson.dumps(secret)[1:-1])  # as it stands inside a JSON string
        # Longest first, so a secret containing another is replaced whole.
        self._secrets = sorted(found, key=len, reverse=True)

    def __call__(self, logger: WrappedLogger, name: str, event: EventDict) -> bytes:
        line = orjson.dumps(event, default=repr)
        for secret in self._secrets:
            if secret in line:
                line = line.replace(secret, b"***")
        return line


class _PriorityPrefix:
    """Prefixes the rendered line with `<N>` for journald; the level is read
    before rendering, since the renderer consumes the event dict."""

    def __init__(self, render: Processor) -> None:
        self._render = render

    def __call__(self, logger: WrappedLogger, name: str, event: EventDict) -> bytes:
        prefix = _PRIORITIES.get(str(event.get("level", "info")), b"<6>")
        rendered = self._render(logger, name, event)
        assert isinstance(rendered, bytes)  # noqa: S101 - both renderers give bytes
        return prefix + rendered


class _ConsoleBytes:
    """The console rendering: coloured on a terminal (unless `$NO_COLOR` is
    set); a list of texts (`problems`) as one indented line per item below
    the event, other nested values (a trace) as compact JSON with non-ASCII
    text as written, rather than Python reprs."""

    def __init__(self, colors: bool) -> None:
        self._console = structlog.dev.ConsoleRenderer(colors=colors)

    def __call__(self, logger: WrappedLogger, name: str, event: EventDict) -> bytes:
        flat: EventDict = {}
        below: list[str] = []
        for key, value in event.items():
            if isinstance(value, list | tuple) and value and all(isinstance(v, str) for v in value):
                below.append(f"    {key}:")
                below.extend(f"      - {v}" for v in value)
            elif isinstance(value, dict | list | tuple) and key != "exc_info":
                flat[key] = orjson.dumps(value, default=repr).decode()
            else:
                flat[key] = value
        text = str(self._console(logger, name, flat))
        return "\n".join([text, *below]).encode()


def _colours(out: BinaryIO, environ: Mapping[str, str] | None = None) -> bool:
    """Colour only on a terminal, and never when NO_COLOR is set (no-color.org)."""
    env = os.environ if environ is None else environ
    return not env.get("NO_COLOR") and out.isatty()


class _StdlibToStream(logging.Handler):
    """Writes stdlib records, rendered by structlog, to the same byte stream."""

    def __init__(self, stream: BinaryIO, formatter: logging.Formatter) -> None:
        super().__init__()
        self.stream = stream
        self.setFormatter(formatter)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
            self.stream.write(line.encode() + b"\n")
            self.stream.flush()
        except Exception:  # logging must never take the daemon down
            self.handleError(record)


def configure(
    *,
    fmt: str = "auto",
    level: str = "info",
    secrets: Iterable[str] = (),
    stream: BinaryIO | None = None,
    journal: bool | None = None,
) -> None:
    """Set up structlog and the stdlib root logger; may be called again.

    `journal`: prefix lines with their syslog priority; None detects it from
    `$JOURNAL_STREAM` and the stream's file descriptor.
    """
    global _generation
    _generation += 1
    out = stream if stream is not None else sys.stdout.buffer
    console = fmt == "console" or (fmt == "auto" and out.isatty())
    prefixed = on_journal(out) if journal is None else journal
    redact = Redactor(secrets)
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True, key="timestamp"),
    ]
    tail: list[Processor]
    tail = (
        [redact, _ConsoleBytes(_colours(out))]
        if console
        else [_TRACEBACKS, _redact_keys, _RedactingJson(secrets)]
    )
    if prefixed:
        tail[-1] = _PriorityPrefix(tail[-1])
    structlog.configure(
        processors=[*shared, structlog.processors.StackInfoRenderer(), *tail],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level]),
        logger_factory=structlog.BytesLoggerFactory(out),
        # Not cached: `configure` runs again on reload, in tests and in the demo.
        cache_logger_on_first_use=False,
    )

    def _text(logger: WrappedLogger, name: str, event: EventDict) -> str:
        rendered = tail[-1](logger, name, event)
        assert isinstance(rendered, bytes)  # noqa: S101 - both renderers give bytes
        return rendered.decode()

    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*shared, structlog.stdlib.ExtraAdder()],
        processors=[
            _event_from_message,
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            *tail[:-1],
            _text,
        ],
    )
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, _StdlibToStream):
            root.removeHandler(handler)
    root.addHandler(_StdlibToStream(out, formatter))
    root.setLevel(max(_LEVELS[level], logging.INFO))


def _event_from_message(
    _logger: WrappedLogger, _name: str, event: MutableMapping[str, Any]
) -> EventDict:
    """Foreign records: keep their text in `message`, name the event after the logger."""
    record = event.get("_record")
    text = event.get("event")
    logger_name = getattr(record, "name", None) or event.get("logger") or "stdlib"
    event["message"] = text
    event["event"] = f"{str(logger_name).replace('.', '_')}_log"
    return dict(event)
