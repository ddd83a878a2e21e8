"""Numbers outside the signed 64-bit range (core/events.py, callapi/rpc.py).

In a notification, any field holdd reads rejects it with the reason
`number_out_of_range`, the field named in the detail. In an answer, the
reply names every such field (`Reply.out_of_range`) and the readers never
use the number: a `list.calls` entry with such a `call_session_id` is
skipped, such a limit is taken as not given."""

from __future__ import annotations

import orjson
import pytest

from holdd.callapi.answers import ActiveCall, Answer, Limits
from holdd.callapi.rpc import read_reply
from holdd.core.events import RejectReason, beyond_int64, decode

TALK = {"notification_name": "Начало разговора", "direction": "in"}
MAX = 2**63 - 1


def raw(fields: dict[str, object], extra: str = "") -> bytes:
    """A talk notification; `extra` is spliced in as written, for numbers
    orjson will not write (wider than 64 bits) or would write otherwise."""
    text = orjson.dumps({**TALK, **fields}).decode()
    return (text[:-1] + ", " + extra + "}").encode() if extra else text.encode()


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ('"call_session_id": 9223372036854775808', "call_session_id"),
        ('"call_session_id": "9223372036854775808"', "call_session_id"),
        ('"call_session_id": 123456789012345678901234567890', "call_session_id"),
        ('"call_session_id": 1e19', "call_session_id"),
        ('"call_session_id": 7, "employee_id": 9223372036854775808', "employee_id"),
        ('"call_session_id": 7, "employee_id": "00099999999999999999999"', "employee_id"),
        ('"call_session_id": 7, "leg_id": -9223372036854775809', "leg_id"),
        ('"call_session_id": 7, "contact_id": 1e30', "contact_id"),
        # A phone number sent bare and too wide: its digits would not be the sent ones.
        (
            '"call_session_id": 7, "contact_phone_number": 79260000000000000000000',
            "contact_phone_number",
        ),
        # Any other scalar variable (kept for TTS placeholders).
        ('"call_session_id": 7, "communication_id": 18446744073709551615', "communication_id"),
        (
            '"params": {"call_session_id": 8, "talk_time_duration": 1e20}',
            "talk_time_duration",
        ),
    ],
)
def test_a_number_beyond_64_bits_in_any_field_rejects_the_notification(
    extra: str, field: str
) -> None:
    decoded = decode(raw({}, extra))
    assert not decoded.notifications
    [rejection] = decoded.rejections
    assert rejection.reason is RejectReason.NUMBER_OUT_OF_RANGE
    assert rejection.detail.startswith(f"{field} ")
    assert rejection.detail.endswith("is outside the signed 64-bit range")


def test_the_edges_of_the_range_are_accepted() -> None:
    fields = {"call_session_id": MAX, "employee_id": -(2**63), "leg_id": str(MAX), "x": MAX}
    [n] = decode(raw(fields)).notifications
    assert n.call_session_id == MAX
    assert (n.fields["employee_id"], n.fields["leg_id"], n.fields["x"]) == (-(2**63), MAX, MAX)


def test_structured_variables_are_not_read() -> None:
    decoded = decode(raw({"call_session_id": 7}, '"leg_ids": [18446744073709551615, 1e30]'))
    assert [n.call_session_id for n in decoded.notifications] == [7]
    assert "leg_ids" not in decoded.notifications[0].fields


def test_beyond_int64() -> None:
    assert not beyond_int64(MAX) and beyond_int64(MAX + 1)
    assert not beyond_int64(-(2**63)) and beyond_int64(-(2**63) - 1)
    assert beyond_int64(9.3e18) and not beyond_int64(9.2e18) and not beyond_int64(1.5)
    assert beyond_int64(-(2.0**63)) and not beyond_int64(-9.2e18)
    assert beyond_int64(float("inf"))
    assert not beyond_int64(True)
    assert not beyond_int64("99999999999999999999")  # text, unless read as digits
    assert beyond_int64("99999999999999999999", digits=True)
    assert not beyond_int64("0000000000000000000000042", digits=True)


LISTING = (
    b'{"jsonrpc": "2.0", "id": 5, "result": {"data": ['
    b'{"call_session_id": 9223372036854775808, "legs": []},'
    b'{"call_session_id": 41, "legs": [{"leg_id": 1e30, "employee_id": 18446744073709551615,'
    + ' "state": "Разговор", "is_operator": true}]}],'.encode()
    + b' "metadata": {"limits": {"minute_limit": 100, "minute_remaining": 0,'
    b' "minute_reset": 123456789012345678901234567890, "day_remaining": 50}}}}'
)


def test_an_answer_names_every_number_beyond_64_bits_and_none_is_used() -> None:
    reply = read_reply("list.calls", 5, 200, LISTING)
    assert reply.out_of_range == (
        "result.data[].call_session_id",
        "result.data[].legs[].employee_id",
        "result.data[].legs[].leg_id",
        "result.metadata.limits.minute_reset",
    )
    answer = reply.outcome
    assert isinstance(answer, Answer)
    # A minute_reset of ages is no limit: taken as not given, not as a wait.
    assert answer.limits == Limits(minute_limit=100, minute_remaining=0, day_remaining=50)
    entries = [ActiveCall.parse(item) for item in answer.data]
    assert entries[0] is None
    assert entries[1] is not None
    [leg] = entries[1].legs
    assert (leg.leg_id, leg.employee_id) == (None, None)


def test_an_answer_without_wide_numbers_names_none() -> None:
    body = b'{"jsonrpc": "2.0", "id": 5, "result": {"data": {"success": "true"}}}'
    assert read_reply("hold.call", 5, 200, body).out_of_range == ()
