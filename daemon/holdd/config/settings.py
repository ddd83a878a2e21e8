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

import difflib
import glob
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import msgspec

from holdd.config.report import Duration, Reporter, keys_of
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
    timeout: Duration = "5s"
    #: How long one action (a hold) may keep retrying before it gives up.
    action_deadline: Duration = "30s"
    max_connections: int = 10
    tts_max_length: int = 500


class _Notify(msgspec.Struct, forbid_unknown_fields=True):
    """How notifications are read, from whichever source: `url` (the
    websocket) is optional, the rest applies to the webhook too."""

    url: str | None = None
    headers: dict[str, str] = msgspec.field(default_factory=dict)
    timezone: str = "Europe/Moscow"
    events: dict[str, str] = msgspec.field(default_factory=dict)
    resync_interval: Duration = "5m"
    idle_timeout: Duration = "0s"


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
    retention: Duration = "7d"


class _Http(msgspec.Struct, forbid_unknown_fields=True):
    listen: str = "127.0.0.1:9108"


class _Log(msgspec.Struct, forbid_unknown_fields=True):
    format: Literal["json", "console", "auto"] = "auto"
    level: Literal["debug", "info", "warning", "error"] = "info"


#: The sections of holdd.toml, in the order they are checked.
SECTIONS: dict[str, type[msgspec.Struct]] = {
    "callapi": _CallApi,
    "notify": _Notify,
    "webhook": _Webhook,
    "rules": _Rules,
    "state": _State,
    "http": _Http,
    "log": _Log,
}


def _homes() -> dict[str, str]:
    """Keys that live in exactly one section -> "[section]", for "belongs in" hints."""
    seen: dict[str, list[str]] = {}
    for section, struct in SECTIONS.items():
        for key in keys_of(struct):
            seen.setdefault(key, []).append(f"[{section}]")
    return {key: tables[0] for key, tables in seen.items() if len(tables) == 1}


HOMES = _homes()


@dataclass(frozen=True, slots=True)
class ConfigFile:
    """The sections of one holdd.toml, each checked; None when absent (or,
    after problems, when unusable)."""

    callapi: _CallApi | None
    notify: _Notify | None
    webhook: _Webhook | None
    rules: _Rules
    state: _State
    http: _Http
    log: _Log

    @property
    def notify_options(self) -> _Notify:
        """`[notify]`, defaults when absent: its options apply to every source."""
        return self.notify or _Notify()


def read_config(path: Path) -> tuple[ConfigFile | None, Reporter]:
    """Parse `path` and check every section: unknown sections and keys (with
    the closest known one), missing keys and wrong types, all at once.

    The reporter holds the problems and the key lines for further checks;
    the file is None when it could not be read or parsed.
    """
    report = Reporter(str(path))
    doc = report.read(path, "config")
    if doc is None:
        return None, report
    for key, value in doc.items():
        if key in SECTIONS:
            continue
        if isinstance(value, dict):
            close = difflib.get_close_matches(key, list(SECTIONS), n=1, cutoff=0.6)
            report.add(
                (key,),
                f"unknown section [{key}]",
                hint=f"did you mean [{close[0]}]?"
                if close
                else "sections: " + ", ".join(f"[{s}]" for s in SECTIONS),
            )
        else:
            home = HOMES.get(key)
            report.add(
                (key,),
                f"key {key!r} is outside any section",
                hint=f"it belongs in {home}: write it below that header"
                if home
                else "every key of holdd.toml goes below a [section] header",
            )
    if "callapi" not in doc:
        report.add((), "missing section [callapi]", hint="the Call API url and credentials")
    found: dict[str, Any] = {}
    for section, struct in SECTIONS.items():
        if section not in doc:
            found[section] = None if section in ("callapi", "notify", "webhook") else struct()
            continue
        found[section] = report.convert(
            doc[section], struct, (section,), table=f"[{section}]", elsewhere=HOMES
        )
    for section in ("rules", "state", "http", "log"):
        # A broken optional section still gives the rest of the checks defaults.
        if found[section] is None:
            found[section] = SECTIONS[section]()
    return ConfigFile(**found), report


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
    #: `holdd check` only: credentials it could not verify from where it runs
    #: (another user's file, a systemd credential), said instead of "ok".
    unverified: tuple[Problem, ...] = ()

    @property
    def credentials(self) -> Secret | LoginPassword:
        """What `CallApiClient` authenticates with: the permanent key or login + password."""
        return self.login if self.login is not None else self.access_token


#: How `load_settings` treats credentials: "read" them (holdd run), "verify"
#: them as far as this user can (holdd check: an unreadable file of another
#: user or a systemd credential outside the unit is "not verified", anything
#: `run` would refuse is a problem), or "skip" them (holdd explain, which only
#: needs the state database).
SecretMode = Literal["read", "verify", "skip"]


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

    creds = _Creds(path.parent, env, mode, problem, note)
    base = path.parent
    api = raw.callapi
    login: LoginPassword | None = None
    token = Secret("")
    timeout = action_deadline = 0.0
    if api is not None:
        login = _login(api, creds)
        token = Secret("") if login is not None else _token(api, creds)
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
        found = _webhook_secret(raw.webhook, creds)
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
    retention = _duration(raw.state.retention, ("state", "retention"), problem)
    if report.problems:
        # Top to bottom of the file: the checks above run section by section.
        raise ConfigError(sorted(report.problems, key=lambda p: p.line or 0))
    assert api is not None  # noqa: S101 - a missing [callapi] is a problem above
    # The login.user password is a secret like the key (section 2).
    password = login.password.reveal() if login is not None else ""
    secret_values = tuple(
        s for s in (token.reveal(), password, webhook_secret, *notify.headers.values()) if s
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
        unverified=tuple(notes),
    )


@dataclass(frozen=True, slots=True)
class _Creds:
    """Where credential files are found and what to do when one cannot be read."""

    base: Path
    env: dict[str, str]
    mode: SecretMode
    problem: _ProblemFn
    note: _ProblemFn

    def systemd(self, name: str) -> Path | None:
        """`$CREDENTIALS_DIRECTORY/name`, when systemd handed credentials over."""
        directory = self.env.get("CREDENTIALS_DIRECTORY")
        return Path(directory) / name if directory else None

    def read(self, candidate: Path, where: tuple[str | int, ...], label: str) -> str | None:
        """The file's text, or None after a problem (or, checking, a note) says why."""
        try:
            return candidate.read_text(encoding="utf-8")
        except PermissionError as exc:
            if self.mode == "verify" and not _owned_by_me(candidate):
                self.note(
                    where,
                    f"could not verify {label} ({candidate}): this user cannot read it",
                    "the service's user may; run `holdd check` as that user to be sure"
                    " (`systemctl reload holdd` does)",
                )
                return None
            self.problem(where, f"cannot read {label}: {exc}")
        except (OSError, UnicodeDecodeError) as exc:
            self.problem(where, f"cannot read {label}: {exc}")
        return None


def _owned_by_me(path: Path) -> bool:
    try:
        return path.stat().st_uid == os.geteuid()
    except OSError:
        return False


def _login(api: _CallApi, creds: _Creds) -> LoginPassword | None:
    """`login` + password (section 2 `login.user`), or None when no login is configured."""
    problem = creds.problem
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
    user = api.login.strip()
    if not user:
        problem(("callapi", "login"), "login is empty")
    if api.password is not None and api.password_file is not None:
        problem(("callapi", "password_file"), "give only one of password and password_file")
    if api.password is not None:
        if not api.password:
            problem(("callapi", "password"), "password is empty")
        return LoginPassword(user, Secret(api.password))
    if creds.mode == "skip":
        return LoginPassword(user, Secret(""))
    where: tuple[str | int, ...] = ("callapi", "password_file")
    candidate = creds.base / api.password_file if api.password_file is not None else None
    if candidate is None:
        candidate = creds.systemd("password")
        where = ("callapi", "login")
    if candidate is None:
        if creds.mode == "verify":
            creds.note(
                ("callapi", "login"),
                "could not verify the password: it must come from systemd"
                " (LoadCredential=password), which only the service sees",
                "set password_file to check it here",
            )
        else:
            problem(
                ("callapi", "login"),
                "login needs a password",
                "set password, password_file, or LoadCredential=password under systemd",
            )
        return LoginPassword(user, Secret(""))
    text = creds.read(candidate, where, "password")
    # Only a trailing newline is dropped: a password may end in spaces.
    value = text.rstrip("\r\n") if text is not None else ""
    if text is not None and not value:
        problem(where, f"password file {candidate} is empty")
    return LoginPassword(user, Secret(value))


def _webhook_secret(hook: _Webhook, creds: _Creds) -> str | None:
    """The webhook's shared secret: inline, from a file, or the systemd credential;
    None when there is none to check (a problem or a note says why, or it was
    not read)."""
    if hook.secret is not None and hook.secret_file is not None:
        creds.problem(("webhook", "secret_file"), "give only one of secret and secret_file")
    if hook.secret is not None:
        return hook.secret
    if creds.mode == "skip":
        return None
    where: tuple[str | int, ...] = ("webhook", "secret_file")
    candidate = creds.base / hook.secret_file if hook.secret_file is not None else None
    if candidate is None:
        candidate = creds.systemd("webhook_secret")
        where = ("webhook",)
    if candidate is None:
        # The shipped unit does not load webhook_secret (it is optional), so
        # outside the unit holdd run would refuse this config: a problem for
        # `check` too, not a note.
        creds.problem(
            ("webhook",),
            "the webhook needs a shared secret",
            "set secret or secret_file; or LoadCredential=webhook_secret under systemd,"
            " and check with `holdd check --credentials /etc/holdd`",
        )
        return None
    text = creds.read(candidate, where, "the webhook secret")
    if text is None:
        return None
    value = text.strip()
    if not value:
        creds.problem(where, f"webhook secret file {candidate} is empty")
        return None
    return value


def _token(api: _CallApi, creds: _Creds) -> Secret:
    """The permanent key: inline, from a file, or the systemd credential."""
    problem = creds.problem
    given = [k for k in ("access_token", "access_token_file") if getattr(api, k) is not None]
    if len(given) > 1:
        problem(("callapi", given[1]), "give only one of access_token and access_token_file")
    if api.access_token is not None:
        value = api.access_token.strip()
        if not value:
            problem(("callapi", "access_token"), "access_token is empty")
        return Secret(value)
    if creds.mode == "skip":
        return Secret("")
    where: tuple[str | int, ...] = ("callapi", "access_token_file")
    candidate = creds.base / api.access_token_file if api.access_token_file is not None else None
    if candidate is None:
        candidate = creds.systemd("access_token")
        where = ("callapi",)
    if candidate is None:
        if creds.mode == "verify":
            # The shipped unit always loads it (LoadCredential=access_token).
            creds.note(
                ("callapi",),
                "could not verify the access token: it comes from systemd"
                " (LoadCredential=access_token), which only the service sees",
                "`holdd check --credentials /etc/holdd` reads it where the unit does",
            )
            return Secret("")
        problem(
            ("callapi",),
            "no Call API credentials",
            "set access_token, access_token_file, login + password,"
            " or LoadCredential=access_token under systemd",
        )
        return Secret("")
    text = creds.read(candidate, where, "access token")
    if text is None:
        return Secret("")
    value = text.strip()
    if not value:
        problem(where, f"access token file {candidate} is empty")
    return Secret(value)


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
