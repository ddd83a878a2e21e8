"""Raw notification -> typed `Notification`, or a reason it was dropped (core).

Both transports (websocket and webhook) hand their text here. A message is one
JSON object, an array of them, or an object that wraps its payload under
`params`, `data` or `args` (docs/uis.md). Nothing in this module
raises on bad input: every rejection is a `Rejection` with a stable reason,
so the shell can count it, log it once and keep serving.

Whole numbers travel as signed 64-bit integers (the state database, orjson in
logs and requests). A number outside that range in any field holdd reads
(`call_session_id` and every scalar variable) rejects the notification with
the reason `number_out_of_range`, never a silent change: orjson reads an
integer wider than 64 bits as a float, whose digits are no longer the sent
ones. Structured variables (`leg_ids`, `tag_names`, ...) are not read.

Most notifications need no repair: every variable is already text, a whole
number or null, with none of the template quirks of docs/callapi.md section
8.2. `to_notification` takes those as they are after one type check per
variable (`plain_notification`); anything else, every rejected message
included, is read the long way (`normalised_notification`), where all the
rules of reading live. The short way answers only where the long way would
answer the same (tests/unit/test_events_fuzz.py and fuzz/fuzz_events.py
compare the two; docs/performance.md "Ingest" has what it saves).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from enum import StrEnum
from typing import Any, Final

import msgspec
import orjson

from holdd.core.states import CallState


class EventKind(StrEnum):
    CALL_STARTED = "call_started"
    WAITING = "waiting"
    TALK_STARTED = "talk_started"
    TALK_FINISHED = "talk_finished"
    CALL_FINISHED = "call_finished"
    #: A name holdd does not know: fields are kept, the call state is not moved.
    OTHER = "other"


class RejectReason(StrEnum):
    BINARY_FRAME = "binary_frame"
    TOO_LARGE = "too_large"
    NOT_JSON = "not_json"
    NOT_OBJECT = "not_object"
    TOO_MANY = "too_many"
    MISSING_CALL_SESSION_ID = "missing_call_session_id"
    BAD_CALL_SESSION_ID = "bad_call_session_id"
    BAD_FIELD_TYPE = "bad_field_type"
    BAD_STATE = "bad_state"
    NUMBER_OUT_OF_RANGE = "number_out_of_range"


#: The default names of each kind (docs/uis.md), matched without case.
DEFAULT_EVENT_NAMES: Mapping[str, EventKind] = {
    "начало разговора": EventKind.TALK_STARTED,
    "talk started": EventKind.TALK_STARTED,
    "talk_started": EventKind.TALK_STARTED,
    "окончание разговора": EventKind.TALK_FINISHED,
    "talk finished": EventKind.TALK_FINISHED,
    "talk_finished": EventKind.TALK_FINISHED,
    "завершение звонка": EventKind.CALL_FINISHED,
    "call finished": EventKind.CALL_FINISHED,
    "потерянный звонок": EventKind.CALL_FINISHED,
    "lost call": EventKind.CALL_FINISHED,
    "call_finished": EventKind.CALL_FINISHED,
    "call_lost": EventKind.CALL_FINISHED,
    "входящий звонок на виртуальный номер": EventKind.CALL_STARTED,
    "inbound call on a virtual phone number": EventKind.CALL_STARTED,
    "исходящий звонок": EventKind.CALL_STARTED,
    "outbound call": EventKind.CALL_STARTED,
    "call_started": EventKind.CALL_STARTED,
    "ожидание ответа": EventKind.WAITING,
    "waiting for the answer": EventKind.WAITING,
}

#: Notification variables kept as text (numbers that arrive bare become text:
#: phone numbers are compared as digits, never as integers).
TEXT_FIELDS = frozenset(
    {
        "notification_name",
        "notification_mnemonic",
        "notification_time",
        "direction",
        "contact_phone_number",
        "virtual_phone_number",
        "communication_number",
        "employee_full_name",
        "contact_full_name",
        "call_source",
        "scenario_name",
        "external_id",
        "employee_phone_number",
    }
)
#: Variables that must be whole numbers when present (strings of digits allowed).
INT_FIELDS = frozenset({"employee_id", "contact_id", "leg_id", "talk_time_duration"})

_WRAPPERS = ("params", "data", "args")
#: The largest message accepted, and the most notifications one message may hold.
MAX_MESSAGE_BYTES = 256 * 1024
MAX_BATCH = 1000


# Values are msgspec Structs: one is built per notification on the ingest
# path, and a Struct is built in C (a frozen dataclass calls
# object.__setattr__ once per field).
class Notification(msgspec.Struct, frozen=True, gc=False):
    """One call notification, normalised."""

    call_session_id: int
    kind: EventKind
    #: The state the message stated explicitly (`"state": "talk"`), if any.
    state: CallState | None
    #: The variables of the notification: text, whole numbers, or None.
    fields: Mapping[str, str | int | None]


class Rejection(msgspec.Struct, frozen=True, gc=False):
    reason: RejectReason
    detail: str
    call_session_id: int | None = None


class Decoded(msgspec.Struct, gc=False):
    notifications: list[Notification] = msgspec.field(default_factory=list)
    rejections: list[Rejection] = msgspec.field(default_factory=list)
    #: The name (as sent: the mnemonic, else the notification_name) of each
    #: notification whose name maps to no event kind. UIS sends whatever name
    #: the account owner typed, so this is how a missing `[notify] events`
    #: entry shows; the notification itself is kept (kind OTHER).
    unknown_names: list[str] = msgspec.field(default_factory=list)


def event_names(extra: Mapping[str, str] | None = None) -> dict[str, EventKind]:
    """The default name table extended by `[notify.events]` (name -> kind)."""
    names = dict(DEFAULT_EVENT_NAMES)
    for name, kind in (extra or {}).items():
        names[name.strip().casefold()] = EventKind(kind)
    return names


def decode(raw: str | bytes, names: Mapping[str, EventKind] = DEFAULT_EVENT_NAMES) -> Decoded:
    """Every notification in one transport message, and every rejection."""
    out = Decoded()
    if len(raw) > MAX_MESSAGE_BYTES:
        out.rejections.append(
            Rejection(RejectReason.TOO_LARGE, f"{len(raw)} bytes > {MAX_MESSAGE_BYTES}")
        )
        return out
    try:
        doc = load_json(raw)
    except orjson.JSONDecodeError as exc:
        out.rejections.append(Rejection(RejectReason.NOT_JSON, str(exc)[:200]))
        return out
    decode_value(doc, names, out)
    return out


def load_json(raw: str | bytes) -> object:
    """Parse JSON as UIS renders it: as it stands, else with the template
    quirks undone (`repair_template`); raises the first JSONDecodeError."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        repaired = repair_template(raw)
        if repaired is not None:
            try:
                return orjson.loads(repaired)
            except orjson.JSONDecodeError:
                pass
        raise


# A placeholder the event type did not have, left bare: `"employee_id":{{employee_id}}`.
_BARE_PLACEHOLDER = re.compile(r"(?<![\w\"]){{\s*[A-Za-z0-9_.]+\s*}}(?![\w\"])")
# A placeholder the operator wrapped in quotes: `"name":""Иван""` (§8.2).
_DOUBLED_QUOTES = re.compile(r'(:\s*)""((?:[^"\\]|\\.)*)""')


def repair_template(raw: str | bytes) -> str | None:
    """Undo what UIS's `{{var}}` substitution does to a JSON template (§8.2).

    Only used when the text is not valid JSON as it stands; returns None when
    there was nothing to repair.
    """
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
    except UnicodeDecodeError:
        return None
    fixed = _BARE_PLACEHOLDER.sub("null", text)
    fixed = _DOUBLED_QUOTES.sub(r'\1"\2"', fixed)
    return fixed if fixed != text else None


# Enum members read for every notification, bound once (see core/calls.py).
_OTHER_KIND = EventKind.OTHER


def decode_value(doc: object, names: Mapping[str, EventKind], out: Decoded) -> None:
    """Decode an already-parsed JSON value (used by the webhook's form bodies)."""
    items: Iterable[object]
    if isinstance(doc, list):
        if len(doc) > MAX_BATCH:
            out.rejections.append(
                Rejection(RejectReason.TOO_MANY, f"{len(doc)} items > {MAX_BATCH}")
            )
            return
        items = doc
    else:
        items = (doc,)
    for item in items:
        result = to_notification(item, names)
        if isinstance(result, Notification):
            out.notifications.append(result)
            if result.kind is _OTHER_KIND:
                name = sent_name(result.fields)
                if name is not None:
                    out.unknown_names.append(name)
        else:
            out.rejections.append(result)


def to_notification(
    item: object, names: Mapping[str, EventKind] = DEFAULT_EVENT_NAMES
) -> Notification | Rejection:
    """One notification from one decoded JSON value, or why it was dropped."""
    if not isinstance(item, dict):
        return Rejection(RejectReason.NOT_OBJECT, f"got {type(item).__name__}")
    plain = plain_notification(item, names)
    if plain is not None:
        return plain
    return normalised_notification(item, names)


def normalised_notification(
    item: dict[str, Any], names: Mapping[str, EventKind]
) -> Notification | Rejection:
    """The long way of `to_notification`: the payload unwrapped, every
    variable checked and normalised, the template quirks undone."""
    payload = _unwrap(item)
    if "call_session_id" not in payload:
        return Rejection(RejectReason.MISSING_CALL_SESSION_ID, "no call_session_id")
    if beyond_int64(payload["call_session_id"], digits=True):
        return _out_of_range("call_session_id", payload["call_session_id"])
    csid = as_int(payload["call_session_id"])
    if csid is None or csid <= 0:
        return Rejection(
            RejectReason.BAD_CALL_SESSION_ID,
            f"call_session_id {_short(payload['call_session_id'])} is not a positive integer",
        )
    fields: dict[str, str | int | None] = {}
    for key, value in payload.items():
        if key == "call_session_id":
            continue
        value = _unquote(value)
        if beyond_int64(value, digits=key in INT_FIELDS):
            return _out_of_range(key, value, csid)
        if key in INT_FIELDS:
            if value is None:
                fields[key] = None
                continue
            number = as_int(value)
            if number is None:
                return Rejection(
                    RejectReason.BAD_FIELD_TYPE, f"{key} is {_short(value)}, not a number", csid
                )
            fields[key] = number
        elif key in TEXT_FIELDS or key == "state":
            if value is None:
                fields[key] = None
            elif isinstance(value, str):
                fields[key] = value
            elif isinstance(value, int | float) and not isinstance(value, bool):
                fields[key] = _number_text(value)
            else:
                return Rejection(
                    RejectReason.BAD_FIELD_TYPE, f"{key} is {_short(value)}, not text", csid
                )
        elif (isinstance(value, str | int) and not isinstance(value, bool)) or value is None:
            # Other scalar variables are kept for {placeholders}; structured ones
            # (leg_ids, tag_names, ...) are not needed by the rules.
            fields[key] = value
    state: CallState | None = None
    raw_state = fields.pop("state", None)
    if raw_state is not None:
        state = CallState.parse(str(raw_state))
        if state is None:
            return Rejection(RejectReason.BAD_STATE, f"unknown state {_short(raw_state)}", csid)
    return Notification(csid, kind_of(fields, names), state, fields)


#: What `plain_notification` does with a key: a text variable (`state` is
#: read as text too), a whole-number variable, the session id (read apart),
#: or, when the key is not here, any other variable (a scalar is kept, as the
#: long way keeps it; the call table keeps only the variables a rule or
#: template can name, core/calls.py).
_TEXT: Final = 1
_WHOLE: Final = 2
_ID: Final = 3
_ROLES: Final[Mapping[str, int]] = {
    **dict.fromkeys(TEXT_FIELDS, _TEXT),
    "state": _TEXT,
    **dict.fromkeys(INT_FIELDS, _WHOLE),
    "call_session_id": _ID,
}
#: The keys of `_ROLES` by role, for the short way's membership tests.
_TEXT_KEYS: Final = frozenset(key for key, role in _ROLES.items() if role == _TEXT)
_WHOLE_KEYS: Final = frozenset(key for key, role in _ROLES.items() if role == _WHOLE)
#: Values of other variables that the long way drops without a word (a
#: float is not among them: the long way first checks its range).
_DROPPED: Final = (bool, list, dict)


def plain_notification(item: dict[str, Any], names: Mapping[str, EventKind]) -> Notification | None:
    """The notification in `item` when it needs no repair, else None.

    No repair means: `call_session_id` at the top is a positive 64-bit int
    (so no wrapper is unwrapped); every int is a 64-bit one; every text
    variable is null, an int or text that `_unquote` would leave as it is
    (not empty, not "null", no surrounding white space, not starting with a
    quote or a brace); every whole-number variable is null or an int; no
    variable is a float; and a `state` names one. For such an item this is
    exactly what the long way of `to_notification` returns, without copying
    a value; for any other item (a rejection among them) it returns None and
    the long way decides.
    """
    csid = item.get("call_session_id")
    if type(csid) is not int or not 0 < csid <= INT64_MAX:
        return None
    # The variables are copied whole (in C) and the few that change are
    # changed in place, which keeps the item's order: most notifications
    # change none, and setting them one by one cost more than the checks.
    fields: dict[str, str | int | None] = dict(item)
    del fields["call_session_id"]
    for key, value in item.items():
        cls = type(value)
        if cls is str:
            if (
                not value
                or value[0] in '"{'
                or value == "null"
                or value.strip() != value
                or key in _WHOLE_KEYS
            ):
                return None
        elif cls is int:
            # The session id passes here too: an int in range, not text.
            if not INT64_MIN <= value <= INT64_MAX:
                return None
            if key in _TEXT_KEYS:
                fields[key] = str(value)
        elif value is not None:
            if cls in _DROPPED and key not in _ROLES:
                del fields[key]
                continue
            return None
    state: CallState | None = None
    raw_state = fields.pop("state", None)
    if raw_state is not None:
        state = CallState.parse(str(raw_state))
        if state is None:
            return None
    return Notification(csid, kind_of(fields, names), state, fields)


def kind_of(fields: Mapping[str, object], names: Mapping[str, EventKind]) -> EventKind:
    """The kind named by the mnemonic, else by the name; OTHER when neither is known."""
    for key in ("notification_mnemonic", "notification_name"):
        value = fields.get(key)
        if isinstance(value, str):
            kind = names.get(value.strip().casefold())
            if kind is not None:
                return kind
    return EventKind.OTHER


def sent_name(fields: Mapping[str, object]) -> str | None:
    """The name a notification was sent with: its mnemonic, else its
    notification_name; None when it has neither (a bare state update)."""
    for key in ("notification_mnemonic", "notification_name"):
        value = fields.get(key)
        if isinstance(value, str) and value.strip():
            return value
    return None


#: The signed 64-bit range.
INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1


def beyond_int64(value: object, *, digits: bool = False) -> bool:
    """Whether `value` is a whole number no signed 64-bit integer holds: an
    int, an integral float (orjson reads a wider integer as one, so a float
    of -2**63 was one below it), or with `digits` a string of digits (a
    whole-number variable sent as text)."""
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return not INT64_MIN <= value <= INT64_MAX
    if isinstance(value, float):
        return not math.isfinite(value) or (value.is_integer() and not -(2.0**63) < value < 2.0**63)
    if digits and isinstance(value, str):
        text = value.strip().lstrip("0")
        return text.isascii() and text.isdigit() and (len(text) > 19 or int(text) > INT64_MAX)
    return False


def _out_of_range(key: str, value: object, csid: int | None = None) -> Rejection:
    return Rejection(
        RejectReason.NUMBER_OUT_OF_RANGE,
        f"{key} {_short(value)} is outside the signed 64-bit range",
        csid,
    )


def as_int(value: object) -> int | None:
    """A whole number from an int, a whole float or a string of digits."""
    if isinstance(value, bool):
        return None
    number: int | None = None
    if isinstance(value, int):
        number = value
    elif isinstance(value, float) and value.is_integer() and abs(value) <= 2**53:
        number = int(value)
    elif isinstance(value, str):
        text = value.strip()
        if text.isascii() and text.isdigit() and len(text) <= 19:
            number = int(text)
    # Ids travel as signed 64-bit integers (SQLite, JSON); anything wider is bad input.
    if number is None or not -(2**63) <= number < 2**63:
        return None
    return number


def _unwrap(item: dict[str, Any]) -> dict[str, Any]:
    """The payload of a message that wraps it under params/data/args.

    Top-level keys (a notification_name beside `params`, say) are kept, the
    payload's own keys win.
    """
    for key in _WRAPPERS:
        inner = item.get(key)
        if isinstance(inner, dict) and "call_session_id" not in item:
            merged = {k: v for k, v in item.items() if k != key}
            merged.update(inner)
            return merged
    return item


def _unquote(value: object) -> object:
    """Undo UIS template quirks (docs/callapi.md section 8.2).

    A placeholder wrapped in quotes arrives as `"\\"value\\""`; one the event
    type does not have stays as the literal `{{var}}`, which means "no value".
    """
    if isinstance(value, str):
        text = value.strip()
        if len(text) >= 2 and text[0] == '"' and text[-1] == '"':
            text = text[1:-1]
        if text.startswith("{{") and text.endswith("}}"):
            return None
        if text in ("null", ""):
            return None
        return text
    return value


def _number_text(value: int | float) -> str:
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
