"""The call table: states of the call state diagram, one Talk episode per entry."""

from __future__ import annotations

import sys

from holdd.core.calls import _SHARED, KEPT_FIELDS, Call, CallTable, ChangeKind, _keep, _shared
from holdd.core.events import EventKind, Notification
from holdd.core.states import CallState


def note(csid: int, kind: EventKind, state: CallState | None = None, **fields: str) -> Notification:
    return Notification(csid, kind, state, fields)


def get(table: CallTable, csid: int) -> Call:
    call = table.get(csid)
    assert call is not None, csid
    return call


def kinds(changes: list) -> list[ChangeKind]:  # type: ignore[type-arg]
    return [c.kind for c in changes]


def test_life_of_a_call() -> None:
    table = CallTable()
    assert table.apply(note(1, EventKind.CALL_STARTED, direction="in"), now=10) == []
    assert get(table, 1).state is CallState.SESSION
    changes = table.apply(note(1, EventKind.TALK_STARTED), now=12)
    assert kinds(changes) == [ChangeKind.TALK_ENTERED]
    call = changes[0].call
    assert (call.state, call.episode, call.talk_started_at) == (CallState.TALK, 1, 12)
    assert call.fields["direction"] == "in"
    assert kinds(table.apply(note(1, EventKind.TALK_FINISHED), now=20)) == [ChangeKind.TALK_LEFT]
    assert kinds(table.apply(note(1, EventKind.CALL_FINISHED), now=21)) == [ChangeKind.ENDED]
    assert get(table, 1).state is CallState.ENDED


def test_duplicate_talk_started_is_not_a_new_episode() -> None:
    table = CallTable()
    assert kinds(table.apply(note(1, EventKind.TALK_STARTED), now=1)) == [ChangeKind.TALK_ENTERED]
    assert table.apply(note(1, EventKind.TALK_STARTED), now=2) == []
    table.held(1, now=3)
    assert get(table, 1).state is CallState.HOLD
    # The provider repeating itself while we hold the call changes nothing.
    assert table.apply(note(1, EventKind.TALK_STARTED), now=4) == []
    assert get(table, 1).state is CallState.HOLD
    assert get(table, 1).episode == 1


def test_talk_again_after_post_talk_is_a_new_episode() -> None:
    table = CallTable()
    table.apply(note(1, EventKind.TALK_STARTED), now=1)
    table.apply(note(1, EventKind.TALK_FINISHED), now=2)
    changes = table.apply(note(1, EventKind.TALK_STARTED), now=3)
    assert kinds(changes) == [ChangeKind.TALK_ENTERED]
    assert changes[0].call.episode == 2


def test_finished_before_started_never_talks() -> None:
    table = CallTable()
    assert table.apply(note(7, EventKind.CALL_FINISHED), now=1) == []
    assert table.apply(note(7, EventKind.TALK_STARTED), now=2) == []
    assert get(table, 7).state is CallState.ENDED


def test_ended_calls_are_swept_after_the_ttl() -> None:
    table = CallTable(ended_ttl=60)
    for csid in range(1, 1001):
        table.apply(note(csid, EventKind.TALK_STARTED), now=csid)
        table.apply(note(csid, EventKind.CALL_FINISHED), now=csid)
    table.apply(note(5000, EventKind.TALK_STARTED), now=1000)
    assert len(table) == 1001
    assert len(table.sweep(now=1030)) == 970  # ended at t <= 970
    assert len(table.sweep(now=2000)) == 30
    assert len(table) == 1 and table.get(5000) is not None


def test_explicit_state_moves_the_call() -> None:
    table = CallTable()
    assert kinds(table.apply(note(3, EventKind.OTHER, CallState.TALK), now=1)) == [
        ChangeKind.TALK_ENTERED
    ]
    assert kinds(table.apply(note(3, EventKind.OTHER, CallState.DIALING), now=2)) == [
        ChangeKind.TALK_LEFT
    ]
    assert kinds(table.apply(note(3, EventKind.OTHER, CallState.ENDED), now=3)) == [
        ChangeKind.ENDED
    ]


def timed(csid: int, kind: EventKind, at: str) -> Notification:
    return Notification(csid, kind, None, {"notification_time": f"2026-11-26 10:00:{at}"})


def test_a_late_duplicate_talk_started_is_not_a_new_episode() -> None:
    """Both transports, or a provider retry: the copy arrives after the finish."""
    table = CallTable()
    table.apply(timed(1, EventKind.TALK_STARTED, "00.000"), now=1)
    table.held(1, now=2)
    table.apply(timed(1, EventKind.TALK_FINISHED, "30.000"), now=3)
    assert table.apply(timed(1, EventKind.TALK_STARTED, "00.000"), now=4) == []
    assert table.apply(timed(1, EventKind.TALK_STARTED, "30.000"), now=5) == []
    assert get(table, 1).episode == 1
    # A talk that really starts after the finish is a new episode.
    changes = table.apply(timed(1, EventKind.TALK_STARTED, "31.500"), now=6)
    assert kinds(changes) == [ChangeKind.TALK_ENTERED]
    assert changes[0].call.episode == 2


class Listed:
    def __init__(self, csid: int, state: CallState, **fields: str) -> None:
        self.call_session_id = csid
        self.state = state
        self.fields = fields


def test_reconcile_adds_talking_calls_and_ends_missing_ones() -> None:
    table = CallTable()
    table.apply(note(1, EventKind.TALK_STARTED), now=1)
    table.apply(note(2, EventKind.CALL_STARTED), now=1)
    changes = table.reconcile(
        [Listed(3, CallState.TALK, direction="in"), Listed(2, CallState.HOLD)], taken_at=5, now=6
    )
    assert sorted((c.call.call_session_id, c.kind, c.source) for c in changes) == [
        (1, ChangeKind.ENDED, "resync"),
        (3, ChangeKind.TALK_ENTERED, "resync"),
    ]
    assert get(table, 3).fields["direction"] == "in"
    assert get(table, 2).state is CallState.HOLD


def test_reconcile_never_ends_a_call_heard_of_after_the_listing_was_asked_for() -> None:
    """The race: list.calls is in flight while a notification starts a call."""
    table = CallTable()
    table.apply(note(1, EventKind.TALK_STARTED), now=10)  # after taken_at=5
    table.apply(note(2, EventKind.TALK_STARTED), now=4)  # before it
    changes = table.reconcile([], taken_at=5, now=11)
    assert [(c.call.call_session_id, c.kind) for c in changes] == [(2, ChangeKind.ENDED)]
    assert get(table, 1).state is CallState.TALK


def test_a_call_a_lagging_listing_ended_comes_back() -> None:
    table = CallTable()
    table.apply(note(1, EventKind.CALL_STARTED), now=1)
    assert kinds(table.reconcile([], taken_at=2, now=3)) == [ChangeKind.ENDED]
    # The next listing has it in Talk: alive after all, and a Talk episode.
    changes = table.reconcile([Listed(1, CallState.TALK)], taken_at=4, now=5)
    assert kinds(changes) == [ChangeKind.TALK_ENTERED]
    # A notification may revive it too; one ended by a notification stays ended.
    table.apply(note(2, EventKind.CALL_FINISHED), now=6)
    listed = [Listed(1, CallState.TALK), Listed(2, CallState.TALK)]
    assert table.reconcile(listed, taken_at=7, now=8) == []
    assert get(table, 2).state is CallState.ENDED


def test_a_call_started_that_arrives_after_a_listing_found_the_talk_changes_nothing() -> None:
    """The first resync's listing is answered while the stream's first
    notifications for the call still wait in the queue: the stale "call
    started" must not end the Talk the listing found, nor its "talk started"
    begin a second episode."""
    table = CallTable()
    found = table.reconcile([Listed(1, CallState.TALK, direction="in")], taken_at=5, now=6)
    assert kinds(found) == [ChangeKind.TALK_ENTERED]
    assert table.apply(note(1, EventKind.CALL_STARTED, direction="in"), now=7) == []
    assert table.apply(note(1, EventKind.TALK_STARTED), now=7) == []
    assert (get(table, 1).state, get(table, 1).episode) == (CallState.TALK, 1)
    # A call still at its start takes its "call started" as ever.
    table.apply(note(2, EventKind.CALL_STARTED, direction="out"), now=8)
    assert get(table, 2).fields["direction"] == "out"


def test_kept_variables_are_the_nameable_ones_with_the_shared_texts_interned() -> None:
    """`_keep` writes `_shared` out for speed: it keeps what the per-key
    definition keeps, in the same order, the same objects."""
    assert _SHARED <= KEPT_FIELDS
    built = "".join(["7499", "3720692"])  # not interned yet
    fields: dict[str, str | int | None] = {
        "notification_name": "Начало разговора",
        "virtual_phone_number": built,
        "contact_phone_number": "".join(["7926", "0000001"]),
        "employee_id": 25,
        "call_source": 7,
        "scenario_name": None,
        "leg_id": None,
        "secret": "dropped",
        "x": 1,
    }
    into: dict[str, str | int | None] = {"direction": "in", "employee_id": 3}
    expected = dict(into)
    for key, value in fields.items():
        if key in KEPT_FIELDS:
            expected[key] = _shared(key, value)
    _keep(into, fields)
    assert list(into.items()) == list(expected.items())
    assert all(into[key] is expected[key] for key in into)
    assert into["virtual_phone_number"] is sys.intern(built)
