"""`holdd.toml` as written: its sections as checked structs, every problem
reported at once (core: reads the file it is pointed at, nothing else).

`read_config` only parses and checks the shape of each section; the values
are checked and turned into `Settings` by config/settings.py, which also reads
the credentials (config/credentials.py). Tests and simulations read the rule
parts from here without needing the credentials (cli/rule_source.py).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import msgspec

from holdd.config.report import Duration, Reporter, keys_of


class CallApiSection(msgspec.Struct, forbid_unknown_fields=True):
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


class NotifySection(msgspec.Struct, forbid_unknown_fields=True):
    """How notifications are read, from whichever source: `url` (the
    websocket) is optional, the rest applies to the webhook too."""

    url: str | None = None
    headers: dict[str, str] = msgspec.field(default_factory=dict)
    timezone: str = "Europe/Moscow"
    events: dict[str, str] = msgspec.field(default_factory=dict)
    resync_interval: Duration = "5m"
    idle_timeout: Duration = "0s"


class WebhookSection(msgspec.Struct, forbid_unknown_fields=True):
    #: The shared secret inline, or in a file; when neither is set,
    #: `$CREDENTIALS_DIRECTORY/webhook_secret` (systemd `LoadCredential=`), so
    #: the secret need not sit in a config file the service user can read.
    secret: str | None = None
    secret_file: str | None = None
    listen: str = "127.0.0.1:8081"
    path: str = "/uis/notify"


class RulesSection(msgspec.Struct, forbid_unknown_fields=True):
    files: list[str] = msgspec.field(default_factory=lambda: ["rules.d/*.toml"])


class StateSection(msgspec.Struct, forbid_unknown_fields=True):
    path: str = "state.db"
    #: How long decisions, traces and finished claims are kept.
    retention: Duration = "7d"
    #: A PostgreSQL database shared by several instances instead of `path`.
    url: str | None = None
    #: The database password's file (or LoadCredential=state_password).
    password_file: str | None = None
    #: How long an instance may go silent before the others take over its work.
    lease: Duration = "5s"
    #: This instance's name in the shared ledger (default: the host name).
    instance: str | None = None


class HttpSection(msgspec.Struct, forbid_unknown_fields=True):
    listen: str = "127.0.0.1:9108"
    #: For both HTTP listeners ([http] listen and [webhook] listen): a request
    #: head must be complete this long after the connection opened (or after
    #: the previous answer), a body must arrive within body_timeout, and at
    #: most connection_limit connections are open (io/listener.py).
    header_timeout: Duration = "10s"
    body_timeout: Duration = "10s"
    connection_limit: int = 1024


class LogSection(msgspec.Struct, forbid_unknown_fields=True):
    format: Literal["json", "console", "auto"] = "auto"
    level: Literal["debug", "info", "warning", "error"] = "info"


#: The sections of holdd.toml, in the order they are checked.
SECTIONS: dict[str, type[msgspec.Struct]] = {
    "callapi": CallApiSection,
    "notify": NotifySection,
    "webhook": WebhookSection,
    "rules": RulesSection,
    "state": StateSection,
    "http": HttpSection,
    "log": LogSection,
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

    callapi: CallApiSection | None
    notify: NotifySection | None
    webhook: WebhookSection | None
    rules: RulesSection
    state: StateSection
    http: HttpSection
    log: LogSection

    @property
    def notify_options(self) -> NotifySection:
        """`[notify]`, defaults when absent: its options apply to every source."""
        return self.notify or NotifySection()


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
