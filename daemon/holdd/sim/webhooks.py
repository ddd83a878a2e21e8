"""How UIS's notification server renders an HTTP notification (core).

An operator writes a body template with `{{variable}}` placeholders
(docs/callapi.md section 8.2). UIS replaces each placeholder by the JSON
literal of the variable (strings quoted, numbers bare, missing values null);
a placeholder the event type does not have stays as written. An operator who
wraps a placeholder in quotes therefore gets doubled quotes (`""Иван""`).
`render` reproduces exactly that, so the simulator can post what UIS posts.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from urllib.parse import urlencode

import orjson

_PLACEHOLDER = re.compile(r"{{\s*([A-Za-z0-9_]+)\s*}}")

#: The template the reference suggests for holdd (section 8.3), as JSON, with
#: contact_full_name added (TTS greetings use it).
SUGGESTED_JSON = (
    '{"secret":"{{secret}}","notification_name":{{notification_name}},'
    '"notification_mnemonic":{{notification_mnemonic}},'
    '"notification_time":{{notification_time}},"call_session_id":{{call_session_id}},'
    '"direction":{{direction}},"call_source":{{call_source}},"employee_id":{{employee_id}},'
    '"contact_phone_number":{{contact_phone_number}},'
    '"virtual_phone_number":{{virtual_phone_number}},"leg_ids":{{leg_ids}},'
    '"external_id":{{external_id}},"contact_full_name":{{contact_full_name}}}'
)
#: An operator's template with the classic mistakes: placeholders wrapped in
#: quotes, and a variable this event type does not have.
QUIRKY_JSON = (
    '{"secret":"{{secret}}","notification_name":"{{notification_name}}",'
    '"call_session_id":"{{call_session_id}}","direction":"{{direction}}",'
    '"contact_phone_number":"{{contact_phone_number}}",'
    '"virtual_phone_number":{{virtual_phone_number}},'
    '"contact_full_name":"{{contact_full_name}}",'
    '"extension_phone_number":{{extension_phone_number}}}'
)
#: Form fields: each value is a placeholder, rendered as a JSON literal (so
#: strings keep their quotes in a form body, as the vtiger module shows).
FORM_FIELDS = (
    "notification_name",
    "call_session_id",
    "direction",
    "contact_phone_number",
    "virtual_phone_number",
    "employee_id",
    "contact_full_name",
)


def literal(value: object) -> str:
    return orjson.dumps(value).decode()


def render(template: str, variables: Mapping[str, object]) -> str:
    """Substitute `{{var}}` by the JSON literal of `variables[var]`.

    `secret` is substituted raw (it is the operator's static text, not a UIS
    variable); a name not in `variables` stays as `{{name}}`.
    """

    def sub(m: re.Match[str]) -> str:
        name = m.group(1)
        if name not in variables:
            return m.group(0)
        if name == "secret":
            return str(variables[name])
        return literal(variables[name])

    return _PLACEHOLDER.sub(sub, template)


def render_form(variables: Mapping[str, object], secret: str | None) -> str:
    fields = [(name, literal(variables.get(name))) for name in FORM_FIELDS if name in variables]
    if secret is not None:
        fields.append(("secret", secret))
    return urlencode(fields)
