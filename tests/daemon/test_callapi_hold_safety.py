"""No call is ever held twice, no retry storms: the runner against a
simulator that fails, drops, delays and answers 500 (over real sockets)."""

from __future__ import annotations

import asyncio
import itertools

import aiohttp
import pytest

from holdd.callapi import CallApiClient, CallApiError, InvalidState, make_error
from holdd.config.settings import Secret
from holdd.core.rules import ContactMessage
from holdd.core.states import CallState
from holdd.sim.server import Simulator
from support.callapi import Harness, VirtualTime, decision, fast_backoff, make_client
from support.logs import LogCapture
from support.sim import methods, talking_call

# Every test's log is captured (support/logs.py), as an operator would read it.
pytestmark = [pytest.mark.timeout(60), pytest.mark.usefixtures("captured")]


async def test_http_500_after_the_hold_applied_holds_exactly_once(
    sim: Simulator, http: aiohttp.ClientSession, captured: LogCapture
) -> None:
    """Acceptance 2: the account applies the hold, the client gets an HTML 500."""
    harness = Harness(make_client(sim, http))
    csid = await talking_call(sim)
    sim.faults.http_500(1, after_apply=True, method="hold.call")

    outcome = await harness.hold(decision(csid))

    assert (outcome.result, outcome.confirmed_by, outcome.attempts) == ("held", "list_calls", 1)
    call = sim.account.call(csid)
    assert call.hold_count == 1
    assert call.state is CallState.HOLD
    # The unknown outcome was checked, never simply sent again; no unhold ever.
    assert methods(sim) == ["hold.call", "list.calls"]
    assert [r.what for r in sim.faults.log] == ["http_500_after_apply", "passed"]
    assert "unhold.call" not in methods(sim)
    [confirmed] = captured.events("hold_confirmed_by_list_calls")
    assert (confirmed["call_session_id"], confirmed["rule"]) == (csid, "vip")
    assert harness.client.stats.unknown_outcomes == {("hold.call", "http_500"): 1}
    assert harness.actions == {("held", ""): 1}


async def test_http_500_before_applying_is_checked_then_sent_again(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    harness = Harness(make_client(sim, http))
    csid = await talking_call(sim)
    sim.faults.http_500(1, after_apply=False, method="hold.call")

    outcome = await harness.hold(decision(csid))

    assert (outcome.result, outcome.confirmed_by, outcome.attempts) == ("held", None, 2)
    assert methods(sim) == ["hold.call", "list.calls", "hold.call"]
    assert sim.account.call(csid).hold_count == 1


@pytest.mark.parametrize("after_apply", [True, False], ids=["after_apply", "before_apply"])
async def test_a_dropped_connection_is_settled_with_list_calls(
    sim: Simulator, http: aiohttp.ClientSession, after_apply: bool
) -> None:
    harness = Harness(make_client(sim, http))
    csid = await talking_call(sim)
    sim.faults.drop_connection(1, after_apply=after_apply, method="hold.call")

    outcome = await harness.hold(decision(csid))

    assert outcome.result == "held"
    assert sim.account.call(csid).hold_count == 1
    if after_apply:
        assert outcome.confirmed_by == "list_calls"
        assert methods(sim) == ["hold.call", "list.calls"]
    else:
        assert outcome.confirmed_by is None
        assert methods(sim) == ["hold.call", "list.calls", "hold.call"]
    assert harness.client.stats.unknown_outcomes == {("hold.call", "connection"): 1}


async def test_a_timeout_whose_hold_took_is_confirmed_not_resent(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    """The API applies the hold but answers after the client gave up."""
    harness = Harness(make_client(sim, http, timeout=0.2))
    csid = await talking_call(sim)
    sim.faults.delay(0.6, method="hold.call", after_apply=True)

    outcome = await harness.hold(decision(csid))

    assert (outcome.result, outcome.confirmed_by) == ("held", "list_calls")
    assert methods(sim) == ["hold.call", "list.calls"]
    assert sim.account.call(csid).hold_count == 1
    assert harness.client.stats.unknown_outcomes == {("hold.call", "timeout"): 1}


async def test_invalid_state_after_an_unknown_outcome_means_the_hold_took(
    sim: Simulator, http: aiohttp.ClientSession, captured: LogCapture
) -> None:
    """The lost attempt was still being applied while list.calls said Talk."""
    harness = Harness(make_client(sim, http))
    csid = await talking_call(sim)
    sim.faults.http_500(1, after_apply=False, method="hold.call")
    sim.faults.fail_next(1, "invalid_state", method="hold.call")

    outcome = await harness.hold(decision(csid))

    assert (outcome.result, outcome.confirmed_by, outcome.attempts) == (
        "held",
        "invalid_state",
        2,
    )
    assert methods(sim) == ["hold.call", "list.calls", "hold.call"]
    assert captured.events("hold_confirmed_by_invalid_state")
    assert not captured.events("hold_failed")


async def test_two_internal_errors_then_success_back_off_with_growing_gaps(
    sim: Simulator, http: aiohttp.ClientSession, captured: LogCapture
) -> None:
    """Acceptance 3: exactly one successful hold.call; the gaps grow (0.1 s, then 0.2 s)."""
    harness = Harness(make_client(sim, http), backoff=fast_backoff(0.1))
    csid = await talking_call(sim)
    sim.faults.fail_next(2, "internal_error", method="hold.call")

    outcome = await harness.hold(decision(csid))

    assert (outcome.result, outcome.attempts) == ("held", 3)
    holds = sim.faults.attempts("hold.call")
    assert [r.what for r in holds] == ["failed:internal_error", "failed:internal_error", "passed"]
    # internal_error is an answer (not applied): no list.calls check.
    assert methods(sim) == ["hold.call"] * 3
    successes = [r for r in sim.requests if r.method == "hold.call" and "result" in r.response]
    assert len(successes) == 1
    assert sim.account.call(csid).hold_count == 1
    first_gap = holds[1].at - holds[0].at
    second_gap = holds[2].at - holds[1].at
    assert first_gap >= 0.1 * 0.95
    assert second_gap >= 0.2 * 0.95
    assert second_gap > first_gap
    retrying = captured.events("hold_retrying")
    assert [(e["reason"], e["delay"]) for e in retrying] == [
        ("internal_error", 0.1),
        ("internal_error", 0.2),
    ]
    assert all(e["rule"] == "vip" and e["call_session_id"] == csid for e in retrying)
    assert harness.retries == {"internal_error": 2}


async def test_retries_stop_at_the_action_deadline(
    sim: Simulator, http: aiohttp.ClientSession, captured: LogCapture
) -> None:
    """An API that keeps failing gets a bounded number of requests, then an ERROR."""
    clock = VirtualTime(0.0)  # the deadline counts backoff, not the machine's speed
    client = make_client(sim, http, monotonic=clock.monotonic, sleep=clock.sleep)
    harness = Harness(
        client,
        deadline=0.5,
        backoff=fast_backoff(0.05),
        monotonic=clock.monotonic,
        sleep=clock.sleep,
    )
    csid = await talking_call(sim)
    sim.faults.fail_next(100, "internal_error", method="hold.call")

    outcome = await harness.hold(decision(csid))

    assert (outcome.result, outcome.mnemonic) == ("failed", "internal_error")
    # 0.05 + 0.1 + 0.2 fit in 0.5 s; 0.4 more does not.
    assert outcome.attempts == 4
    assert len(sim.faults.attempts("hold.call")) == 4
    assert [d for d in clock.sleeps if d > 0] == [0.05, 0.1, 0.2]
    [failed] = captured.events("hold_failed")
    assert failed["level"] == "error" and failed["mnemonic"] == "internal_error"


async def test_an_unknown_outcome_that_cannot_be_settled_is_reported_not_resent(
    sim: Simulator, http: aiohttp.ClientSession, captured: LogCapture
) -> None:
    harness = Harness(make_client(sim, http), deadline=0.5, backoff=fast_backoff(0.05))
    csid = await talking_call(sim)
    sim.faults.http_500(1, after_apply=True, method="hold.call")
    sim.faults.http_500(100, method="list.calls")

    outcome = await harness.hold(decision(csid))

    assert outcome.result == "unknown"
    assert methods(sim).count("hold.call") == 1
    [line] = captured.events("hold_outcome_unknown")
    assert (line["level"], line["call_session_id"], line["rule"]) == ("error", csid, "vip")
    assert harness.result_of(csid, "vip") == "unknown"


async def test_a_first_invalid_state_is_looked_at_once_and_never_looped(
    sim: Simulator, http: aiohttp.ClientSession, captured: LogCapture
) -> None:
    """The call is still ringing (SESSION): one hold.call, one list.calls, done."""
    harness = Harness(make_client(sim, http))
    csid = await sim.start_call()

    outcome = await harness.hold(decision(csid))

    assert (outcome.result, outcome.mnemonic, outcome.attempts) == ("failed", "invalid_state", 1)
    assert methods(sim) == ["hold.call", "list.calls"]
    [line] = captured.events("hold_failed")
    assert (line["level"], line["mnemonic"], line["call_state"]) == (
        "warning",
        "invalid_state",
        "SESSION",
    )


async def test_invalid_state_twice_while_listed_talking_stops_after_one_more_try(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    harness = Harness(make_client(sim, http))
    csid = await talking_call(sim)
    sim.faults.fail_next(5, "invalid_state", method="hold.call")

    outcome = await harness.hold(decision(csid))

    assert (outcome.result, outcome.mnemonic, outcome.attempts) == ("failed", "invalid_state", 2)
    assert methods(sim) == ["hold.call", "list.calls", "hold.call"]


async def test_an_error_answer_that_was_applied_anyway_counts_as_held(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    """internal_error, yet the call ends up on hold (here: applied during the
    backoff): the next attempt's invalid_state plus list.calls say it took."""
    csid = await talking_call(sim)
    bystander = make_client(sim, http)
    applied: list[float] = []

    async def sleep(delay: float) -> None:
        if not applied:
            applied.append(delay)
            await bystander.hold_call(csid, ContactMessage("media", "2034"))
        await asyncio.sleep(delay)

    harness = Harness(make_client(sim, http), sleep=sleep)
    sim.faults.fail_next(1, "internal_error", method="hold.call")

    outcome = await harness.hold(decision(csid))

    assert (outcome.result, outcome.confirmed_by, outcome.attempts) == ("held", "list_calls", 2)
    assert methods(sim) == ["hold.call", "hold.call", "hold.call", "list.calls"]
    assert sim.account.call(csid).hold_count == 1


async def test_a_call_someone_else_holds_is_not_reported_as_ours(
    sim: Simulator, http: aiohttp.ClientSession, captured: LogCapture
) -> None:
    csid = await talking_call(sim)
    await make_client(sim, http).hold_call(csid, ContactMessage("media", "2561"))
    harness = Harness(make_client(sim, http))

    outcome = await harness.hold(decision(csid))

    assert (outcome.result, outcome.mnemonic, outcome.attempts) == ("failed", "invalid_state", 1)
    [line] = captured.events("hold_failed")
    assert line["call_state"] == "HOLD"
    assert sim.account.call(csid).held_message is not None
    assert sim.account.call(csid).held_message.value == "2561"  # type: ignore[union-attr]


async def test_a_call_that_ended_is_dropped(
    sim: Simulator, http: aiohttp.ClientSession, captured: LogCapture
) -> None:
    harness = Harness(make_client(sim, http))
    csid = await talking_call(sim)
    await sim.end_call(csid)

    outcome = await harness.hold(decision(csid))

    assert (outcome.result, outcome.mnemonic) == ("call_gone", "call_session_not_found")
    assert methods(sim) == ["hold.call"]
    [gone] = captured.events("hold_call_gone")
    assert gone["call_session_id"] == csid


async def test_a_refused_connection_is_retried_without_a_check(
    http: aiohttp.ClientSession, captured: LogCapture
) -> None:
    """Nothing listens: the request never left, so it may simply be sent again."""
    async with Simulator() as gone:
        url = gone.callapi_url
    client = CallApiClient(http, url, Secret("k" * 12), 1.0)
    harness = Harness(client, deadline=0.4, backoff=fast_backoff(0.05))

    outcome = await harness.hold(decision(23465781))

    assert (outcome.result, outcome.attempts) == ("failed", 0)
    # Retried until the deadline: how many attempts fit depends on the machine.
    assert client.stats.not_sent[("hold.call", "connect")] >= 2
    assert all(e["next_method"] == "hold.call" for e in captured.events("hold_retrying"))
    assert {e["reason"] for e in captured.events("hold_retrying")} == {"connect"}


async def test_never_more_than_one_request_in_flight_for_the_same_call(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    """Slow answers; three requests for one call, one for another, all at once."""
    client = make_client(sim, http)
    busy, other = await talking_call(sim), await talking_call(sim)
    sim.faults.delay(0.15, n=4, after_apply=True)
    message = ContactMessage("media", "2034")

    async def hold(csid: int) -> str:
        try:
            await client.hold_call(csid, message)
        except CallApiError as exc:
            return exc.mnemonic
        return "held"

    async with asyncio.TaskGroup() as tg:
        tasks = [tg.create_task(hold(busy)) for _ in range(3)]
        tasks.append(tg.create_task(hold(other)))
    assert sorted(t.result() for t in tasks) == ["held", "held", "invalid_state", "invalid_state"]

    for csid in (busy, other):
        assert sim.account.call(csid).hold_count == 1
    spans = [(r.at, r.done_at, r.call_session_id) for r in sim.faults.log]
    same = sorted((start, end) for start, end, c in spans if c == busy)
    assert len(same) == 3
    for (_, end), (start, _) in itertools.pairwise(same):
        assert end is not None and start >= end  # one finished before the next began
    # ...while the other call's request ran alongside (the lock is per call).
    [(o_start, o_end)] = [(s, e) for s, e, c in spans if c == other]
    assert o_end is not None and o_start < same[0][1]  # type: ignore[operator]


async def test_two_rules_for_one_call_are_serialised_and_the_second_is_refused(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    harness = Harness(make_client(sim, http))
    csid = await talking_call(sim)
    sim.faults.delay(0.1, n=2, method="hold.call", after_apply=True)

    harness.submit(decision(csid, rule="first"))
    harness.submit(decision(csid, rule="second"))
    outcomes = await harness.outcomes.wait(2)

    assert sorted(o.result for o in outcomes) == ["failed", "held"]
    assert sim.account.call(csid).hold_count == 1
    holds = sim.faults.attempts("hold.call")
    assert holds[1].at >= holds[0].done_at  # type: ignore[operator]


def test_invalid_state_is_a_typed_error() -> None:
    raw = {"code": -32004, "message": "x", "data": {"mnemonic": "invalid_state"}}
    error = make_error("hold.call", raw)
    assert isinstance(error, InvalidState)
    assert error.policy.value == "check-state"
