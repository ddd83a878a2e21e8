"""`[callapi]` and `[webhook]` credentials of holdd.toml: where they are read
from and the types that hold them (core: reads the files it is pointed at and
the environment it is given, nothing else).

Secrets (the access token, the `login.user` password) are held in `Secret`,
whose repr never shows the value, so a settings object can be logged or
printed without leaking it.

`[callapi]` credentials are one of the two kinds of docs/callapi.md section 2:
a permanent key (`access_token`, `access_token_file`, or the systemd credential
`$CREDENTIALS_DIRECTORY/access_token`), or `login` plus a password
(`password`, `password_file`, or `$CREDENTIALS_DIRECTORY/password`) for
`login.user` session keys.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol
from urllib.parse import urlsplit

from holdd.config.config_file import CallApiSection, StateSection, WebhookSection


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


#: How `load_settings` treats credentials: "read" them (holdd run), "verify"
#: them as far as this user can (holdd check: an unreadable file of another
#: user or a systemd credential outside the unit is "not verified", anything
#: `run` would refuse is a problem), or "skip" them (holdd explain, which only
#: needs the state database).
SecretMode = Literal["read", "verify", "skip"]


class ProblemFn(Protocol):
    def __call__(
        self, where: tuple[str | int, ...], what: str, hint: str | None = None
    ) -> None: ...


@dataclass(frozen=True, slots=True)
class Creds:
    """Where credential files are found and what to do when one cannot be read."""

    base: Path
    env: dict[str, str]
    mode: SecretMode
    problem: ProblemFn
    note: ProblemFn

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


def read_login(api: CallApiSection, creds: Creds) -> LoginPassword | None:
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


def read_webhook_secret(hook: WebhookSection, creds: Creds) -> str | None:
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


def read_token(api: CallApiSection, creds: Creds) -> Secret:
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


def read_state_password(state: StateSection, creds: Creds, config: Path) -> Secret | None:
    """The PostgreSQL password of `[state] url`: from `password_file`, or the
    systemd credential `state_password`; None when neither is given (the URL
    may need none: peer or certificate authentication, a ~/.pgpass). A
    password written in the URL itself is accepted only in a config file
    nobody else can read."""
    if state.url is None:
        for key in ("password_file",):
            if getattr(state, key) is not None:
                creds.problem(("state", key), f"{key} is given without url")
        return None
    url = state.url
    if not url.startswith(("postgresql://", "postgres://")):
        creds.problem(("state", "url"), "url must start with postgresql://")
        return None
    parts = urlsplit(url)
    if parts.password is not None:
        if state.password_file is not None:
            creds.problem(
                ("state", "url"), "give the password in the url or password_file, not both"
            )
        try:
            loose = config.stat().st_mode & 0o077
        except OSError:
            loose = 0
        if loose:
            creds.problem(
                ("state", "url"),
                "the url holds a password but the config file can be read by other users",
                "move the password to password_file (or LoadCredential=state_password),"
                f" or chmod 600 {config}",
            )
        return None
    where: tuple[str | int, ...] = ("state", "password_file")
    candidate = creds.base / state.password_file if state.password_file is not None else None
    if candidate is None:
        candidate = creds.systemd("state_password")
        where = ("state", "url")
        if candidate is None or not candidate.exists():
            return None
    if creds.mode == "skip":
        # `holdd explain` reads the shared store when it can; no problem if not.
        try:
            text: str | None = candidate.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            return None
    else:
        text = creds.read(candidate, where, "the database password")
    if text is None:
        return None
    value = text.rstrip("\r\n")
    if not value:
        creds.problem(where, f"database password file {candidate} is empty")
        return None
    return Secret(value)
