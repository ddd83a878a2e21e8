"""The simulated account's switchboard: its call sessions from start to end (core).

The control side of a call (a caller dials in, the operator answers, someone
hangs up) is driven with `start_call`, `answer`, `finish_talk` and `end_call`;
each moves the call along the state diagram (docs/callapi.md §4) and returns
the notifications (§8.3) that UIS would send for it. A call ended by the API
(`release.call`) queues its notifications for `drain_notifications()`.
"""

from __future__ import annotations

from datetime import datetime, tzinfo
from typing import Final

from holdd.core.states import CallState
from holdd.sim.calls import (
    CallNotFound,
    CallSpec,
    InvalidCallSpec,
    InvalidTransition,
    Notification,
    SimCall,
    SimLeg,
)

#: The first call_session_id handed out: the one of the hold.call example (§3.2).
FIRST_CALL_SESSION_ID: Final = 23465781
FIRST_LEG_ID: Final = 287866201


class Switchboard:
    """Active and ended call sessions, and the steps that move them (§4)."""

    def __init__(
        self,
        *,
        tz: tzinfo | None = None,
        first_call_session_id: int = FIRST_CALL_SESSION_ID,
        first_leg_id: int = FIRST_LEG_ID,
    ) -> None:
        #: Time zone of `notification_time` (and `list.calls` start_time); None: the host's.
        self.tz = tz
        #: Active sessions (every state before ENDED), in the order they started.
        self.calls: dict[int, SimCall] = {}
        #: Sessions that ended, kept for inspection.
        self.ended: dict[int, SimCall] = {}
        self._next_call_session_id = first_call_session_id
        self._next_leg_id = first_leg_id
        self._outbox: list[Notification] = []

    def release(self, call: SimCall, now: float) -> None:
        """The API ended `call` (`release.call`, §3.5): queue what UIS would notify."""
        self._outbox.extend(self._end(call, now))

    def drain_notifications(self) -> list[Notification]:
        """Take the notifications that API requests caused (e.g. `release.call`)."""
        taken, self._outbox = self._outbox, []
        return taken

    def start_call(self, now: float, /, **fields: object) -> tuple[SimCall, list[Notification]]:
        """A call session starts (§4 `start -> SESSION`): a contact dials in or out.

        `fields` are those of `CallSpec`. Returns the call and the notification
        UIS sends for it (§8.3 «Входящий звонок на виртуальный номер» or
        «Исходящий звонок»).
        """
        spec = CallSpec.from_fields(fields)
        call_session_id = spec.call_session_id
        if call_session_id is None:
            call_session_id = self._new_call_session_id()
        elif call_session_id in self.calls or call_session_id in self.ended:
            raise InvalidCallSpec(f"call_session_id {call_session_id} is already used")
        call = SimCall(
            call_session_id=call_session_id,
            direction=spec.direction,
            virtual_phone_number=spec.virtual_phone_number,
            contact_phone_number=spec.contact_phone_number,
            contact_full_name=spec.contact_full_name,
            employee_id=spec.employee_id,
            employee_full_name=spec.employee_full_name,
            employee_phone_number=spec.employee_phone_number,
            call_source=spec.call_source or ("va" if spec.direction == "in" else "sip"),
            scenario_name=spec.scenario_name,
            external_id=spec.external_id,
            tags=spec.tags,
            start_time=now,
            state=CallState.SESSION,
            legs=self._new_legs(spec),
        )
        self.calls[call_session_id] = call
        if call.direction == "in":
            name = "Входящий звонок на виртуальный номер"
        else:
            name = "Исходящий звонок"
        return call, [self._notification(call, name, "call_started", now)]

    def answer(self, call_session_id: int, now: float) -> list[Notification]:
        """The parties are connected: `SESSION -> TALK` (§4); «Начало разговора» (§8.3)."""
        call = self.call(call_session_id)
        if call.state in (
            CallState.TALK,
            CallState.HOLD,
            CallState.POST_TALK,
            CallState.FINISHING,
            CallState.ENDED,
        ):
            raise InvalidTransition(f"call {call_session_id} cannot be answered in {call.state}")
        call.enter(CallState.TALK)
        call.answered_at = now
        note = self._notification(call, "Начало разговора", "talk_started", now)
        note["leg_ids"] = call.leg_ids
        return [note]

    def finish_talk(self, call_session_id: int, now: float) -> list[Notification]:
        """A leg hangs up: `TALK -> POST_TALK` (§4); «Окончание разговора» (§8.3)."""
        call = self.call(call_session_id)
        if call.state not in (CallState.TALK, CallState.HOLD):
            raise InvalidTransition(f"call {call_session_id} is not talking ({call.state})")
        return self._finish_talk(call, now)

    def end_call(self, call_session_id: int, now: float) -> list[Notification]:
        """The session ends (§4 `FINISHING -> end`); «Завершение звонка» (§8.3).

        A call still talking finishes its talk first, with its own notification.
        """
        call = self.call(call_session_id)
        if call.state is CallState.ENDED:
            raise InvalidTransition(f"call {call_session_id} has already ended")
        return self._end(call, now)

    def call(self, call_session_id: int) -> SimCall:
        """The call with that id, active or ended; CallNotFound if none."""
        call = self.calls.get(call_session_id) or self.ended.get(call_session_id)
        if call is None:
            raise CallNotFound(f"no call {call_session_id}")
        return call

    def all_calls(self) -> list[SimCall]:
        """Active and ended calls, by start time."""
        every = [*self.calls.values(), *self.ended.values()]
        return sorted(every, key=lambda c: (c.start_time, c.call_session_id))

    def _finish_talk(self, call: SimCall, now: float) -> list[Notification]:
        call.enter(CallState.POST_TALK)
        call.talk_finished_at = now
        note = self._notification(call, "Окончание разговора", "talk_finished", now)
        note["talk_time_duration"] = self._talk_time(call, now)
        note["leg_ids"] = call.leg_ids
        return [note]

    def _end(self, call: SimCall, now: float) -> list[Notification]:
        notes = []
        if call.state in (CallState.TALK, CallState.HOLD):
            notes.extend(self._finish_talk(call, now))
        call.enter(CallState.ENDED)
        call.ended_at = now
        del self.calls[call.call_session_id]
        self.ended[call.call_session_id] = call
        note = self._notification(call, "Завершение звонка", "call_finished", now)
        answered = now if call.answered_at is None else call.answered_at
        note["talk_time_duration"] = self._talk_time(call, now)
        note["total_time_duration"] = round(now - call.start_time)
        note["wait_time_duration"] = round(answered - call.start_time)
        note["is_lost"] = call.answered_at is None
        note["tag_names"] = [name for _, name in call.tags] or None
        notes.append(note)
        return notes

    @staticmethod
    def _talk_time(call: SimCall, now: float) -> int:
        if call.answered_at is None:
            return 0
        until = now if call.talk_finished_at is None else call.talk_finished_at
        return round(until - call.answered_at)

    def _new_call_session_id(self) -> int:
        while self._next_call_session_id in self.calls or self._next_call_session_id in self.ended:
            self._next_call_session_id += 1
        call_session_id = self._next_call_session_id
        self._next_call_session_id += 1
        return call_session_id

    def _new_leg_id(self) -> int:
        leg_id = self._next_leg_id
        self._next_leg_id += 1
        return leg_id

    def _new_legs(self, spec: CallSpec) -> list[SimLeg]:
        """Leg (A), the contact, then leg (B), the operator (§3.4 example, §4)."""
        if spec.direction == "in":
            contact_from, contact_to = spec.contact_phone_number, spec.virtual_phone_number
            operator_from = spec.contact_phone_number
        else:
            contact_from, contact_to = spec.virtual_phone_number, spec.contact_phone_number
            operator_from = spec.virtual_phone_number
        contact = SimLeg(
            leg_id=self._new_leg_id(),
            calling_phone_number=contact_from,
            called_phone_number=contact_to,
            is_operator=False,
            employee_id=None,
            employee_full_name=None,
            record_call_enabled=spec.record_call_enabled,
            state=CallState.SESSION,
        )
        operator = SimLeg(
            leg_id=self._new_leg_id(),
            calling_phone_number=operator_from,
            called_phone_number=spec.employee_phone_number,
            is_operator=True,
            employee_id=spec.employee_id,
            employee_full_name=spec.employee_full_name,
            record_call_enabled=spec.record_call_enabled,
            state=CallState.SESSION,
        )
        return [contact, operator]

    def _notification(self, call: SimCall, name: str, mnemonic: str, now: float) -> Notification:
        """The variables every §8.3 event type carries, for `call`.

        The `notification_mnemonic` values are an assumption: the real ones are
        not publicly documented (§8.3, open question 1). These are the event-kind
        names holdd's spec uses.
        """
        return {
            "notification_name": name,
            "notification_mnemonic": mnemonic,
            "notification_time": self.format_notification_time(now),
            "call_session_id": call.call_session_id,
            "direction": call.direction,
            "virtual_phone_number": call.virtual_phone_number,
            "contact_phone_number": call.contact_phone_number,
            "contact_full_name": call.contact_full_name,
            "employee_id": call.employee_id,
            "employee_full_name": call.employee_full_name,
            "call_source": call.call_source,
            "scenario_name": call.scenario_name,
            "external_id": call.external_id,
        }

    def format_notification_time(self, when: float) -> str:
        """§8.3: `2019-12-16 14:40:47.234`, local time with milliseconds."""
        moment = datetime.fromtimestamp(when, self.tz)
        return f"{moment:%Y-%m-%d %H:%M:%S}.{moment.microsecond // 1000:03d}"


__all__ = ["FIRST_CALL_SESSION_ID", "FIRST_LEG_ID", "Switchboard"]
