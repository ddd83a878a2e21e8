"""`holdd.toml`: typed, frozen settings, every problem reported at once (core:
reads the files it is pointed at, nothing else).

Secrets (the access token, the `login.user` password) are held in `Secret`,
whose repr never shows the value, so a settings object can be logged or
printed without leaking it.

`[callapi]` credentials are one of the two kinds of uis-call-api.md section 2:
a permanent key (`access_token`, `access_token_file`, or the systemd credential
`$CREDENTIALS_DIRECTORY/access_token`), or `login` plus a password
(`password`, `password_file`, or `$CREDENTIALS_DIRECTORY/password`) for
`login.user` session keys.
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

from holdd.config.toml import KeyLines, validation_path
from holdd.core.durations import parse_duration
from holdd.core.errors import ConfigError, Problem
from holdd.core.events import EventKind


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


@dataclass(frozen=True, slots=True)
class LoginPassword:
    """Credentials for `login.user` (section 2); the password stays a `Secret`."""

    login: str
    password: Secret


class _CallApi(msgspec.Struct, forbid_unknown_fields=True):
    url: str
    access_token: str | None = None
    access_token_file: str | None = None
    login: str | None = None
    password: str | None = None
    password_file: str | None = None
    timeout: str = "5s"
    #: How long one action (a hold) may keep retrying before it gives up.
    action_deadline: str = "30s"
    max_connections: int = 10
    tts_max_length: int = 500


class _Notify(msgspec.Struct, forbid_unknown_fields=True):
    url: str
    headers: dict[str, str] = msgspec.field(default_factory=dict)
    timezone: str = "Europe/Moscow"
    events: dict[str, str] = msgspec.field(default_factory=dict)
    resync_interval: str = "5m"
    idle_timeout: str = "0s"


class _Webhook(msgspec.Struct, forbid_unknown_fields=True):
    #: The shared secret inline, or in a file; when neither is set,
    #: `$CREDENTIALS_DIRECTORY/webhook_secret` (systemd `LoadCredential=`), so
    #: the secret need not sit in a config file the service user can read.
    secret: str | None = None
    secret_file: str | None = None
    listen: str = "127.0.0.1:8081"
    path: str = "/uis/notify"


class _Rules(msgspec.Struct, forbid_unknown_fields=True):
    files: list[str] = msgspec.field(default_factory=lambda: ["rules.d/*.toml"])


class _State(msgspec.Struct, forbid_unknown_fields=True):
    path: str = "state.db"
    #: How long decisions, traces and finished claims are kept.
    retention: str = "7d"


class _Http(msgspec.Struct, forbid_unknown_fields=True):
    listen: str = "127.0.0.1:9108"


class _Log(msgspec.Struct, forbid_unknown_fields=True):
    format: Literal["json", "console", "auto"] = "auto"
    level: Literal["debug", "info", "warning", "error"] = "info"


class _File(msgspec.Struct, forbid_unknown_fields=True):
    callapi: _CallApi
    notify: _Notify | None = None
    webhook: _Webhook | None = None
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

    @property
    def credentials(self) -> Secret | LoginPassword:
        """What `CallApiClient` authenticates with: the permanent key or login + password."""
        return self.login if self.login is not None else self.access_token


def load_settings(
    path: Path, environ: dict[str, str] | None = None, *, read_secrets: bool = True
) -> Settings:
    """Read and validate `path`; raise ConfigError listing every problem.

    `read_secrets=False` (for `holdd check` and `holdd explain`, run by hand
    outside the unit) checks how the credentials are configured but does not
    read them: the credential files are the service's, not the operator's.
    """
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
    login = _login(raw.callapi, base, env, problem, read_secrets)
    token = (
        Secret("") if login is not None else _token(raw.callapi, base, env, problem, read_secrets)
    )
    timeout = _duration(raw.callapi.timeout, ("callapi", "timeout"), problem)
    known = len(problems)
    action_deadline = _duration(
        raw.callapi.action_deadline, ("callapi", "action_deadline"), problem
    )
    if action_deadline <= 0 and len(problems) == known:
        problem(("callapi", "action_deadline"), "action_deadline must be more than 0")
    if not raw.callapi.url.startswith(("https://", "http://")):
        problem(("callapi", "url"), f"url {raw.callapi.url!r} is not http(s)")
    notify = raw.notify or _Notify(url="")
    if raw.notify is None and raw.webhook is None:
        problem(
            (),
            "no notification source",
            "set [notify] url (websocket) or [webhook] (UIS HTTP notifications), or both",
        )
    if raw.notify is not None and not notify.url.startswith(("wss://", "ws://")):
        problem(("notify", "url"), f"url {notify.url!r} is not ws(s)")
    resync_interval = _duration(notify.resync_interval, ("notify", "resync_interval"), problem)
    idle_timeout = _duration(notify.idle_timeout, ("notify", "idle_timeout"), problem)
    webhook_listen: tuple[str, int] | None = None
    webhook_secret = ""
    if raw.webhook is not None:
        webhook_listen = _host_port(raw.webhook.listen, ("webhook", "listen"), problem)
        found = _webhook_secret(raw.webhook, base, env, problem, read_secrets)
        webhook_secret = found or ""
        if found is not None and len(found) < 16:
            problem(
                ("webhook", "secret"),
                "secret is shorter than 16 characters",
                "use a long random string, e.g. `openssl rand -hex 24`",
            )
        if not raw.webhook.path.startswith("/"):
            problem(("webhook", "path"), f"path {raw.webhook.path!r} must start with /")
    if raw.callapi.max_connections < 1:
        problem(("callapi", "max_connections"), "max_connections must be at least 1")
    if raw.callapi.tts_max_length < 1:
        problem(("callapi", "tts_max_length"), "tts_max_length must be at least 1")
    kinds = {k.value for k in EventKind} - {EventKind.OTHER.value}
    for ev_name, kind in notify.events.items():
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
    retention = _duration(raw.state.retention, ("state", "retention"), problem)
    if problems:
        raise ConfigError(problems)
    # The login.user password is a secret like the key (section 2).
    password = login.password.reveal() if login is not None else ""
    secrets = tuple(
        s for s in (token.reveal(), password, webhook_secret, *notify.headers.values()) if s
    )
    return Settings(
        path=path,
        callapi_url=raw.callapi.url,
        access_token=token,
        timeout=timeout,
        max_connections=raw.callapi.max_connections,
        tts_max_length=raw.callapi.tts_max_length,
        notify_url=raw.notify.url if raw.notify is not None else None,
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
        secrets=secrets,
        login=login,
        action_deadline=action_deadline,
    )


def _login(
    api: _CallApi, base: Path, env: dict[str, str], problem: _ProblemFn, read: bool = True
) -> LoginPassword | None:
    """`login` + password (section 2 `login.user`), or None when no login is configured."""
    if api.login is None:
        for key in ("password", "password_file"):
            if getattr(api, key) is not None:
                problem(("callapi", key), f"{key} is given without login")
        return None
    for key in ("access_token", "access_token_file"):
        if getattr(api, key) is not None:
            problem(
                ("callapi", key),
                f"give either {key} or login, not both",
                "a permanent key and login.user session keys are alternatives",
            )
    if not api.login.strip():
        problem(("callapi", "login"), "login is empty")
    if api.password is not None and api.password_file is not None:
        problem(("callapi", "password_file"), "give only one of password and password_file")
    if not read and api.password is None:
        return LoginPassword(api.login.strip(), Secret(""))
    if api.password is not None:
        if not api.password:
            problem(("callapi", "password"), "password is empty")
        return LoginPassword(api.login.strip(), Secret(api.password))
    candidate: Path | None = None
    if api.password_file is not None:
        candidate = base / api.password_file
    elif env.get("CREDENTIALS_DIRECTORY"):
        candidate = Path(env["CREDENTIALS_DIRECTORY"]) / "password"
    if candidate is None:
        problem(
            ("callapi", "login"),
            "login needs a password",
            "set password, password_file, or LoadCredential=password under systemd",
        )
        return LoginPassword(api.login.strip(), Secret(""))
    try:
        # Only a trailing newline is dropped: a password may end in spaces.
        value = candidate.read_text(encoding="utf-8").rstrip("\r\n")
    except OSError as exc:
        problem(("callapi", "password_file"), f"cannot read password: {exc}")
        value = ""
    else:
        if not value:
            problem(("callapi", "password_file"), f"password file {candidate} is empty")
    return LoginPassword(api.login.strip(), Secret(value))


def _webhook_secret(
    hook: _Webhook, base: Path, env: dict[str, str], problem: _ProblemFn, read: bool
) -> str | None:
    """The webhook's shared secret: inline, from a file, or the systemd credential;
    None when there is none to check (a problem says why, or it was not read)."""
    if hook.secret is not None and hook.secret_file is not None:
        problem(("webhook", "secret_file"), "give only one of secret and secret_file")
    if hook.secret is not None:
        return hook.secret
    if hook.secret_file is not None:
        candidate = base / hook.secret_file
    elif env.get("CREDENTIALS_DIRECTORY"):
        candidate = Path(env["CREDENTIALS_DIRECTORY"]) / "webhook_secret"
    else:
        if read:
            problem(
                ("webhook",),
                "the webhook needs a shared secret",
                "set secret, secret_file, or LoadCredential=webhook_secret under systemd",
            )
        return None
    if not read:
        return None
    try:
        return candidate.read_text(encoding="utf-8").strip()
    except OSError as exc:
        problem(("webhook", "secret_file"), f"cannot read the webhook secret: {exc}")
        return None


def _token(
    api: _CallApi, base: Path, env: dict[str, str], problem: _ProblemFn, read: bool = True
) -> Secret:
    """The permanent key: inline, from a file, or the systemd credential."""
    given = [k for k in ("access_token", "access_token_file") if getattr(api, k) is not None]
    if len(given) > 1:
        problem(("callapi", given[1]), "give only one of access_token and access_token_file")
    if not read and api.access_token is None:
        return Secret("")
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
        "set access_token, access_token_file, login + password,"
        " or LoadCredential=access_token under systemd",
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
