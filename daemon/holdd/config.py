"""`holdd.toml`: typed, frozen settings, every problem reported at once (core:
reads the files it is pointed at, nothing else).

Secrets (the access token) are held in `Secret`, whose repr never shows the
value, so a settings object can be logged or printed without leaking it.
"""

from __future__ import annotations

import glob
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

import msgspec

from holdd.durations import parse_duration
from holdd.errors import ConfigError, Problem
from holdd.events import EventKind
from holdd.tomlpos import KeyLines, validation_path


class Secret:
    """A value that must never reach a log line."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


class _CallApi(msgspec.Struct, forbid_unknown_fields=True):
    url: str
    access_token: str | None = None
    access_token_file: str | None = None
    timeout: str = "5s"
    max_connections: int = 10
    tts_max_length: int = 500


class _Notify(msgspec.Struct, forbid_unknown_fields=True):
    url: str
    headers: dict[str, str] = msgspec.field(default_factory=dict)
    timezone: str = "Europe/Moscow"
    events: dict[str, str] = msgspec.field(default_factory=dict)


class _Rules(msgspec.Struct, forbid_unknown_fields=True):
    files: list[str] = msgspec.field(default_factory=lambda: ["rules.d/*.toml"])


class _State(msgspec.Struct, forbid_unknown_fields=True):
    path: str = "state.db"


class _Http(msgspec.Struct, forbid_unknown_fields=True):
    listen: str = "127.0.0.1:9108"


class _Log(msgspec.Struct, forbid_unknown_fields=True):
    format: Literal["json", "console", "auto"] = "auto"
    level: Literal["debug", "info", "warning", "error"] = "info"


class _File(msgspec.Struct, forbid_unknown_fields=True):
    callapi: _CallApi
    notify: _Notify
    rules: _Rules = msgspec.field(default_factory=_Rules)
    state: _State = msgspec.field(default_factory=_State)
    http: _Http = msgspec.field(default_factory=_Http)
    log: _Log = msgspec.field(default_factory=_Log)


@dataclass(frozen=True, slots=True)
class Settings:
    path: Path
    callapi_url: str
    access_token: Secret
    timeout: float
    max_connections: int
    tts_max_length: int
    notify_url: str
    notify_headers: dict[str, str]
    timezone: str
    events: dict[str, str]
    rule_files: tuple[Path, ...]
    state_path: Path
    http_listen: tuple[str, int]
    log_format: str
    log_level: str
    #: Secret values, for the log redactor (never printed).
    secrets: tuple[str, ...] = field(default=(), repr=False)


def load_settings(path: Path, environ: dict[str, str] | None = None) -> Settings:
    """Read and validate `path`; raise ConfigError listing every problem."""
    env = dict(os.environ if environ is None else environ)
    name = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([Problem(name, None, f"cannot read config: {exc}")]) from None
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        m = re.search(r"\(at line (\d+), column \d+\)", str(exc))
        raise ConfigError(
            [Problem(name, int(m.group(1)) if m else None, f"not valid TOML: {exc}")]
        ) from None
    lines = KeyLines(text)
    problems: list[Problem] = []

    def problem(where: tuple[str | int, ...], what: str, hint: str | None = None) -> None:
        problems.append(Problem(name, lines.find(where), what, None, hint))

    try:
        raw = msgspec.convert(doc, _File, strict=True)
    except msgspec.ValidationError as exc:
        where, message = validation_path(str(exc))
        problem(where, message)
        raise ConfigError(problems) from None

    base = path.parent
    token = _token(raw.callapi, base, env, problem)
    timeout = _duration(raw.callapi.timeout, ("callapi", "timeout"), problem)
    if not raw.callapi.url.startswith(("https://", "http://")):
        problem(("callapi", "url"), f"url {raw.callapi.url!r} is not http(s)")
    if not raw.notify.url.startswith(("wss://", "ws://")):
        problem(("notify", "url"), f"url {raw.notify.url!r} is not ws(s)")
    if raw.callapi.max_connections < 1:
        problem(("callapi", "max_connections"), "max_connections must be at least 1")
    if raw.callapi.tts_max_length < 1:
        problem(("callapi", "tts_max_length"), "tts_max_length must be at least 1")
    kinds = {k.value for k in EventKind} - {EventKind.OTHER.value}
    for ev_name, kind in raw.notify.events.items():
        if kind not in kinds:
            problem(
                ("notify", "events", ev_name),
                f"event kind {kind!r} is unknown",
                "one of " + ", ".join(sorted(kinds)),
            )
    rule_files: list[Path] = []
    for pattern in raw.rules.files:
        matched = sorted(glob.glob(str(base / pattern)))
        if not matched:
            problem(("rules", "files"), f"no rule file matches {pattern!r}")
        rule_files.extend(Path(p) for p in matched)
    listen = _host_port(raw.http.listen, ("http", "listen"), problem)
    if problems:
        raise ConfigError(problems)
    secrets = tuple(s for s in (token.reveal(), *raw.notify.headers.values()) if s)
    return Settings(
        path=path,
        callapi_url=raw.callapi.url,
        access_token=token,
        timeout=timeout,
        max_connections=raw.callapi.max_connections,
        tts_max_length=raw.callapi.tts_max_length,
        notify_url=raw.notify.url,
        notify_headers=dict(raw.notify.headers),
        timezone=raw.notify.timezone,
        events=dict(raw.notify.events),
        rule_files=tuple(rule_files),
        state_path=base / raw.state.path,
        http_listen=listen,
        log_format=raw.log.format,
        log_level=raw.log.level,
        secrets=secrets,
    )


def _token(api: _CallApi, base: Path, env: dict[str, str], problem: _ProblemFn) -> Secret:
    """The permanent key: inline, from a file, or the systemd credential."""
    given = [k for k in ("access_token", "access_token_file") if getattr(api, k) is not None]
    if len(given) > 1:
        problem(("callapi", given[1]), "give only one of access_token and access_token_file")
    if api.access_token is not None:
        return Secret(api.access_token.strip())
    candidates: list[Path] = []
    if api.access_token_file is not None:
        candidates.append(base / api.access_token_file)
    elif env.get("CREDENTIALS_DIRECTORY"):
        candidates.append(Path(env["CREDENTIALS_DIRECTORY"]) / "access_token")
    for candidate in candidates:
        try:
            value = candidate.read_text(encoding="utf-8").strip()
        except OSError as exc:
            problem(("callapi", "access_token_file"), f"cannot read access token: {exc}")
            return Secret("")
        if not value:
            problem(("callapi", "access_token_file"), f"access token file {candidate} is empty")
        return Secret(value)
    problem(
        ("callapi",),
        "no Call API credentials",
        "set access_token, access_token_file, or LoadCredential=access_token under systemd",
    )
    return Secret("")


class _ProblemFn(Protocol):
    def __call__(
        self, where: tuple[str | int, ...], what: str, hint: str | None = None
    ) -> None: ...


def _duration(text: str, where: tuple[str | int, ...], problem: _ProblemFn) -> float:
    try:
        return parse_duration(text)
    except ValueError as exc:
        problem(where, str(exc))
        return 0.0


def _host_port(text: str, where: tuple[str | int, ...], problem: _ProblemFn) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not host:
        problem(where, f"listen {text!r} is not HOST:PORT")
        return ("127.0.0.1", 0)
    return (host.strip("[]"), int(port))
