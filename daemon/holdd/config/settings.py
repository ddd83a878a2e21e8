"""`holdd.toml`: typed, frozen settings, every problem reported at once (core:
reads the files it is pointed at, nothing else).

The file's sections are read and their shape checked by config/config_file.py;
the credentials are read by config/credentials.py, whose `Secret` keeps them
out of logs. This module checks the values and builds `Settings`.
"""

from __future__ import annotations

import difflib
import glob
import os
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from holdd.config.config_file import read_config
from holdd.config.credentials import (
    Creds,
    LoginPassword,
    ProblemFn,
    Secret,
    SecretMode,
    read_login,
    read_state_password,
    read_token,
    read_webhook_secret,
)
from holdd.core.durations import parse_duration
from holdd.core.errors import ConfigError, Problem
from holdd.core.events import EventKind

#: `Secret`, `LoginPassword`, `SecretMode` and `read_config` are imported from
#: here too (their homes are config/credentials.py and config/config_file.py).
__all__ = [
    "LoginPassword",
    "Secret",
    "SecretMode",
    "Settings",
    "load_settings",
    "read_config",
]


@dataclass(frozen=True, slots=True)
class Settings:
    path: Path
    callapi_url: str
    access_token: Secret
    timeout: float
    max_connections: int
    tts_max_length: int
    #: The notification websocket; None when only the webhook feeds holdd.
    notify_url: str | None
    notify_headers: dict[str, str]
    timezone: str
    events: dict[str, str]
    resync_interval: float
    idle_timeout: float
    #: The webhook receiver: (host, port), path and shared secret; None when off.
    webhook_listen: tuple[str, int] | None
    webhook_path: str
    webhook_secret: Secret | None
    rule_files: tuple[Path, ...]
    state_path: Path
    state_retention: float
    http_listen: tuple[str, int]
    log_format: str
    log_level: str
    #: Secret values, for the log redactor (never printed).
    secrets: tuple[str, ...] = field(default=(), repr=False)
    #: `[callapi] login` + password: session keys from `login.user` instead of
    #: a permanent key (`access_token` is then empty).
    login: LoginPassword | None = None
    #: `[callapi] action_deadline`: retries of one action stop after this long.
    action_deadline: float = 30.0
    #: `[http] header_timeout`, `body_timeout`, `connection_limit`: the guards
    #: of both HTTP listeners (probes and webhook).
    http_header_timeout: float = 10.0
    http_body_timeout: float = 10.0
    http_connection_limit: int = 1024
    #: `holdd check` only: credentials it could not verify from where it runs
    #: (another user's file, a systemd credential), said instead of "ok".
    unverified: tuple[Problem, ...] = ()
    #: `[state] url`: a PostgreSQL database shared by several instances
    #: (None: the SQLite file at `state_path`). Never logged as is: its
    #: password, if inline, shows only through io/store/postgres.py `safe_url`.
    state_url: str | None = field(default=None, repr=False)
    #: The database password from `[state] password_file` or the systemd
    #: credential `state_password`, when the URL has none.
    state_password: Secret | None = None
    #: `[state] lease`: failover time of a shared store.
    state_lease: float = 5.0
    #: `[state] instance`: this instance's name in a shared store.
    state_instance: str | None = None

    @property
    def credentials(self) -> Secret | LoginPassword:
        """What `CallApiClient` authenticates with: the permanent key or login + password."""
        return self.login if self.login is not None else self.access_token


def load_settings(
    path: Path,
    environ: dict[str, str] | None = None,
    *,
    read_secrets: bool = True,
    secrets: SecretMode | None = None,
) -> Settings:
    """Read and validate `path`; raise ConfigError listing every problem.

    `read_secrets=False` is `secrets="skip"`, kept for the callers that
    only need the config's shape.
    """
    mode: SecretMode = secrets or ("read" if read_secrets else "skip")
    env = dict(os.environ if environ is None else environ)
    name = str(path)
    raw, report = read_config(path)
    if raw is None:
        raise ConfigError(report.problems)
    notes: list[Problem] = []

    def problem(where: tuple[str | int, ...], what: str, hint: str | None = None) -> None:
        report.add(where, what, hint=hint)

    def note(where: tuple[str | int, ...], what: str, hint: str | None = None) -> None:
        notes.append(Problem(name, report.line(where), what, None, hint))

    creds = Creds(path.parent, env, mode, problem, note)
    base = path.parent
    api = raw.callapi
    login: LoginPassword | None = None
    token = Secret("")
    timeout = action_deadline = 0.0
    if api is not None:
        login = read_login(api, creds)
        token = Secret("") if login is not None else read_token(api, creds)
        timeout = _duration(api.timeout, ("callapi", "timeout"), problem)
        known = len(report.problems)
        action_deadline = _duration(api.action_deadline, ("callapi", "action_deadline"), problem)
        if action_deadline <= 0 and len(report.problems) == known:
            problem(("callapi", "action_deadline"), "action_deadline must be more than 0")
        if not api.url.startswith(("https://", "http://")):
            problem(("callapi", "url"), f"url {api.url!r} is not http(s)")
        if api.max_connections < 1:
            problem(("callapi", "max_connections"), "max_connections must be at least 1")
        if api.tts_max_length < 1:
            problem(("callapi", "tts_max_length"), "tts_max_length must be at least 1")
    notify = raw.notify_options
    if notify.url is None and raw.webhook is None:
        problem(
            ("notify",) if raw.notify is not None else (),
            "no notification source",
            "add [webhook] (UIS HTTP notifications, see docs/uis.md) or set [notify] url"
            " (a websocket relay), or both",
        )
    if notify.url is not None and not notify.url.startswith(("wss://", "ws://")):
        problem(("notify", "url"), f"url {notify.url!r} is not ws(s)")
    resync_interval = _duration(notify.resync_interval, ("notify", "resync_interval"), problem)
    idle_timeout = _duration(notify.idle_timeout, ("notify", "idle_timeout"), problem)
    webhook_listen: tuple[str, int] | None = None
    webhook_secret = ""
    if raw.webhook is not None:
        webhook_listen = _host_port(raw.webhook.listen, ("webhook", "listen"), problem)
        found = read_webhook_secret(raw.webhook, creds)
        webhook_secret = found or ""
        if found is not None and len(found) < 16:
            problem(
                ("webhook", "secret") if raw.webhook.secret is not None else ("webhook",),
                "secret is shorter than 16 characters",
                "use a long random string, e.g. `openssl rand -hex 24`",
            )
        if not raw.webhook.path.startswith("/"):
            problem(("webhook", "path"), f"path {raw.webhook.path!r} must start with /")
    kinds = {k.value for k in EventKind} - {EventKind.OTHER.value}
    for ev_name, kind in notify.events.items():
        if kind not in kinds:
            close = difflib.get_close_matches(kind, sorted(kinds), n=1)
            problem(
                ("notify", "events", ev_name),
                f"event kind {kind!r} is unknown",
                f"did you mean {close[0]!r}?" if close else "one of " + ", ".join(sorted(kinds)),
            )
    rule_files: list[Path] = []
    for i, pattern in enumerate(raw.rules.files):
        matched = sorted(glob.glob(str(base / pattern)))
        if not matched:
            problem(
                ("rules", "files", i),
                f"no rule file matches {pattern!r}",
                f"paths are relative to {base}",
            )
        rule_files.extend(Path(p) for p in matched)
    listen = _host_port(raw.http.listen, ("http", "listen"), problem)
    header_timeout = _positive(raw.http.header_timeout, ("http", "header_timeout"), problem)
    body_timeout = _positive(raw.http.body_timeout, ("http", "body_timeout"), problem)
    if raw.http.connection_limit < 1:
        problem(("http", "connection_limit"), "connection_limit must be at least 1")
    retention = _duration(raw.state.retention, ("state", "retention"), problem)
    state_password = read_state_password(raw.state, creds, path)
    lease = _duration(raw.state.lease, ("state", "lease"), problem)
    if raw.state.url is not None and lease < 1.0:
        problem(("state", "lease"), "lease must be at least 1s")
    if report.problems:
        # Top to bottom of the file: the checks above run section by section.
        raise ConfigError(sorted(report.problems, key=lambda p: p.line or 0))
    assert api is not None  # noqa: S101 - a missing [callapi] is a problem above
    # The login.user password is a secret like the key (section 2).
    password = login.password.reveal() if login is not None else ""
    db_password = state_password.reveal() if state_password is not None else ""
    if raw.state.url is not None and not db_password:
        db_password = urlsplit(raw.state.url).password or ""
    secret_values = tuple(
        s
        for s in (
            token.reveal(),
            password,
            webhook_secret,
            db_password,
            *notify.headers.values(),
        )
        if s
    )
    return Settings(
        path=path,
        callapi_url=api.url,
        access_token=token,
        timeout=timeout,
        max_connections=api.max_connections,
        tts_max_length=api.tts_max_length,
        notify_url=notify.url,
        notify_headers=dict(notify.headers),
        timezone=notify.timezone,
        events=dict(notify.events),
        resync_interval=resync_interval,
        idle_timeout=idle_timeout,
        webhook_listen=webhook_listen,
        webhook_path=raw.webhook.path if raw.webhook is not None else "/uis/notify",
        webhook_secret=Secret(webhook_secret) if raw.webhook is not None else None,
        rule_files=tuple(rule_files),
        state_path=base / raw.state.path,
        state_retention=retention,
        http_listen=listen,
        log_format=raw.log.format,
        log_level=raw.log.level,
        secrets=secret_values,
        login=login,
        action_deadline=action_deadline,
        http_header_timeout=header_timeout,
        http_body_timeout=body_timeout,
        http_connection_limit=raw.http.connection_limit,
        unverified=tuple(notes),
        state_url=raw.state.url,
        state_password=state_password,
        state_lease=lease,
        state_instance=raw.state.instance,
    )


def _duration(text: str, where: tuple[str | int, ...], problem: ProblemFn) -> float:
    try:
        return parse_duration(text)
    except ValueError as exc:
        problem(where, str(exc))
        return 0.0


def _positive(text: str, where: tuple[str | int, ...], problem: ProblemFn) -> float:
    """A duration that must be more than 0 (0 would close every connection at once)."""
    try:
        seconds = parse_duration(text)
    except ValueError as exc:
        problem(where, str(exc))
        return 0.0
    if seconds <= 0:
        problem(where, f"{where[-1]} must be more than 0")
    return seconds


def _host_port(text: str, where: tuple[str | int, ...], problem: ProblemFn) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not host:
        problem(where, f"listen {text!r} is not HOST:PORT")
        return ("127.0.0.1", 0)
    return (host.strip("[]"), int(port))
