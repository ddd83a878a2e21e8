"""A simulated call session and its legs, as `list.calls` and the control API show them (core).

`CallSpec` is what a call is started with (checked field by field, so the
control API can answer a bad field with a 400); `SimCall` is the session
with its legs and what the API did to it. Section numbers (§N) are those of
docs/callapi.md.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from types import MappingProxyType
from typing import Any, Final, Literal

from holdd.core.states import CallState
from holdd.sim.rpc import JsonDict

#: A notification in the UIS variable form (§8.3): variable name -> JSON value.
Notification = dict[str, Any]
#: `list.calls` start_time: "documented" is `YYYY-MM-DD hh:mm:ss`, "example" is
#: the example's `2016-10-19T12:26:48.418` (§1 Conventions, §3.4).
StartTimeFormat = Literal["documented", "example"]
LegLanguage = Literal["ru", "en"]

#: `list.calls` legs[].state texts (§3.4): the [DOC-CM] Russian list and the
#: [DOC-CG] English one, except TALK, where the English example's "Talking" is used.
LEG_STATE_TEXTS: Final[Mapping[str, Mapping[CallState, str]]] = MappingProxyType(
    {
        "ru": MappingProxyType(
            {
                CallState.SESSION: "Дозвон",
                CallState.TALK: "Разговор",
                CallState.HOLD: "На удержании",
                CallState.POST_TALK: "Разъединено",
            }
        ),
        "en": MappingProxyType(
            {
                CallState.SESSION: "Dial",
                CallState.TALK: "Talking",
                CallState.HOLD: "On hold",
                CallState.POST_TALK: "Disconnected",
            }
        ),
    }
)


class SimControlError(Exception):
    """The control side asked for something the simulated account cannot do."""


class CallNotFound(SimControlError):
    """No call with that call_session_id (active or ended)."""


class InvalidTransition(SimControlError):
    """The call is not in a state the requested step can start from."""


class InvalidCallSpec(SimControlError):
    """`start_call` got an unknown field or a value of the wrong type."""


@dataclass(frozen=True, slots=True)
class ContactMessage:
    """What `hold.call` plays to the contact (§3.2, §7)."""

    type: str
    value: str


@dataclass(slots=True)
class SimLeg:
    """One participant of a call, as `list.calls` shows it (§3.4)."""

    leg_id: int
    calling_phone_number: str
    called_phone_number: str
    is_operator: bool
    employee_id: int | None
    employee_full_name: str | None
    record_call_enabled: bool
    state: CallState

    def state_text(self, language: LegLanguage) -> str:
        """The localised `legs[].state` text (§3.4)."""
        return LEG_STATE_TEXTS[language][self.state]

    def list_entry(self, language: LegLanguage) -> JsonDict:
        """The leg as an item of `list.calls` `legs[]` (§3.4)."""
        return {
            "leg_id": self.leg_id,
            "calling_phone_number": self.calling_phone_number,
            "called_phone_number": self.called_phone_number,
            "is_operator": self.is_operator,
            "employee_id": self.employee_id,
            "employee_full_name": self.employee_full_name,
            "record_call_enabled": self.record_call_enabled,
            "state": self.state_text(language),
        }


@dataclass(frozen=True, slots=True)
class CallSpec:
    """The fields a simulated call is started with; the defaults are the §3.4 example's."""

    call_session_id: int | None = None
    direction: str = "in"
    virtual_phone_number: str = "74951045771"
    contact_phone_number: str = "74959268686"
    contact_full_name: str | None = None
    employee_id: int | None = 2345
    employee_full_name: str | None = "Тест"
    employee_phone_number: str = "79262444393"
    # None picks by direction: "va" for inbound calls to a virtual number (§8.3);
    # "sip" for outbound calls from an employee's phone is an assumption.
    call_source: str | None = None
    scenario_name: str | None = None
    external_id: str | None = None
    record_call_enabled: bool = False
    tags: tuple[tuple[int, str], ...] = ()

    @classmethod
    def from_fields(cls, given: Mapping[str, object]) -> CallSpec:
        """Check `given` (JSON-like values) and build the spec; InvalidCallSpec if wrong."""
        known = {f.name for f in fields(cls)}
        checked: dict[str, Any] = {}
        for name, value in given.items():
            if name not in known:
                raise InvalidCallSpec(f"unknown call field {name!r}")
            checked[name] = _check_spec_value(name, value)
        return cls(**checked)


_SPEC_OPTIONAL_INTS: Final = frozenset({"call_session_id", "employee_id"})
_SPEC_OPTIONAL_STRS: Final = frozenset(
    {"contact_full_name", "employee_full_name", "call_source", "scenario_name", "external_id"}
)


def _check_spec_value(name: str, value: object) -> object:
    def wrong(expected: str) -> InvalidCallSpec:
        return InvalidCallSpec(f"call field {name!r} must be {expected}, not {value!r}")

    if name in _SPEC_OPTIONAL_INTS:
        if value is None or (isinstance(value, int) and not isinstance(value, bool)):
            return value
        raise wrong("an integer or null")
    if name in _SPEC_OPTIONAL_STRS:
        if value is None or isinstance(value, str):
            return value
        raise wrong("a string or null")
    if name == "direction":
        if value in ("in", "out"):
            return value
        raise wrong('"in" or "out"')
    if name == "record_call_enabled":
        if isinstance(value, bool):
            return value
        raise wrong("a boolean")
    if name == "tags":
        return _check_tags(value, wrong)
    if isinstance(value, str):
        return value
    raise wrong("a string")


def _check_tags(
    value: object, wrong: Callable[[str], InvalidCallSpec]
) -> tuple[tuple[int, str], ...]:
    if not isinstance(value, list | tuple):
        raise wrong("a list of {tag_id, tag_name}")
    tags: list[tuple[int, str]] = []
    for item in value:
        if not isinstance(item, Mapping):
            raise wrong("a list of {tag_id, tag_name}")
        tag_id, tag_name = item.get("tag_id"), item.get("tag_name")
        if not isinstance(tag_id, int) or isinstance(tag_id, bool) or not isinstance(tag_name, str):
            raise wrong("a list of {tag_id, tag_name}")
        tags.append((tag_id, tag_name))
    return tuple(tags)


@dataclass(slots=True)
class SimCall:
    """One simulated call session and what the API did to it."""

    call_session_id: int
    direction: str
    virtual_phone_number: str
    contact_phone_number: str
    contact_full_name: str | None
    employee_id: int | None
    employee_full_name: str | None
    employee_phone_number: str
    call_source: str
    scenario_name: str | None
    external_id: str | None
    tags: tuple[tuple[int, str], ...]
    #: Unix time the session started (SESSION entered).
    start_time: float
    state: CallState
    legs: list[SimLeg]
    held_message: ContactMessage | None = None
    hold_count: int = 0
    unhold_count: int = 0
    answered_at: float | None = None
    talk_finished_at: float | None = None
    ended_at: float | None = None

    @property
    def leg_ids(self) -> list[int]:
        return [leg.leg_id for leg in self.legs]

    def enter(self, state: CallState) -> None:
        """Move to `state` and give every leg its matching `list.calls` state (§3.4).

        In HOLD only the contact hears the music (§4: "Playing music to (A)"); the
        operator's leg keeps talking. After the talk every leg is disconnected.
        """
        self.state = state
        for leg in self.legs:
            if state is CallState.HOLD:
                leg.state = CallState.TALK if leg.is_operator else CallState.HOLD
            elif state in (CallState.POST_TALK, CallState.FINISHING, CallState.ENDED):
                leg.state = CallState.POST_TALK
            else:
                leg.state = state

    def snapshot(self, language: LegLanguage = "ru") -> JsonDict:
        """Everything about the call, for the control API and for tests."""
        held = self.held_message
        return {
            "call_session_id": self.call_session_id,
            "state": self.state.value,
            "direction": self.direction,
            "virtual_phone_number": self.virtual_phone_number,
            "contact_phone_number": self.contact_phone_number,
            "contact_full_name": self.contact_full_name,
            "employee_id": self.employee_id,
            "employee_full_name": self.employee_full_name,
            "employee_phone_number": self.employee_phone_number,
            "call_source": self.call_source,
            "scenario_name": self.scenario_name,
            "external_id": self.external_id,
            "tags": [{"tag_id": i, "tag_name": n} for i, n in self.tags],
            "start_time": self.start_time,
            "answered_at": self.answered_at,
            "talk_finished_at": self.talk_finished_at,
            "ended_at": self.ended_at,
            "held_message": None if held is None else {"type": held.type, "value": held.value},
            "hold_count": self.hold_count,
            "unhold_count": self.unhold_count,
            "legs": [
                {
                    **leg.list_entry(language),
                    "state": leg.state.value,
                    "state_text": leg.state_text(language),
                }
                for leg in self.legs
            ],
        }


__all__ = [
    "LEG_STATE_TEXTS",
    "CallNotFound",
    "CallSpec",
    "ContactMessage",
    "InvalidCallSpec",
    "InvalidTransition",
    "LegLanguage",
    "Notification",
    "SimCall",
    "SimControlError",
    "SimLeg",
    "StartTimeFormat",
]
