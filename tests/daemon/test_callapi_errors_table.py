"""Every error mnemonic of the reference: docs/errors.md and the code's table
agree, and the runner does, against the simulator, what the table says."""

from __future__ import annotations

import re
from pathlib import Path

import aiohttp
import pytest

from holdd.callapi.errors import CODE_GROUP_POLICY, ERROR_KINDS, Policy, classify
from holdd.config.settings import LoginPassword, Secret
from holdd.core.states import CallState
from holdd.sim.server import Simulator
from support.callapi import Harness, decision, make_client
from support.logs import LogCapture
from support.sim import LOGIN, PASSWORD, methods, talking_call

# Every test's log is captured (support/logs.py), as an operator would read it.
pytestmark = [pytest.mark.timeout(60), pytest.mark.usefixtures("captured")]

DOC = Path(__file__).resolve().parents[2] / "docs" / "errors.md"

#: Copied from docs/callapi.md: section 5 common errors (both -32099 spellings
#: of section 1), section 5 "also seen in per-method lists", section 3.2
#: hold.call (section 3.3 unhold.call adds invalid_state only).
REFERENCE = {
    "parse_error": {-32700},
    "invalid_request": {-32600},
    "method_not_found": {-32601},
    "data_type_error": {-32602},
    "required_parameter_missed": {-32602},
    "invalid_parameter_value": {-32602},
    "unexpected_parameters": {-32602},
    "call_session_not_found": {-32602},
    "access_token_expired": {-32001},
    "access_token_blocked": {-32001},
    "access_token_invalid": {-32001},
    "auth_error": {-32001},
    "ip_not_whitelisted": {-32003},
    "forbidden": {-32003},
    "component_disabled": {-32008},
    "account_inactive": {-32009},
    "limit_exceeded": {-32029},
    "internal_error": {-32603},
    "batch_opreations_not_supported": {-32099},
    "batch_operations_not_supported": {-32099},
    "notifications_not_supported": {-32099},
    "invalid_state": {-32004},
    "invalid_parameters_combination": {-32602},
    "character_encoding_not_allowed": {-32602},
    "media_file_not_found": {-32602},
    "tts_text_exceeded": {-32602},
    "virtual_phone_number_not_found": {-32007},
    "scenario_not_found": {-32602, -32007},
    "employee_not_found": {-32602},
    "no_active_phone_number": {-32602},
    "own_virtual_phone_number_not_allowed": {-32602},
    "contact_in_blacklist": {-32002, -32602},
    "tag_not_found": {-32602},
    "duplicate_tag": {-32602},
    "leg_not_found": {-32602},
    "coach_not_found": {-32602},
    "record_already_started": {-32602},
    "record_already_stopped": {-32602},
    "duplicate_contact": {-32602},
    "talk_option_not_found": {-32602},
}

_ROW = re.compile(r"^\| `(?P<mnemonic>[a-z_]+)` \| (?P<codes>[-\d, ]+) \| (?P<policy>[a-z-]+) \|")


def doc_table() -> dict[str, tuple[frozenset[int], str]]:
    """mnemonic -> (codes, policy) of the "JSON-RPC errors" table of docs/errors.md."""
    section = DOC.read_text(encoding="utf-8").split("## JSON-RPC errors", 1)[1].split("\n## ", 1)[0]
    rows: dict[str, tuple[frozenset[int], str]] = {}
    for line in section.splitlines():
        m = _ROW.match(line)
        if m:
            assert m["mnemonic"] not in rows, f"{m['mnemonic']} twice in docs/errors.md"
            codes = frozenset(int(c) for c in m["codes"].split(","))
            rows[m["mnemonic"]] = (codes, m["policy"])
    return rows


def test_the_docs_table_and_the_code_table_agree() -> None:
    in_code = {m: (frozenset(k.codes), k.policy.value) for m, k in ERROR_KINDS.items()}
    assert doc_table() == in_code


def test_the_table_has_every_mnemonic_of_the_reference() -> None:
    assert {m: set(k.codes) for m, k in ERROR_KINDS.items()} == REFERENCE
    assert all(k.hint and k.known for k in ERROR_KINDS.values())


def test_unknown_pairs_fall_back_to_their_code_group() -> None:
    assert classify(-32603, "kernel_panic").policy is Policy.RETRY
    assert classify(-32004, "wrong_phase").policy is Policy.CHECK_STATE
    assert classify(-32001, "token_revoked").alert
    assert classify(-32602, "brand_new").policy is Policy.DO_NOT_RETRY
    # A known mnemonic with a code the reference does not give is not trusted.
    odd = classify(-32603, "media_file_not_found")
    assert (odd.known, odd.policy) == (False, Policy.RETRY)
    assert set(CODE_GROUP_POLICY.values()) <= set(Policy)


ROWS = [(m, code) for m, kind in ERROR_KINDS.items() for code in kind.codes]


@pytest.mark.parametrize(("mnemonic", "code"), ROWS, ids=[f"{m}/{c}" for m, c in ROWS])
async def test_the_runner_does_what_the_table_says(
    sim: Simulator,
    http: aiohttp.ClientSession,
    captured: LogCapture,
    mnemonic: str,
    code: int,
) -> None:
    """One hold.call answered `mnemonic` (a permanent key), then the real account."""
    kind = ERROR_KINDS[mnemonic]
    harness = Harness(make_client(sim, http))
    csid = await talking_call(sim)
    limits = {"minute_reset": 1} if kind.policy is Policy.RATE_LIMIT else None
    sim.faults.fail_next(1, mnemonic, code=code, method="hold.call", limits=limits)

    outcome = await harness.hold(decision(csid))

    holds = sim.faults.attempts("hold.call")
    call = sim.account.call(csid)
    if kind.policy in (Policy.RETRY, Policy.RATE_LIMIT):
        assert outcome.result == "held"
        assert [r.what for r in holds] == [f"failed:{mnemonic}", "passed"]
        assert call.hold_count == 1
        if kind.policy is Policy.RATE_LIMIT:
            assert holds[1].at - holds[0].done_at >= 1.0  # type: ignore[operator]
    elif kind.policy is Policy.CHECK_STATE:
        # The call is talking after all: looked at once, sent once more.
        assert outcome.result == "held"
        assert methods(sim) == ["hold.call", "list.calls", "hold.call"]
        assert call.hold_count == 1
    elif kind.policy is Policy.CALL_GONE:
        assert (outcome.result, outcome.mnemonic) == ("call_gone", mnemonic)
        assert methods(sim) == ["hold.call"]
        assert captured.events("hold_call_gone")
    else:  # do-not-retry, and re-login with a key nothing can renew
        assert (outcome.result, outcome.mnemonic, outcome.attempts) == ("failed", mnemonic, 1)
        assert methods(sim) == ["hold.call"]
        assert call.state is CallState.TALK and call.hold_count == 0
        [line] = captured.events("hold_failed")
        assert (line["level"], line["rule"], line["call_session_id"]) == ("error", "vip", csid)
        assert (line["code"], line["mnemonic"], line["hint"]) == (code, mnemonic, kind.hint)
        assert harness.actions[("failed", mnemonic)] == 1
        assert harness.verdicts[-1].rule_problem is kind.rule_problem
    # An alert, exactly when the table says so.
    assert harness.client.credentials_ok is not kind.alert
    assert len(captured.events("callapi_credentials_rejected")) == int(kind.alert)
    assert "unhold.call" not in methods(sim)
    assert harness.client.stats.unknown_mnemonics == {}


RELOGIN = [m for m, k in ERROR_KINDS.items() if k.policy is Policy.RELOGIN]


@pytest.mark.parametrize("mnemonic", RELOGIN)
async def test_re_login_rows_with_login_and_password(
    sim: Simulator, http: aiohttp.ClientSession, captured: LogCapture, mnemonic: str
) -> None:
    harness = Harness(make_client(sim, http, LoginPassword(LOGIN, Secret(PASSWORD))))
    csid = await talking_call(sim)
    sim.faults.fail_next(1, mnemonic, method="hold.call")

    outcome = await harness.hold(decision(csid))

    assert outcome.result == "held"
    assert methods(sim) == ["login.user", "hold.call", "login.user", "hold.call"]
    assert [e["reason"] for e in captured.events("callapi_login")] == ["first", "rejected"]
    assert harness.client.credentials_ok
    assert sim.account.call(csid).hold_count == 1


async def test_an_unknown_mnemonic_is_kept_counted_and_logged_once(
    sim: Simulator, http: aiohttp.ClientSession, captured: LogCapture
) -> None:
    harness = Harness(make_client(sim, http))
    first, second = await talking_call(sim), await talking_call(sim)
    sim.faults.fail_next(2, "hold_refused_by_policy", code=-32602, method="hold.call")

    one = await harness.hold(decision(first))
    two = await harness.hold(decision(second))

    assert [(o.result, o.mnemonic) for o in (one, two)] == [
        ("failed", "hold_refused_by_policy"),
        ("failed", "hold_refused_by_policy"),
    ]
    assert harness.client.stats.unknown_mnemonics == {(-32602, "hold_refused_by_policy"): 2}
    [warning] = captured.events("callapi_unknown_mnemonic")
    assert (warning["level"], warning["code"], warning["policy"]) == (
        "warning",
        -32602,
        "do-not-retry",
    )
    assert len(captured.events("hold_failed")) == 2
    assert methods(sim) == ["hold.call", "hold.call"]


async def test_an_unknown_server_fault_is_retried_by_its_code(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    harness = Harness(make_client(sim, http))
    csid = await talking_call(sim)
    sim.faults.fail_next(1, "backend_unavailable", code=-32603, method="hold.call")
    outcome = await harness.hold(decision(csid))
    assert outcome.result == "held"
    assert methods(sim) == ["hold.call", "hold.call"]
