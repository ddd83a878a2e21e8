"""An answer that quotes the key it was sent (holdd-spec section 3: secrets
are never logged). The log's redaction knows the configured key and
password, not the session keys `login.user` hands out; so the client
replaces the request's secrets wherever its answer quotes them, before an
error, a log line or a trace is made of it (holdd.callapi.rpc)."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from holdd.callapi import CallApiError
from holdd.callapi.rpc import read_reply
from holdd.sim.server import Simulator
from support.config import config_text
from support.inproc import ready, running_daemon
from support.sim import LOGIN, PASSWORD, TOKEN, talking_call

pytestmark = pytest.mark.timeout(30)


def login_config(sim: Simulator) -> str:
    """holdd.toml with login + password (session keys) instead of the permanent key."""
    key = f'access_token = "{TOKEN}"'
    text = config_text(sim)
    assert key in text
    return text.replace(key, f'login = "{LOGIN}"\npassword = "{PASSWORD}"')


def session_keys(sim: Simulator) -> list[str]:
    return [
        r.response["result"]["data"]["access_token"]
        for r in sim.requests
        if r.method == "login.user" and "result" in r.response
    ]


@pytest.mark.parametrize(
    ("mnemonic", "code", "event"),
    [("forbidden", None, "hold_failed"), ("quota_frozen", -32010, "callapi_unknown_mnemonic")],
    ids=["known-error", "unknown-mnemonic"],
)
async def test_a_session_key_the_api_quotes_in_an_error_never_reaches_the_log(
    sim: Simulator, tmp_path: Path, mnemonic: str, code: int | None, event: str
) -> None:
    async with running_daemon(tmp_path, login_config(sim)) as (daemon, capture):
        await ready(daemon, sim)
        sim.faults.fail_next(1, mnemonic, code=code, method="hold.call", echo_token=True)
        csid = await talking_call(sim, direction="in", contact_phone_number="79260000701")
        await daemon.wait_for(lambda: csid in daemon.outcomes)
    [key] = session_keys(sim)
    [refused] = [r for r in sim.faults.log if r.what == f"failed:{mnemonic}"]
    assert refused.method == "hold.call"
    # The simulator did quote it: message and data.params.
    [line] = capture.events(event)
    assert line["mnemonic"] == mnemonic
    assert "(access_token ***)" in line["error_message"]
    assert line["params"] == {"received": "***"}
    assert key.encode() not in capture.raw
    assert PASSWORD.encode() not in capture.raw


def error_answer(message: str, **data: object) -> bytes:
    error = {"code": -32001, "message": message, "data": {"mnemonic": "auth_error", **data}}
    return orjson.dumps({"jsonrpc": "2.0", "id": 7, "error": error})


def test_every_quote_of_a_secret_is_replaced_in_the_error() -> None:
    secret = 'pa"ss\\word-9f4c'  # quoted in JSON, it is escaped
    raw = error_answer(
        f"Login failed for password {secret}",
        value=secret,
        params={"sent": [secret, {"again": f"<{secret}>"}], secret: 1},
    )
    assert secret.encode() not in raw  # only its escaped form is in the body
    outcome = read_reply("login.user", 7, 200, raw, (secret,)).outcome
    assert isinstance(outcome, CallApiError)
    assert outcome.message == "Login failed for password ***"
    assert outcome.value == "***"
    assert outcome.params == {"sent": ["***", {"again": "<***>"}], "***": 1}
    assert secret not in str(outcome)
    assert secret not in orjson.dumps(outcome.as_log()).decode()


def test_an_answer_without_a_secret_is_read_as_it_came() -> None:
    raw = error_answer("Login or password is wrong", value="ops")
    outcome = read_reply("login.user", 7, 200, raw, ("not-quoted-anywhere",)).outcome
    assert isinstance(outcome, CallApiError)
    assert (outcome.message, outcome.value) == ("Login or password is wrong", "ops")
