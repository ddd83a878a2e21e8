"""Call states of the Call API's state diagram (core).

The names are those of the diagram in docs/callapi.md section 4. The API never
returns them: holdd infers them from notifications and from the localised
`legs[].state` texts of `list.calls` (section 3.4), mapped here.
"""

from __future__ import annotations

from enum import StrEnum


class CallState(StrEnum):
    SESSION = "SESSION"
    TALK = "TALK"
    HOLD = "HOLD"
    WAITING_INPUT = "WAITING_INPUT"
    DIALING = "DIALING"
    OPERATOR_TALK = "OPERATOR_TALK"
    CALL_COACH = "CALL_COACH"
    RECORD_TALK = "RECORD_TALK"
    MARK_CALL = "MARK_CALL"
    POST_TALK = "POST_TALK"
    FINISHING = "FINISHING"
    ENDED = "ENDED"

    @classmethod
    def parse(cls, text: str) -> CallState | None:
        """The state named by `text` in any case; None when it names none."""
        key = text.strip().upper()
        if key in {"END", "ENDED", "FINISHED"}:
            return cls.ENDED
        try:
            return cls(key)
        except ValueError:
            return None


#: States in which the caller is in a conversation (the diagram's side trips
#: from TALK return to TALK, so they count as the same Talk episode).
TALKING = frozenset(
    {CallState.TALK, CallState.CALL_COACH, CallState.RECORD_TALK, CallState.MARK_CALL}
)

#: `list.calls` leg states (RU docs, EN docs, EN example), section 3.4.
LEG_STATES: dict[str, CallState] = {
    "разговор": CallState.TALK,
    "talking": CallState.TALK,
    "conversation": CallState.TALK,
    "на удержании": CallState.HOLD,
    "on hold": CallState.HOLD,
    "дозвон": CallState.SESSION,
    "dial": CallState.SESSION,
    "на очереди": CallState.SESSION,
    "next in line": CallState.SESSION,
    "разговор операторов": CallState.OPERATOR_TALK,
    "operators talking": CallState.OPERATOR_TALK,
    "перевод вызова": CallState.DIALING,
    "call transfer": CallState.DIALING,
    "разъединено": CallState.POST_TALK,
    "disconnected": CallState.POST_TALK,
}
