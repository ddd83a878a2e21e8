"""Property tests: the notification parser never raises, and every rejection
says why."""

from __future__ import annotations

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from holdd.core.events import Notification, RejectReason, decode

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
