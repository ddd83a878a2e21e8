"""Property tests: the notification parser never raises, every rejection
says why, and its short way (`plain_notification`) answers the common
notification exactly as the long way (`normalised_notification`) does."""

from __future__ import annotations

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from holdd.core.events import (
    DEFAULT_EVENT_NAMES,
    INT_FIELDS,
    TEXT_FIELDS,
    Notification,
    RejectReason,
    decode,
    normalised_notification,
    plain_notification,
)
from holdd.core.states import CallState

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=20), children, max_size=6)
    ),
    max_leaves=30,
)
KEYS = [
    "call_session_id",
    "notification_name",
    "notification_mnemonic",
    "state",
    "direction",
    "employee_id",
    "contact_phone_number",
    "params",
    "data",
    "args",
]
notification_like = st.dictionaries(st.sampled_from(KEYS), json_values, max_size=8)


def check(raw: str | bytes) -> None:
    decoded = decode(raw)
    for n in decoded.notifications:
        assert isinstance(n, Notification)
        assert isinstance(n.call_session_id, int) and n.call_session_id > 0
    for r in decoded.rejections:
        assert isinstance(r.reason, RejectReason)
        assert r.detail
    assert decoded.notifications or decoded.rejections or raw.strip() in (b"[]", "[]")


@settings(deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes(raw: bytes) -> None:
    check(raw)


@settings(deadline=None)
@given(json_values)
def test_arbitrary_json(value: object) -> None:
    check(orjson.dumps(value))


@settings(deadline=None)
@given(st.one_of(notification_like, st.lists(notification_like, max_size=4)))
def test_notification_shaped_json(value: object) -> None:
    check(orjson.dumps(value))


@settings(deadline=None)
@given(st.text(max_size=200))
def test_arbitrary_text(raw: str) -> None:
    check(raw)


# -- the short way and the long way ---------------------------------------------------

#: Values that the long way changes, drops or rejects, next to arbitrary ones.
AWKWARD_VALUES: list[object] = [
    "",
    "null",
    " x",
    "x\n",
    "\u00a0x",
    "x\u2028",
    '"x"',
    '""',
    "{{contact_full_name}}",
    "{x}",
    "12",
    " 12 ",
    "talk",
    "TALK",
    "Ended",
    "dancing",
    "Начало разговора",
    "talk_started",
    2**63 - 1,
    2**63,
    -(2**63),
    -(2**63) - 1,
    2**64,
    0,
    -1,
    1.0,
    1.5,
    2.0**64,
    float("inf"),
    True,
    False,
]
AWKWARD = st.sampled_from(AWKWARD_VALUES)
any_value = st.one_of(
    AWKWARD,
    st.none(),
    st.integers(min_value=-(2**65), max_value=2**65),
    st.floats(),
    st.text(max_size=12),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)
OTHER_KEYS = ["call_session_id", "state", "params", "data", "leg_ids", "secret", "x"]
EVERY_KEY = [*sorted(TEXT_FIELDS | INT_FIELDS), *OTHER_KEYS]
any_item = st.dictionaries(st.sampled_from(EVERY_KEY), any_value, max_size=10)

# What no step of the long way changes: text with nothing to undo, 64-bit whole
# numbers, nulls, and (in other variables) values the long way drops unchecked
# (not floats: the long way checks their range, so they go its way).
clean_text = st.text(min_size=1, max_size=12).filter(
    lambda t: t == t.strip() and t[0] not in '"{' and t != "null"
)
int64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
clean_item = st.fixed_dictionaries(
    {"call_session_id": st.integers(min_value=1, max_value=2**63 - 1)},
    optional={
        **{key: st.none() | int64 | clean_text for key in TEXT_FIELDS},
        **{key: st.none() | int64 for key in INT_FIELDS},
        "state": st.none() | st.sampled_from([s.value for s in CallState] + ["talk", "Ended"]),
        "leg_ids": st.lists(int64, max_size=2),
        "params": st.dictionaries(st.text(max_size=3), int64, max_size=2),
        "x": st.none() | int64 | clean_text | st.booleans(),
    },
)


def same(short: Notification, long: object) -> None:
    assert short == long
    assert isinstance(long, Notification)
    assert list(short.fields.items()) == list(long.fields.items())


#: A notification as the simulator sends it (bench/corepath.py).
TYPICAL: dict[str, object] = {
    "notification_name": "Начало разговора",
    "notification_mnemonic": "talk_started",
    "notification_time": "2026-11-26 10:00:00.000",
    "call_session_id": 10_000_001,
    "direction": "in",
    "virtual_phone_number": "74993720692",
    "contact_phone_number": "79260000001",
    "contact_full_name": None,
    "employee_id": 25,
    "employee_full_name": "Анна Смирнова",
    "leg_ids": [500_002, 500_003],
}


def test_each_awkward_value_in_each_kind_of_variable() -> None:
    short_ways = 0
    for key in ("contact_phone_number", "employee_id", "state", "call_session_id", "x"):
        for value in AWKWARD_VALUES:
            item = {**TYPICAL, key: value}
            short = plain_notification(item, DEFAULT_EVENT_NAMES)
            if short is not None:
                short_ways += 1
                same(short, normalised_notification(item, DEFAULT_EVENT_NAMES))
    # Bare numbers in text variables, 64-bit whole numbers, states, ids and
    # other scalars take the short way; the rest (most of AWKWARD) the long one.
    assert 20 < short_ways < 100


@settings(deadline=None)
@given(clean_item, st.sampled_from(EVERY_KEY), any_value)
def test_short_way_answers_only_as_the_long_way_does(
    item: dict[str, object], key: str, value: object
) -> None:
    item = {**item, key: value}
    short = plain_notification(item, DEFAULT_EVENT_NAMES)
    if short is not None:
        same(short, normalised_notification(item, DEFAULT_EVENT_NAMES))


@settings(deadline=None)
@given(any_item)
def test_short_way_on_anything(item: dict[str, object]) -> None:
    short = plain_notification(item, DEFAULT_EVENT_NAMES)
    if short is not None:
        same(short, normalised_notification(item, DEFAULT_EVENT_NAMES))


@settings(deadline=None)
@given(clean_item)
def test_clean_notifications_take_the_short_way(item: dict[str, object]) -> None:
    short = plain_notification(item, DEFAULT_EVENT_NAMES)
    assert short is not None, item
    same(short, normalised_notification(item, DEFAULT_EVENT_NAMES))
    same(short, decode(orjson.dumps(item)).notifications[0])
