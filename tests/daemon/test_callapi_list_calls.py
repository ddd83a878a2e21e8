"""`list.calls` (docs/callapi.md section 3.4): both start_time formats, RU and
EN leg states, the session state derived from the legs, notification fields."""

from __future__ import annotations

from datetime import datetime

import aiohttp
import pytest

from holdd.callapi import (
    ActiveCall,
    CallApiClient,
    Leg,
    OutcomeUnknown,
    ProtocolError,
    RequestNotSent,
    parse_start_time,
    succeeded,
)
from holdd.config.settings import Secret
from holdd.core.rules import ContactMessage
from holdd.core.states import CallState
from holdd.sim.server import Simulator
from support.callapi import make_client
from support.sim import TOKEN, talking_call

# Every test's log is captured (support/logs.py), as an operator would read it.
pytestmark = [pytest.mark.timeout(30), pytest.mark.usefixtures("captured")]


@pytest.mark.parametrize("language", ["ru", "en"])
@pytest.mark.parametrize("start_time_format", ["documented", "example"])
async def test_list_calls_reads_both_time_formats_and_both_languages(
    sim: Simulator, http: aiohttp.ClientSession, language: str, start_time_format: str
) -> None:
    sim.account.leg_language = language  # type: ignore[assignment]
    sim.account.start_time_format = start_time_format  # type: ignore[assignment]
    client = make_client(sim, http)
    ringing = await sim.start_call(direction="out", employee_id=25, external_id="crm-7")
    talking = await talking_call(sim, contact_phone_number="79261234567")
    held = await talking_call(sim)
    await client.hold_call(held, ContactMessage("media", "2034"))

    calls = {c.call_session_id: c for c in await client.list_calls()}

    assert {c: calls[c].state for c in (ringing, talking, held)} == {
        ringing: CallState.SESSION,
        talking: CallState.TALK,
        held: CallState.HOLD,
    }
    texts = {"ru": ("Разговор", "На удержании"), "en": ("Talking", "On hold")}[language]
    assert [leg.state_text for leg in calls[held].legs] == [texts[1], texts[0]]
    assert [leg.state for leg in calls[held].legs] == [CallState.HOLD, CallState.TALK]
    for call in calls.values():
        sim_call = sim.account.call(call.call_session_id)
        expected = datetime.fromtimestamp(sim_call.start_time)
        assert call.start_time is not None
        assert call.start_time.tzinfo is None
        if start_time_format == "documented":  # whole seconds
            assert call.start_time == expected.replace(microsecond=0)
        else:  # milliseconds
            assert abs((call.start_time - expected).total_seconds()) < 0.001
        assert call.state_known
    out = calls[ringing]
    assert (out.direction, out.external_id) == ("out", "crm-7")
    assert out.fields["employee_id"] == 25
    assert calls[talking].fields["contact_phone_number"] == "79261234567"


async def test_list_calls_filters_by_direction(sim: Simulator, http: aiohttp.ClientSession) -> None:
    client = make_client(sim, http)
    inbound = await sim.start_call(direction="in")
    await sim.start_call(direction="out")
    assert [c.call_session_id for c in await client.list_calls(direction="in")] == [inbound]
    [request] = [r for r in sim.requests if r.method == "list.calls"]
    assert request.params["direction"] == "in"


EXAMPLE = {  # the section 3.4 example
    "call_session_id": 206597836,
    "direction": "in",
    "start_time": "2016-10-19T12:26:48.418",
    "virtual_phone_number": "74951045771",
    "contact_phone_number": "74959268686",
    "external_id": None,
    "tags": [{"tag_id": 456, "tag_name": "Целевой"}],
    "legs": [
        {
            "leg_id": 287866245,
            "calling_phone_number": "74951045771",
            "called_phone_number": "74959268686...9.2.3.3",
            "is_operator": False,
            "employee_id": None,
            "employee_full_name": None,
            "record_call_enabled": True,
            "state": "Разговор",
        },
        {
            "leg_id": 287866221,
            "calling_phone_number": "74959268686",
            "called_phone_number": "79262444393",
            "is_operator": True,
            "employee_id": 2345,
            "employee_full_name": "Тест",
            "record_call_enabled": True,
            "state": "Разговор",
        },
    ],
}


def test_the_reference_example_parses() -> None:
    call = ActiveCall.parse(EXAMPLE)
    assert call is not None
    assert call.call_session_id == 206597836
    assert call.start_time == datetime(2016, 10, 19, 12, 26, 48, 418000)
    assert call.state is CallState.TALK
    assert call.legs[1] == Leg(287866221, "Разговор", CallState.TALK, True, 2345, "Тест")
    assert call.fields == {
        "direction": "in",
        "virtual_phone_number": "74951045771",
        "contact_phone_number": "74959268686",
        "employee_id": 2345,
        "employee_full_name": "Тест",
    }


def leg(state: str, operator: bool = False) -> dict[str, object]:
    return {"leg_id": 1, "state": state, "is_operator": operator}


@pytest.mark.parametrize(
    ("states", "expected", "known"),
    [
        (["На удержании", "Разговор"], CallState.HOLD, True),
        (["ON HOLD", "Talking"], CallState.HOLD, True),
        (["Разговор", "Дозвон"], CallState.TALK, True),
        (["Conversation", "Disconnected"], CallState.TALK, True),
        (["Дозвон", "Разговор операторов"], CallState.OPERATOR_TALK, True),
        (["Перевод вызова"], CallState.DIALING, True),
        (["Разъединено", "Disconnected"], CallState.POST_TALK, True),
        (["На очереди"], CallState.SESSION, True),
        (["Получение факса"], CallState.SESSION, False),
        ([], CallState.SESSION, False),
    ],
)
def test_the_session_state_comes_from_the_legs(
    states: list[str], expected: CallState, known: bool
) -> None:
    call = ActiveCall.parse({"call_session_id": 1, "legs": [leg(s) for s in states]})
    assert call is not None
    assert (call.state, call.state_known) == (expected, known)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2016-10-19 12:26:48", datetime(2016, 10, 19, 12, 26, 48)),
        ("2016-10-19T12:26:48.418", datetime(2016, 10, 19, 12, 26, 48, 418000)),
        ("2016-10-19T12:26:48Z", datetime.fromisoformat("2016-10-19T12:26:48+00:00")),
        ("2016-10-19", None),
        ("19.10.2016 12:26", None),
        (None, None),
        (1476880008, None),
    ],
)
def test_start_time_formats(text: object, expected: datetime | None) -> None:
    assert parse_start_time(text) == expected


def test_entries_without_a_session_id_are_skipped_and_odd_values_tolerated() -> None:
    assert ActiveCall.parse({"direction": "in"}) is None
    assert ActiveCall.parse(["not", "an", "object"]) is None
    call = ActiveCall.parse(
        {"call_session_id": "42", "legs": ["junk", {"state": 5, "employee_id": True}]}
    )
    assert call is not None
    assert call.call_session_id == 42
    [odd] = call.legs
    assert (odd.state_text, odd.state, odd.employee_id, odd.leg_id) == ("", None, None, None)
    assert call.fields == {}


@pytest.mark.parametrize(
    ("data", "ok"),
    [
        ({"success": "true"}, True),
        ({"success": True}, True),
        ({"success": "TRUE"}, True),
        ({"success": "false"}, False),
        ({"success": False}, False),
        ({}, False),
        (None, False),
        ([], False),
    ],
)
def test_success_is_the_string_or_the_boolean(data: object, ok: bool) -> None:
    assert succeeded(data) is ok


async def test_every_list_calls_failure_is_an_error_answer_or_an_unknown_outcome(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    """What a caller catching (CallApiError, OutcomeUnknown) gets, whatever breaks."""
    wrong_path = CallApiClient(http, sim.url + "/v9.9", Secret(TOKEN), 1.0)
    with pytest.raises(ProtocolError) as not_the_api:
        await wrong_path.list_calls()
    assert isinstance(not_the_api.value, OutcomeUnknown)
    async with Simulator() as gone:
        url = gone.callapi_url
    with pytest.raises(RequestNotSent) as refused:
        await CallApiClient(http, url, Secret(TOKEN), 1.0).list_calls()
    assert isinstance(refused.value, OutcomeUnknown)
    assert refused.value.reason == "connect"
