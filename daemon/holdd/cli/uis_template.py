"""`holdd uis-template -c FILE`: the HTTP notifications to create in the UIS
(CoMagic, CallGear) personal cabinet for this config, ready to paste (shell:
reads the config, prints).

One notification per event type holdd uses, each with its name (the one the
config maps in `[notify] events`, else a name holdd knows by default), event
type, method, URL and body template. The body is JSON with every notification
variable holdd reads, placeholders unquoted (UIS substitutes JSON literals:
strings arrive quoted, numbers bare, docs/callapi.md section 8.2), and the
webhook's shared secret as a static key. docs/uis.md walks through the rest.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import orjson

from holdd.config.settings import Settings, load_settings
from holdd.core.errors import ConfigError
from holdd.core.events import INT_FIELDS, TEXT_FIELDS, EventKind


@dataclass(frozen=True, slots=True)
class EventType:
    kind: EventKind
    #: The event type as the cabinet names it: UIS / CoMagic, CallGear.
    ru: str
    en: str
    why: str


#: The event types holdd uses, in the order to create them.
EVENT_TYPES = (
    EventType(
        EventKind.TALK_STARTED,
        "Начало разговора",
        "Talk started",
        "required: the call entered Talk, the rules are evaluated",
    ),
    EventType(
        EventKind.TALK_FINISHED,
        "Окончание разговора",
        "Talk finished",
        "recommended: cancels a pending `after` or `unhold_after` when the talk ends",
    ),
    EventType(
        EventKind.CALL_FINISHED,
        "Завершение звонка",
        "Call finished",
        "recommended: the call is over and forgotten sooner",
    ),
)

#: The variables in every template: call_session_id and the notification's
#: name first, then every variable the rules and TTS placeholders can read.
VARIABLES = (
    "notification_name",
    "notification_mnemonic",
    "call_session_id",
    *sorted((TEXT_FIELDS | INT_FIELDS) - {"notification_name", "notification_mnemonic"}),
)

SECRET_PLACEHOLDER = "<your [webhook] secret>"  # noqa: S105 - a placeholder, not a secret


def body_template(secret: str) -> str:
    """The JSON body to paste: placeholders unquoted, the secret a static key."""
    parts = [f'"secret":{orjson.dumps(secret).decode()}']
    parts.extend(f'"{name}":{{{{{name}}}}}' for name in VARIABLES)
    return "{" + ",".join(parts) + "}"


def notification_name(settings: Settings, event: EventType, english: bool) -> str:
    """The name the config maps to this kind, else the event type's own name
    (which holdd knows by default)."""
    for name, kind in settings.events.items():
        if kind == event.kind.value:
            return name
    return event.en if english else event.ru


def render(settings: Settings, url: str | None, english: bool) -> str:
    secret = settings.webhook_secret.reveal() if settings.webhook_secret is not None else ""
    path = settings.webhook_path
    target = url or f"https://holdd.example.com{path}"
    lines = [
        f"# HTTP notifications for {settings.path}: create each in the cabinet",
        "# («Уведомления» -> «Добавить» / Notifications -> Add), channel HTTP; see docs/uis.md.",
    ]
    if url is None:
        lines.append(
            f"# Replace the URL's host by your TLS reverse proxy's (it forwards {path} to"
            f" [webhook] listen); or pass --url."
        )
    if not secret:
        lines.append(
            "# The secret could not be read here (a systemd credential or another user's"
            f" file): replace {SECRET_PLACEHOLDER} in each body by it."
        )
    body = body_template(secret or SECRET_PLACEHOLDER)
    for i, event in enumerate(EVENT_TYPES, start=1):
        lines += [
            "",
            f"== notification {i} of {len(EVENT_TYPES)}: {event.kind.value} ({event.why})",
            f"name:        {notification_name(settings, event, english)}",
            f"event type:  {event.en if english else event.ru}"
            f" ({'UIS / CoMagic: ' + event.ru if english else 'CallGear: ' + event.en})",
            "method:      POST",
            f"url:         {target}",
            "body:",
            body,
        ]
    mapped = {n for n, k in settings.events.items()}
    if not mapped:
        lines += [
            "",
            "# Names: the ones above are known to holdd. To use your own, map each in",
            "# holdd.toml, e.g.",
            "#   [notify.events]",
            '#   "holdd talk started" = "talk_started"',
        ]
    return "\n".join(lines) + "\n"


def run_uis_template(
    config: Path, url: str | None = None, *, english: bool = False, out: TextIO | None = None
) -> int:
    stream = out if out is not None else sys.stdout
    try:
        settings = load_settings(config, secrets="verify")
    except ConfigError as err:
        for problem in err.problems:
            print(problem, file=sys.stderr)
        return 1
    if settings.webhook_secret is None:
        print(
            f"{config}: no [webhook] section: UIS's HTTP notifications need one (see docs/uis.md)",
            file=sys.stderr,
        )
        return 1
    stream.write(render(settings, url, english))
    return 0
