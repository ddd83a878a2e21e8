"""Daemon paths no other test walks, checked the way an operator sees them:
the requests the Call API received, the log lines by `event`, and the
claims in the state database.

- a shadow rule: `would_hold` / `would_unhold`, claims with result "shadow",
  nothing sent;
- every way an `unhold.call` can end (`unhold_skipped`, `unhold_retrying`,
  `unhold_sent`, `unhold_failed`) and the claim's result for each;
- `list.calls` failing at start: `resync_failed` with `retry_in`, then
  `resync_done`, and a call already talking is held once.

(tests/daemon/test_uncovered_io.py: the webhook's answers and a state
database that cannot be opened.)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from holdd.io.daemon import Daemon
from holdd.io.store.sqlite import StateDb
from holdd.sim.server import Simulator
from support.config import config_text
from support.inproc import running_daemon
from support.logs import LogCapture

#: Every 7926 caller held at once, and taken off hold 300 ms later.
UNHOLD_SOON = """
[[rule]]
name = "vip"
[rule.match]
contact_phone_number = "7926*"
[rule.hold]
media = "2034"
[rule.then]
unhold_after = "300ms"
"""

SHADOW = """
[[rule]]
name = "trial"
mode = "shadow"
[rule.match]
direction = "in"
[rule.hold]
tts = "Одну минуту, {contact_full_name}"
[rule.then]
unhold_after = "300ms"
"""

VIP_NOW = """
[[rule]]
name = "vip"
[rule.match]
contact_phone_number = "7926*"
[rule.hold]
media = "2034"
"""


def config(sim: Simulator) -> str:
    return config_text(sim)


def claims(daemon: Daemon, csid: int) -> list[tuple[str, str, str | None]]:
    """(rule, action, result) of every claim on disk for `csid`, as `holdd explain` reads them."""
    with StateDb.open(daemon.settings.state_path, readonly=True) as state:
        return [(c.rule, c.action, c.result) for c in state.claims(csid)]


def lines(capture: LogCapture, event: str, csid: int) -> list[dict[str, Any]]:
    return [e for e in capture.events(event) if e.get("call_session_id") == csid]


def methods(sim: Simulator, method: str) -> list[str]:
    """What the fault layer did with each `method` request that arrived."""
    return [r.what for r in sim.faults.attempts(method)]


async def talking(sim: Simulator, daemon: Daemon, number: str) -> int:
    """A call the daemon has seen enter Talk (the stream is up first)."""
    await sim.wait_for_clients(1, timeout=10)
    await daemon.wait_for(lambda: daemon.resyncs >= 1)
    csid = await sim.start_call(
        direction="in", contact_phone_number=number, contact_full_name="Иван"
    )
    await sim.answer(csid)
    return csid


# -- shadow mode ------------------------------------------------------------------------


async def test_a_shadow_rule_logs_and_claims_but_sends_nothing(
    sim: Simulator, tmp_path: Path
) -> None:
    async with running_daemon(tmp_path, config(sim), SHADOW) as (daemon, capture):
        csid = await talking(sim, daemon, "79030000401")
        await daemon.wait_for(lambda: bool(lines(capture, "would_unhold", csid)))
    [would] = lines(capture, "would_hold", csid)
    assert (would["rule"], would["message_type"], would["message_value"]) == (
        "trial",
        "tts",
        "Одну минуту, Иван",
    )
    [unhold] = lines(capture, "would_unhold", csid)
    assert unhold["rule"] == "trial"
    assert not lines(capture, "hold_sent", csid)
    assert not lines(capture, "unhold_sent", csid)
    # Nothing reached the API, not even unapplied.
    assert methods(sim, "hold.call") == []
    assert methods(sim, "unhold.call") == []
    call = sim.account.call(csid)
    assert (call.state.value, call.hold_count) == ("TALK", 0)
    assert claims(daemon, csid) == [
        ("trial", "would_hold", "shadow"),
        ("trial", "would_unhold", "shadow"),
    ]


# -- every way an unhold ends --------------------------------------------------------------


async def held_then_unheld(
    sim: Simulator, tmp_path: Path, number: str, *final: str
) -> tuple[Daemon, LogCapture, int]:
    """Run the daemon until the call `number` was held and its unhold ended in
    one of the `final` events; return the stopped daemon, its log and the call."""
    async with running_daemon(tmp_path, config(sim), UNHOLD_SOON, debug=True) as (daemon, capture):
        csid = await talking(sim, daemon, number)
        await daemon.wait_for(lambda: any(lines(capture, e, csid) for e in final), within=15)
    assert len(lines(capture, "hold_sent", csid)) == 1
    return daemon, capture, csid


async def test_unhold_answered_invalid_state_is_skipped_as_not_on_hold(
    sim: Simulator, tmp_path: Path
) -> None:
    sim.faults.fail_next(1, "invalid_state", method="unhold.call")
    daemon, capture, csid = await held_then_unheld(
        sim, tmp_path, "79260000411", "unhold_skipped", "unhold_failed", "unhold_sent"
    )
    [skipped] = lines(capture, "unhold_skipped", csid)
    assert (skipped["level"], skipped["reason"], skipped["rule"]) == ("info", "not_on_hold", "vip")
    assert not lines(capture, "unhold_retrying", csid)
    assert methods(sim, "unhold.call") == ["failed:invalid_state"]  # not sent again
    assert claims(daemon, csid) == [("vip", "hold", "held"), ("vip", "unhold", "not_on_hold")]


async def test_unhold_of_a_call_that_is_gone_ends_the_call(sim: Simulator, tmp_path: Path) -> None:
    sim.faults.fail_next(1, "call_session_not_found", method="unhold.call")
    daemon, capture, csid = await held_then_unheld(
        sim, tmp_path, "79260000412", "unhold_skipped", "unhold_failed", "unhold_sent"
    )
    [skipped] = lines(capture, "unhold_skipped", csid)
    assert (skipped["level"], skipped["reason"]) == ("info", "call_gone")
    [ended] = lines(capture, "call_ended", csid)
    assert ended["source"] == "callapi"
    gone = daemon.table.get(csid)
    assert gone is not None and gone.state.value == "ENDED"
    assert methods(sim, "unhold.call") == ["failed:call_session_not_found"]
    assert claims(daemon, csid) == [("vip", "hold", "held"), ("vip", "unhold", "call_gone")]


@pytest.mark.parametrize(
    ("arm", "first"),
    [
        (lambda s: s.faults.fail_next(1, "internal_error", method="unhold.call"), "failed:"),
        (lambda s: s.faults.http_500(1, method="unhold.call"), "http_500_before_apply"),
        (lambda s: s.faults.drop_connection(1, method="unhold.call"), "dropped_before_apply"),
    ],
    ids=["internal_error", "http_500", "dropped"],
)
async def test_a_transient_unhold_failure_is_retried_until_sent(
    sim: Simulator, tmp_path: Path, arm: Any, first: str
) -> None:
    arm(sim)
    daemon, capture, csid = await held_then_unheld(
        sim, tmp_path, "79260000413", "unhold_sent", "unhold_failed", "unhold_skipped"
    )
    [retrying] = lines(capture, "unhold_retrying", csid)
    assert retrying["level"] == "warning"
    assert retrying["attempts"] == 1 and retrying["next_method"] == "unhold.call"
    assert 0 <= retrying["delay"] <= 0.5  # full jitter from 0.5 s
    [sent] = lines(capture, "unhold_sent", csid)
    assert sent["attempts"] == 2
    attempts = methods(sim, "unhold.call")
    assert len(attempts) == 2 and attempts[0].startswith(first) and attempts[1] == "passed"
    call = sim.account.call(csid)
    assert (call.state.value, call.hold_count, call.unhold_count) == ("TALK", 1, 1)
    assert claims(daemon, csid) == [("vip", "hold", "held"), ("vip", "unhold", "unheld")]


async def test_a_refused_unhold_fails_at_error_level_and_is_not_retried(
    sim: Simulator, tmp_path: Path
) -> None:
    sim.faults.fail_next(1, "forbidden", method="unhold.call")
    daemon, capture, csid = await held_then_unheld(
        sim, tmp_path, "79260000414", "unhold_failed", "unhold_sent", "unhold_skipped"
    )
    [failed] = lines(capture, "unhold_failed", csid)
    assert (failed["level"], failed["mnemonic"], failed["attempts"]) == ("error", "forbidden", 1)
    assert not lines(capture, "unhold_retrying", csid)
    assert methods(sim, "unhold.call") == ["failed:forbidden"]
    assert sim.account.call(csid).state.value == "HOLD"  # still on hold at the API
    assert claims(daemon, csid) == [("vip", "hold", "held"), ("vip", "unhold", "failed")]


# -- resync failing at start ----------------------------------------------------------------


async def test_list_calls_failing_at_start_is_retried_and_the_talking_call_held_once(
    sim: Simulator, tmp_path: Path
) -> None:
    # In Talk before holdd starts: only list.calls can tell it about the call.
    csid = await sim.start_call(direction="in", contact_phone_number="79260000421")
    await sim.answer(csid)
    sim.faults.fail_next(2, "internal_error", method="list.calls")
    async with running_daemon(tmp_path, config(sim), VIP_NOW, debug=True) as (daemon, capture):
        await daemon.wait_for(lambda: bool(lines(capture, "hold_sent", csid)), within=15)
        # One more listing after the hold: it must not hold the call again.
        seen = daemon.resyncs
        daemon.services.resync_wanted.set()
        await daemon.wait_for(lambda: daemon.resyncs > seen)
        await daemon.wait_for(lambda: len(capture.events("resync_done")) > seen)
    failed = capture.events("resync_failed")
    assert len(failed) == 2
    for n, line in enumerate(failed):
        assert line["level"] == "warning" and "internal_error" in line["error"]
        assert 0 <= line["retry_in"] <= 1.0 * 2**n  # full jitter from 1 s
    listings = methods(sim, "list.calls")
    assert listings[:3] == ["failed:internal_error", "failed:internal_error", "passed"]
    names = [e["event"] for e in capture.events()]
    assert names.index("resync_done") > max(i for i, n in enumerate(names) if n == "resync_failed")
    first_done = capture.events("resync_done")[0]
    assert first_done["talk_found"] == 1
    [talk] = lines(capture, "call_talk_started", csid)
    assert talk["source"] == "resync"
    assert [r.what for r in sim.faults.attempts("hold.call")] == ["passed"]
    assert sim.account.call(csid).hold_count == 1
    assert claims(daemon, csid) == [("vip", "hold", "held")]
