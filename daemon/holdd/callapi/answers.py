"""What a Call API answer holds: its data, its limits, and `list.calls` sessions (core).

`Answer` is a successful JSON-RPC result with the `metadata.limits` read from
it (docs/callapi.md section 6); `ActiveCall` and `Leg` are the items of a
`list.calls` result (section 3.4), with the session's state derived from
the legs' localised state texts.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from holdd.core.events import INT64_MAX, INT64_MIN, as_int, beyond_int64
from holdd.core.states import LEG_STATES, CallState


@dataclass(frozen=True, slots=True)
class Limits:
    """`metadata.limits` of an answer (section 6); reset values in seconds."""

    day_limit: int | None = None
    day_remaining: int | None = None
    day_reset: int | None = None
    minute_limit: int | None = None
    minute_remaining: int | None = None
    minute_reset: int | None = None

    @classmethod
    def parse(cls, metadata: object) -> Limits | None:
        if not isinstance(metadata, dict):
            return None
        raw = metadata.get("limits")
        if not isinstance(raw, dict):
            return None
        values: dict[str, int | None] = {}
        for name in _LIMIT_FIELDS:
            value = raw.get(name)
            if type(value) is int and INT64_MIN <= value <= INT64_MAX:
                # The usual case, in short: a plain integer in range.
                values[name] = value
                continue
            number = value if isinstance(value, int | float) else None
            # Beyond 64 bits it is no limit the API keeps (docs/callapi.md
            # section 6): taken as not given, never as a wait of ages.
            ok = (
                number is not None
                and not isinstance(number, bool)
                and math.isfinite(number)
                and not beyond_int64(number)
            )
            values[name] = int(number) if ok and number is not None else None
        return cls(**values)


#: The fields of `Limits`, in order (read once, not per answer).
_LIMIT_FIELDS = tuple(Limits.__dataclass_fields__)


@dataclass(frozen=True, slots=True)
class Answer:
    data: Any
    limits: Limits | None
    request_id: int


def succeeded(data: object) -> bool:
    """`result.data.success`: the docs show the string "true", accept the boolean."""
    if not isinstance(data, dict):
        return False
    success = data.get("success")
    return success is True or (isinstance(success, str) and success.strip().lower() == "true")


# Section 3.4: start_time is documented as "YYYY-MM-DD hh:mm:ss"; the example
# shows "2016-10-19T12:26:48.418". Both (and an ISO offset) are accepted.
_START_TIME = re.compile(
    r"\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}(?:\.\d{1,6})?(?:Z|[+-]\d{2}:?\d{2})?"
)


def parse_start_time(text: object) -> datetime | None:
    """`list.calls` `start_time` in either documented format; None if neither.

    Without an offset the result is naive: the account's local time (the
    reference does not name the time zone).
    """
    if not isinstance(text, str) or not _START_TIME.fullmatch(text.strip()):
        return None
    try:
        return datetime.fromisoformat(text.strip())
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class Leg:
    """One `legs[]` item of `list.calls` (section 3.4)."""

    leg_id: int | None
    #: The localised text as the API gave it (`Разговор`, `Talking`, ...).
    state_text: str
    #: `state_text` mapped by holdd.core.states.LEG_STATES; None for a text it does not know.
    state: CallState | None
    is_operator: bool
    employee_id: int | None
    employee_full_name: str | None

    @classmethod
    def parse(cls, raw: object) -> Leg | None:
        if not isinstance(raw, dict):
            return None
        text = raw.get("state")
        text = text if isinstance(text, str) else ""
        name = raw.get("employee_full_name")
        return cls(
            leg_id=as_int(raw.get("leg_id")),
            state_text=text,
            state=LEG_STATES.get(text.strip().casefold()),
            is_operator=raw.get("is_operator") is True,
            employee_id=as_int(raw.get("employee_id")),
            employee_full_name=name if isinstance(name, str) else None,
        )


@dataclass(frozen=True, slots=True)
class ActiveCall:
    """One active session of `list.calls` (section 3.4)."""

    call_session_id: int
    direction: str | None
    start_time: datetime | None
    virtual_phone_number: str | None
    contact_phone_number: str | None
    external_id: str | None
    legs: tuple[Leg, ...] = ()

    @property
    def state(self) -> CallState:
        """The session's state on the diagram (section 4), from its legs' states.

        The API gives no session state, only a localised text per leg, so:

        1. HOLD if any leg is on hold (after `hold.call` only the contact's leg
           hears music; the operator's leg may still say "talking");
        2. else TALK if any leg is talking;
        3. else OPERATOR_TALK, then DIALING, if any leg shows it;
        4. else POST_TALK if there are legs and every one is disconnected;
        5. else SESSION: dialling, queued, no legs, or no leg text holdd knows
           (`state_known` tells the last case apart).
        """
        states = {leg.state for leg in self.legs if leg.state is not None}
        for candidate in (CallState.HOLD, CallState.TALK, CallState.OPERATOR_TALK):
            if candidate in states:
                return candidate
        if CallState.DIALING in states:
            return CallState.DIALING
        if states == {CallState.POST_TALK}:
            return CallState.POST_TALK
        return CallState.SESSION

    @property
    def state_known(self) -> bool:
        """True when at least one leg's state text is one holdd knows."""
        return any(leg.state is not None for leg in self.legs)

    @property
    def operator(self) -> Leg | None:
        """The operator's leg ("B", `is_operator`), preferring one with an employee."""
        operators = [leg for leg in self.legs if leg.is_operator]
        with_employee = [leg for leg in operators if leg.employee_id is not None]
        chosen = with_employee or operators
        return chosen[0] if chosen else None

    @property
    def fields(self) -> dict[str, str | int | None]:
        """The call as notification variables (section 8.3 names), for rules and TTS.

        Only values the API gave: a null is left out, so merging these into
        what notifications said never erases a known value.
        """
        operator = self.operator
        values: dict[str, str | int | None] = {
            "direction": self.direction,
            "virtual_phone_number": self.virtual_phone_number,
            "contact_phone_number": self.contact_phone_number,
            "external_id": self.external_id,
            "employee_id": operator.employee_id if operator else None,
            "employee_full_name": operator.employee_full_name if operator else None,
        }
        return {key: value for key, value in values.items() if value is not None}

    @classmethod
    def parse(cls, raw: object) -> ActiveCall | None:
        """One `result.data[]` item; None when it has no usable `call_session_id`."""
        if not isinstance(raw, dict):
            return None
        call_session_id = as_int(raw.get("call_session_id"))
        if call_session_id is None:
            return None
        legs_raw = raw.get("legs")
        legs = tuple(
            leg
            for leg in (
                Leg.parse(item) for item in (legs_raw if isinstance(legs_raw, list) else ())
            )
            if leg is not None
        )
        return cls(
            call_session_id=call_session_id,
            direction=_as_str(raw.get("direction")),
            start_time=parse_start_time(raw.get("start_time")),
            virtual_phone_number=_as_str(raw.get("virtual_phone_number")),
            contact_phone_number=_as_str(raw.get("contact_phone_number")),
            external_id=_as_str(raw.get("external_id")),
            legs=legs,
        )


def _as_str(value: object) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return None


__all__ = ["ActiveCall", "Answer", "Leg", "Limits", "parse_start_time", "succeeded"]
