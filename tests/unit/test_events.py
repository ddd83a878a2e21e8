"""events.decode: raw transport text -> notifications or reasoned rejections."""

from __future__ import annotations

from typing import Any

import orjson

from holdd.core.events import DEFAULT_EVENT_NAMES, EventKind, RejectReason, decode, event_names
from holdd.core.states import CallState

TALK = {
    "notification_name": "Начало разговора",
    "call_session_id": 998677427,
    "direction": "in",
    "contact_phone_number": "79508418541",
    "virtual_phone_number": 78633109653,
    "employee_id": 323409,
    "leg_ids": [1, 2],
}


def one(raw: object) -> Any:
    decoded = decode(orjson.dumps(raw))
    assert len(decoded.notifications) + len(decoded.rejections) == 1
    return (decoded.notifications or decoded.rejections)[0]


def test_talk_started_by_russian_name_numbers_become_text() -> None:
    n = one(TALK)
    assert n.call_session_id == 998677427
    assert n.kind is EventKind.TALK_STARTED
    assert n.fields["virtual_phone_number"] == "78633109653"
    assert n.fields["employee_id"] == 323409
    assert "leg_ids" not in n.fields


def test_every_default_name_is_recognised_in_any_case() -> None:
    for name, kind in DEFAULT_EVENT_NAMES.items():
        n = one({"notification_name": name.upper(), "call_session_id": 1})
        assert n.kind is kind, name


def test_mnemonic_wins_over_name_and_unknown_is_other() -> None:
    n = one(
        {
            "notification_name": "crm-out",
            "notification_mnemonic": "call_finished",
            "call_session_id": 5,
        }
    )
    assert n.kind is EventKind.CALL_FINISHED
    assert one({"notification_name": "crm-out", "call_session_id": 5}).kind is EventKind.OTHER


def test_operator_names_extend_the_table() -> None:
    names = event_names({"crm-talk": "talk_started"})
    decoded = decode(b'{"notification_name":"CRM-Talk","call_session_id":"77"}', names)
    assert decoded.notifications[0].kind is EventKind.TALK_STARTED
    assert decoded.notifications[0].call_session_id == 77


def test_unknown_names_are_recorded_as_sent() -> None:
    batch = [
        {"notification_name": "Мой разговор", "call_session_id": 1},
        {"notification_name": "Начало разговора", "call_session_id": 2},
        {"notification_mnemonic": "crm_talk", "notification_name": "x", "call_session_id": 3},
        {"state": "talk", "call_session_id": 4},  # no name at all: nothing to report
        {"notification_name": "Мой разговор", "call_session_id": "bad"},  # rejected
    ]
    decoded = decode(orjson.dumps(batch))
    assert decoded.unknown_names == ["Мой разговор", "crm_talk"]
    assert [n.call_session_id for n in decoded.notifications] == [1, 2, 3, 4]
    # Mapped in [notify] events, the name is known.
    named = decode(orjson.dumps(batch[0]), event_names({"мой разговор": "talk_started"}))
    assert named.unknown_names == []
    assert named.notifications[0].kind is EventKind.TALK_STARTED


def test_array_and_wrapped_payloads() -> None:
    raw = [
        {"params": TALK},
        {"op": "call", "args": {**TALK, "call_session_id": 2}},
        {"data": {**TALK, "call_session_id": 3}},
    ]
    decoded = decode(orjson.dumps(raw))
    assert [n.call_session_id for n in decoded.notifications] == [998677427, 2, 3]
    assert not decoded.rejections


def test_explicit_state_is_honoured() -> None:
    n = one({"call_session_id": 9, "state": "talk"})
    assert n.state is CallState.TALK
    assert one({"call_session_id": 9, "state": "Ended"}).state is CallState.ENDED
    r = one({"call_session_id": 9, "state": "dancing"})
    assert r.reason is RejectReason.BAD_STATE


def test_template_quirks_doubled_quotes_and_unsubstituted() -> None:
    n = one({**TALK, "contact_full_name": '"Иван"', "scenario_name": "{{scenario_name}}"})
    assert n.fields["contact_full_name"] == "Иван"
    assert n.fields["scenario_name"] is None


def test_rejections_have_reasons() -> None:
    cases = {
        b"not json": RejectReason.NOT_JSON,
        b"[1]": RejectReason.NOT_OBJECT,
        b'{"notification_name": "x"}': RejectReason.MISSING_CALL_SESSION_ID,
        b'{"call_session_id": "abc"}': RejectReason.BAD_CALL_SESSION_ID,
        b'{"call_session_id": -4}': RejectReason.BAD_CALL_SESSION_ID,
        b'{"call_session_id": true}': RejectReason.BAD_CALL_SESSION_ID,
        b'{"call_session_id": 1, "direction": {"a": 1}}': RejectReason.BAD_FIELD_TYPE,
        b'{"call_session_id": 1, "employee_id": "x"}': RejectReason.BAD_FIELD_TYPE,
        b"[" * 5000 + b"]" * 5000: RejectReason.NOT_JSON,
        b" " * (300 * 1024): RejectReason.TOO_LARGE,
    }
    for raw, reason in cases.items():
        decoded = decode(raw)
        assert not decoded.notifications, raw[:40]
        assert [r.reason for r in decoded.rejections] == [reason], raw[:40]
        assert decoded.rejections[0].detail


def test_one_bad_item_does_not_lose_the_good_ones() -> None:
    decoded = decode(orjson.dumps([TALK, {"x": 1}, {**TALK, "call_session_id": 4}]))
    assert [n.call_session_id for n in decoded.notifications] == [998677427, 4]
    assert [r.reason for r in decoded.rejections] == [RejectReason.MISSING_CALL_SESSION_ID]
