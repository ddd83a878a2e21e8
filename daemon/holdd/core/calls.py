"""The call table: one record per `call_session_id`, moved along the call state
diagram of docs/callapi.md section 4 (core).

`CallTable.apply` takes a notification and the current time and returns the
changes the rest of the daemon cares about. Entering TALK is reported once per
Talk episode, however often the provider repeats itself: a duplicate
`talk_started` for a call already talking (or on hold) is not a new episode,
and nothing revives a call that has ended (a late `talk_started` after
`call_finished`, or one that arrives after `call_finished` for a call never
seen, finds a tombstone). Ended calls are swept after a TTL, so memory stays
bounded however many calls pass through.
"""

from __future__ import annotations

import sys
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

import msgspec

from holdd.core.events import INT_FIELDS, TEXT_FIELDS, EventKind, Notification
from holdd.core.states import TALKING, CallState

#: What a call keeps of its notifications' variables: what a rule can match
#: or a TTS template can name (docs/rules.md); the rest is dropped at once.
KEPT_FIELDS = TEXT_FIELDS | INT_FIELDS
#: Variables with few distinct values across calls: one string object each,
#: shared by every call, instead of one per notification.
_SHARED = frozenset(
    {
        "notification_name",
        "notification_mnemonic",
        "direction",
        "virtual_phone_number",
        "call_source",
        "scenario_name",
        "employee_full_name",
    }
)


def _shared(key: str, value: str | int | None) -> str | int | None:
    # Interned strings are freed once no call uses them (CPython 3.11).
    if key in _SHARED and type(value) is str:
        return sys.intern(value)
    return value


def _keep(into: dict[str, str | int | None], fields: Mapping[str, str | int | None]) -> None:
    # `_shared` written out: this runs for every variable of every
    # notification, where a function call per variable is a good part of the
    # cost.
    for key, value in fields.items():
        if key in _SHARED:
            if type(value) is str:
                value = sys.intern(value)
        elif key not in KEPT_FIELDS:
            continue
        into[key] = value


class ChangeKind(StrEnum):
    #: The call entered TALK: a new Talk episode began. Rules run on this.
    TALK_ENTERED = "talk_entered"
    #: The call left TALK (pending delayed actions are void).
    TALK_LEFT = "talk_left"
    #: The call is over.
    ENDED = "ended"


@dataclass(slots=True)
class Call:
    call_session_id: int
    state: CallState
    #: Notification variables seen for this call, later values winning.
    fields: dict[str, str | int | None] = field(default_factory=dict)
    #: Number of the current (or last) Talk episode, 0 before the first.
    episode: int = 0
    #: When the current Talk episode began (seconds since the epoch).
    talk_started_at: float | None = None
    updated_at: float = 0.0
    #: Rules that acted on this call (a rule fires at most once per call).
    #: A tuple: empty and shared until one does, and one name is 48 bytes
    #: where a set is 216 (most calls are held once at most).
    fired: tuple[str, ...] = ()
    #: The Talk episode the rules were last evaluated for (0: never). A call
    #: restored in Talk whose episode was decided needs no second look.
    decided: int = 0
    #: What ended the call: "notification" is final; "resync" (the API no
    #: longer listed it) yields to a later notification, because a listing
    #: can lag behind a call that has only just started.
    ended_by: str | None = None
    #: `notification_time` of the notification that took the call out of
    #: TALK, to tell a late duplicate "talk started" from a new Talk.
    left_talk_at: str | None = None


class ActiveSession(Protocol):
    """What resync needs of one `list.calls` entry (callapi.ActiveCall has it)."""

    @property
    def call_session_id(self) -> int: ...

    @property
    def state(self) -> CallState: ...

    @property
    def fields(self) -> Mapping[str, str | int | None]: ...


def _not_after(sent_at: object, left_at: str | None) -> bool:
    """`notification_time` values ("2019-12-16 14:40:47.234", local time, one
    format per account) compare as text; unknown times prove nothing."""
    return isinstance(sent_at, str) and left_at is not None and sent_at <= left_at


# A Struct (built in C; a frozen dataclass calls object.__setattr__ per
# field): one is made for every change of every call.
class CallChange(msgspec.Struct, frozen=True, gc=False):
    kind: ChangeKind
    call: Call
    #: What caused the change: "notification" or "resync".
    source: str = "notification"


_KIND_STATE: Mapping[EventKind, CallState] = {
    EventKind.CALL_STARTED: CallState.SESSION,
    EventKind.WAITING: CallState.SESSION,
    EventKind.TALK_STARTED: CallState.TALK,
    EventKind.TALK_FINISHED: CallState.POST_TALK,
    EventKind.CALL_FINISHED: CallState.ENDED,
}

# Members read on every notification, bound to names once: in Python 3.11
# reading a member off its class (`CallState.ENDED`) passes through
# EnumType's __getattr__ hook and costs about ten global look-ups.
_SESSION = CallState.SESSION
_HOLD = CallState.HOLD
_ENDED = CallState.ENDED
_WAITING = EventKind.WAITING
_CALL_STARTED = EventKind.CALL_STARTED
_TALK_ENTERED = ChangeKind.TALK_ENTERED
_TALK_LEFT = ChangeKind.TALK_LEFT
_ENDED_CHANGE = ChangeKind.ENDED
#: States a "waiting" notification takes to DIALING (see `apply`).
_DIALLED_FROM = (CallState.HOLD, CallState.WAITING_INPUT)
#: States of a call that left Talk and has not ended.
_AFTER_TALK = (CallState.POST_TALK, CallState.FINISHING)

#: States from which a TALK is a continuation, not a new Talk episode. HOLD
#: leads back to TALK only through `unhold.call`, which holdd itself sends
#: (and records with `unheld`); a provider repeating "talk started" for a call
#: we hold is a duplicate, never a reason to act again.
_SAME_EPISODE = TALKING | {CallState.HOLD}


class CallTable:
    """Every call holdd knows, by `call_session_id`."""

    def __init__(self, ended_ttl: float = 600.0) -> None:
        self.ended_ttl = ended_ttl
        self._calls: dict[int, Call] = {}
        # call_session_id -> when it ended; oldest first, for the sweep.
        self._ended: OrderedDict[int, float] = OrderedDict()

    def __len__(self) -> int:
        return len(self._calls)

    def __iter__(self) -> Iterator[Call]:
        return iter(self._calls.values())

    def get(self, call_session_id: int) -> Call | None:
        return self._calls.get(call_session_id)

    def apply(self, n: Notification, now: float) -> list[CallChange]:
        """Apply one notification; return what changed that matters."""
        csid = n.call_session_id
        kind = n.kind
        stated = n.state
        call = self._calls.get(csid)
        target = stated or _KIND_STATE.get(kind)
        if kind is _WAITING and stated is None and call is not None:
            # "Waiting for the answer" names a leg being dialled (section 8.4):
            # before the first Talk that is still SESSION; from HOLD (after
            # make.call) it is the diagram's DIALING; during a Talk it changes
            # nothing.
            if call.state in _DIALLED_FROM:
                target = CallState.DIALING
            elif call.state is not _SESSION:
                target = None
        started = kind is _CALL_STARTED and stated is None
        if started and call is not None and call.state is not _SESSION:
            # "Call started" comes once, first; one that arrives after a
            # listing found the call further on (its Talk) is stale: it
            # never takes a call back to its start.
            target = None
        if call is None:
            call = Call(csid, _SESSION, updated_at=now)
            self._calls[csid] = call
            if target is _ENDED or target in _AFTER_TALK:
                # Finished before (or without) started: keep a tombstone so a
                # late talk_started cannot act on a call that is over.
                _keep(call.fields, n.fields)
                return self._end(call, now, source="notification", quiet=True)
        if call.state is _ENDED:
            if call.ended_by != "resync":
                return []
            call.state = _SESSION
            call.ended_by = None
            self._ended.pop(csid, None)
        sent_at = n.fields.get("notification_time")
        if (
            target in TALKING
            and call.state in _AFTER_TALK
            and _not_after(sent_at, call.left_talk_at)
        ):
            # A "talk started" sent no later than the "talk finished" we have
            # already seen: a late duplicate (both transports, or a provider
            # retry), not a new Talk episode.
            return []
        _keep(call.fields, n.fields)
        call.updated_at = now
        if target is None:
            return []
        changes = self.move(call, target, now, source="notification")
        for change in changes:
            if change.kind is _TALK_LEFT and isinstance(sent_at, str):
                call.left_talk_at = sent_at
        return changes

    def move(self, call: Call, target: CallState, now: float, *, source: str) -> list[CallChange]:
        """Move `call` to `target`, returning the changes it makes."""
        before = call.state
        if before is _ENDED or target is before:
            return []
        if target is _ENDED:
            return self._end(call, now, source=source)
        if before is _HOLD and target in TALKING:
            # Only our own unhold.call (see `unheld`) takes a held call back.
            return []
        call.state = target
        call.updated_at = now
        if target in TALKING and before not in _SAME_EPISODE:
            call.episode += 1
            call.talk_started_at = now
            return [CallChange(_TALK_ENTERED, call, source)]
        if before in _SAME_EPISODE and target not in _SAME_EPISODE:
            return [CallChange(_TALK_LEFT, call, source)]
        return []

    def reconcile(
        self, snapshot: Iterable[ActiveSession], taken_at: float, now: float
    ) -> list[CallChange]:
        """Bring the table in line with `list.calls` (resync, docs/callapi.md section 3).

        `snapshot` is every active session the API listed, asked for at
        `taken_at`. A call the API lists and we did not know is added in its
        state (a call in TALK enters a Talk episode, so rules run on it); a call
        we think active that the API no longer lists has ended. Notifications
        that arrived after `taken_at` are fresher than the snapshot: such calls
        are left as the notifications put them, so a call that started while
        the request was in flight is never ended by mistake.
        """
        changes: list[CallChange] = []
        listed: set[int] = set()
        for session in snapshot:
            listed.add(session.call_session_id)
            call = self._calls.get(session.call_session_id)
            if call is None:
                call = Call(session.call_session_id, CallState.SESSION, updated_at=now)
                self._calls[session.call_session_id] = call
                _keep(call.fields, session.fields)
            elif call.updated_at > taken_at or (
                call.state is CallState.ENDED and call.ended_by != "resync"
            ):
                continue
            elif call.state is CallState.ENDED:
                # An earlier listing missed it (listings can lag behind a call
                # that has just started): it is alive after all.
                call.state = CallState.SESSION
                call.ended_by = None
                self._ended.pop(call.call_session_id, None)
                for key, value in session.fields.items():
                    if key in KEPT_FIELDS and key not in call.fields:
                        call.fields[key] = _shared(key, value)
            else:
                for key, value in session.fields.items():
                    if key in KEPT_FIELDS and key not in call.fields:
                        call.fields[key] = _shared(key, value)
            changes.extend(self.move(call, session.state, now, source="resync"))
        for call in list(self._calls.values()):
            if (
                call.call_session_id not in listed
                and call.state is not CallState.ENDED
                and call.updated_at <= taken_at
            ):
                changes.extend(self._end(call, now, source="resync"))
        return changes

    def restore(
        self,
        call_session_id: int,
        state: CallState,
        episode: int,
        talk_started_at: float | None,
        now: float,
        fields: Mapping[str, str | int | None] | None = None,
    ) -> Call:
        """A call remembered in the state database, put back after a restart.

        Its Talk episode and the moment it entered Talk are kept, so a rule's
        `after` keeps counting from the real start and a resync that finds
        the call still talking does not begin a new episode.
        """
        call = Call(call_session_id, state, episode=episode, talk_started_at=talk_started_at)
        _keep(call.fields, fields or {})
        call.updated_at = now
        self._calls[call_session_id] = call
        return call

    def held(self, call_session_id: int, now: float) -> None:
        """`hold.call` succeeded (TALK -> HOLD, diagram section 4)."""
        call = self._calls.get(call_session_id)
        if call is not None and call.state in TALKING:
            call.state = CallState.HOLD
            call.updated_at = now

    def unheld(self, call_session_id: int, now: float) -> None:
        """`unhold.call` succeeded (HOLD -> TALK, same episode)."""
        call = self._calls.get(call_session_id)
        if call is not None and call.state is CallState.HOLD:
            call.state = CallState.TALK
            call.updated_at = now

    def sweep(self, now: float) -> list[int]:
        """Forget calls that ended more than `ended_ttl` ago; return their ids."""
        swept: list[int] = []
        while self._ended:
            csid, ended_at = next(iter(self._ended.items()))
            if now - ended_at < self.ended_ttl:
                break
            del self._ended[csid]
            self._calls.pop(csid, None)
            swept.append(csid)
        return swept

    def counts(self) -> dict[CallState, int]:
        out: dict[CallState, int] = {}
        for call in self._calls.values():
            out[call.state] = out.get(call.state, 0) + 1
        return out

    def _end(self, call: Call, now: float, *, source: str, quiet: bool = False) -> list[CallChange]:
        call.state = _ENDED
        call.ended_by = source
        call.updated_at = now
        self._ended[call.call_session_id] = now
        self._ended.move_to_end(call.call_session_id)
        return [] if quiet else [CallChange(_ENDED_CHANGE, call, source)]
