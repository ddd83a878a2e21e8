"""Credentials (docs/callapi.md section 2): session keys from login.user,
renewed before expire_at and when rejected; a rejected permanent key is one
alert, never a loop; no password, key or session key in any log line."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from holdd.callapi import TokenRejected
from holdd.callapi.auth import SessionKey
from holdd.config.settings import LoginPassword, Secret
from holdd.sim.server import Simulator
from support.callapi import Harness, decision, make_client
from support.logs import LogCapture
from support.sim import LOGIN, PASSWORD, TOKEN, methods, talking_call

# Every test's log is captured (support/logs.py), as an operator would read it.
pytestmark = [pytest.mark.timeout(60), pytest.mark.usefixtures("captured")]

CREDENTIALS = LoginPassword(LOGIN, Secret(PASSWORD))


def session_keys(sim: Simulator) -> list[str]:
    """Every session key the account handed out."""
    return [
        r.response["result"]["data"]["access_token"]
        for r in sim.requests
        if r.method == "login.user" and "result" in r.response
    ]


async def test_an_expired_session_key_is_renewed_and_no_secret_is_ever_logged(
    sim: Simulator, http: aiohttp.ClientSession, captured: LogCapture
) -> None:
    """Acceptance 5."""
    harness = Harness(make_client(sim, http, CREDENTIALS))
    first, second = await talking_call(sim), await talking_call(sim)

    assert (await harness.hold(decision(first))).result == "held"
    assert sim.faults.expire_sessions() == 1  # the hour is over
    assert (await harness.hold(decision(second))).result == "held"

    assert methods(sim) == ["login.user", "hold.call", "hold.call", "login.user", "hold.call"]
    rejected = [r for r in sim.requests if r.method == "hold.call" and "error" in r.response]
    assert [r.response["error"]["data"]["mnemonic"] for r in rejected] == ["access_token_invalid"]
    logins = captured.events("callapi_login")
    assert [(e["reason"], e["user"]) for e in logins] == [("first", LOGIN), ("rejected", LOGIN)]
    assert logins[1]["call_session_id"] == second and logins[1]["rule"] == "vip"
    assert harness.client.credentials_ok
    # Two keys were used; neither they nor the password reached the log.
    keys = session_keys(sim)
    assert len(keys) == 2
    assert {r.params["access_token"] for r in sim.requests if r.method == "hold.call"} == set(keys)
    for secret in (PASSWORD, *keys):
        assert secret.encode() not in captured.raw
    assert len(captured.events()) >= 5


async def test_a_session_key_is_renewed_before_expire_at(
    http: aiohttp.ClientSession, captured: LogCapture
) -> None:
    """One clock for the account and the client: 59 minutes later, log in first."""
    now = [1_800_000_000.0]
    async with Simulator(users={LOGIN: PASSWORD}, clock=lambda: now[0]) as sim:
        client = make_client(sim, http, CREDENTIALS, clock=lambda: now[0])
        await client.list_calls()
        now[0] += 3600 - 61  # 61 s before expire_at: still good
        await client.list_calls()
        now[0] += 2  # 59 s before: inside the 60 s margin
        await client.list_calls()

    assert methods(sim) == ["login.user", "list.calls", "list.calls", "login.user", "list.calls"]
    assert all("result" in r.response for r in sim.requests)  # never rejected
    assert [e["reason"] for e in captured.events("callapi_login")] == ["first", "expiring"]


async def test_concurrent_requests_share_one_login(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    client = make_client(sim, http, CREDENTIALS)
    async with asyncio.TaskGroup() as tg:
        for _ in range(5):
            tg.create_task(client.list_calls())
    assert methods(sim).count("login.user") == 1
    assert methods(sim).count("list.calls") == 5


async def test_a_rejected_permanent_key_is_one_alert_not_a_loop(
    sim: Simulator, http: aiohttp.ClientSession, captured: LogCapture
) -> None:
    harness = Harness(make_client(sim, http))
    first, second = await talking_call(sim), await talking_call(sim)
    sim.account.block_token(TOKEN)

    one = await harness.hold(decision(first))
    two = await harness.hold(decision(second))

    assert [(o.result, o.mnemonic, o.attempts) for o in (one, two)] == [
        ("failed", "access_token_blocked", 1),
        ("failed", "access_token_blocked", 1),
    ]
    assert methods(sim) == ["hold.call", "hold.call"]
    client = harness.client
    assert not client.credentials_ok
    assert client.credentials_problem is not None
    assert client.credentials_problem.startswith("access_token_blocked: ")
    [alert] = captured.events("callapi_credentials_rejected")
    assert (alert["level"], alert["mnemonic"], alert["credentials"]) == (
        "error",
        "access_token_blocked",
        "access_token",
    )
    assert "issue a new key" in alert["hint"]

    # Someone unblocks the key: the next answer clears the alert.
    sim.account.tokens[TOKEN].blocked = False
    await client.list_calls()
    assert client.credentials_ok and client.credentials_problem is None
    assert captured.events("callapi_credentials_accepted")
    assert TOKEN.encode() not in captured.raw


async def test_a_wrong_password_is_an_alert(
    sim: Simulator, http: aiohttp.ClientSession, captured: LogCapture
) -> None:
    harness = Harness(make_client(sim, http, LoginPassword(LOGIN, Secret("not-the-password"))))
    csid = await talking_call(sim)

    outcome = await harness.hold(decision(csid))

    assert (outcome.result, outcome.mnemonic, outcome.attempts) == ("failed", "auth_error", 1)
    assert methods(sim) == ["login.user"]
    assert not harness.client.credentials_ok
    [alert] = captured.events("callapi_credentials_rejected")
    assert (alert["mnemonic"], alert["credentials"]) == ("auth_error", "login")
    assert b"not-the-password" not in captured.raw


async def test_a_fresh_session_key_that_is_refused_is_an_alert_not_a_loop(
    sim: Simulator, http: aiohttp.ClientSession, captured: LogCapture
) -> None:
    harness = Harness(make_client(sim, http, CREDENTIALS))
    csid = await talking_call(sim)
    sim.faults.fail_next(10, "access_token_invalid", method="hold.call")

    outcome = await harness.hold(decision(csid))

    assert (outcome.result, outcome.mnemonic) == ("failed", "access_token_invalid")
    assert methods(sim) == ["login.user", "hold.call", "login.user", "hold.call"]
    assert not harness.client.credentials_ok
    assert len(captured.events("callapi_credentials_rejected")) == 1


async def test_a_login_that_times_out_means_the_request_was_not_sent(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    harness = Harness(make_client(sim, http, CREDENTIALS, timeout=0.2))
    csid = await talking_call(sim)
    sim.faults.delay(0.5, method="login.user")

    outcome = await harness.hold(decision(csid))

    # No hold.call went out before the login worked: nothing to check.
    assert (outcome.result, outcome.attempts) == ("held", 1)
    assert methods(sim) == ["login.user", "login.user", "hold.call"]
    assert "list.calls" not in methods(sim)
    assert harness.retries == {"login_timeout": 1}


async def test_logout_deletes_the_session_key(sim: Simulator, http: aiohttp.ClientSession) -> None:
    client = make_client(sim, http, CREDENTIALS)
    await client.list_calls()
    [key] = session_keys(sim)
    await client.logout()
    assert key not in sim.account.sessions
    assert methods(sim)[-1] == "logout.user"
    with pytest.raises(TokenRejected):
        await make_client(sim, http, Secret(key)).list_calls()
    await client.list_calls()  # logs in again
    assert methods(sim).count("login.user") == 2


def test_session_keys_are_renewed_half_way_through_a_short_life() -> None:
    key = SessionKey(Secret("2fRN4g21-session"), expire_at=1030.0, obtained_at=1000.0)
    assert key.refresh_at(60) == 1015.0
    long = SessionKey(Secret("2fRN4g21-session"), expire_at=4600.0, obtained_at=1000.0)
    assert long.refresh_at(60) == 4540.0
    assert "2fRN4g21" not in repr(key)
