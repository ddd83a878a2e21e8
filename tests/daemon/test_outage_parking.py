"""A Call API outage gives up nothing while the call still talks: a hold
whose attempts all failed in a transient way (here every answer is a proxy's
HTML error page) is parked, not concluded; once the API answers again, the
next `list.calls` settles it within seconds: sent if the call still talks and
no earlier attempt took, found held if one did. Never twice."""

from __future__ import annotations

from pathlib import Path

from holdd.sim.server import Simulator
from support.config import config_text
from support.inproc import ready, running_daemon


def holds(sim: Simulator, csid: int) -> int:
    return sum(
        r.method == "hold.call" and r.params.get("call_session_id") == csid for r in sim.requests
    )


async def test_a_hold_that_failed_during_an_outage_is_sent_when_the_api_returns(
    sim: Simulator, tmp_path: Path
) -> None:
    config = config_text(sim, timeout="1s", action_deadline="1s")
    async with running_daemon(tmp_path, config) as (daemon, capture):
        await ready(daemon, sim)
        sim.faults.http_500(10_000)  # the API is down: every answer an HTML 500
        csid = await sim.start_call(direction="in", contact_phone_number="79260000601")
        await sim.answer(csid)
        await daemon.wait_for(lambda: bool(capture.events("hold_parked")), within=15)
        assert sim.account.call(csid).hold_count == 0
        sim.faults.clear()  # the API is back
        await daemon.wait_for(
            lambda: (
                daemon.outcomes.get(csid) is not None and daemon.outcomes[csid].result == "held"
            ),
            within=20,
        )
    [parked] = capture.events("hold_parked")
    assert (parked["call_session_id"], parked["rule"]) == (csid, "all-inbound")
    assert parked["level"] == "warning"
    assert [e["call_session_id"] for e in capture.events("claim_released")] == [csid]
    assert sim.account.call(csid).hold_count == 1
    assert not capture.events("hold_outcome_unknown")


async def test_a_hold_that_took_during_the_outage_is_found_held_not_sent_again(
    sim: Simulator, tmp_path: Path
) -> None:
    config = config_text(sim, timeout="1s", action_deadline="1s")
    async with running_daemon(tmp_path, config) as (daemon, capture):
        await ready(daemon, sim)
        # The first hold.call is applied, then its answer is lost; then the outage.
        sim.faults.http_500(1, after_apply=True, method="hold.call")
        sim.faults.http_500(10_000)
        csid = await sim.start_call(direction="in", contact_phone_number="79260000602")
        await sim.answer(csid)
        await daemon.wait_for(lambda: bool(capture.events("hold_parked")), within=15)
        sim.faults.clear()
        await daemon.wait_for(
            lambda: (
                daemon.outcomes.get(csid) is not None and daemon.outcomes[csid].result == "held"
            ),
            within=20,
        )
    assert sim.account.call(csid).hold_count == 1
    assert holds(sim, csid) >= 1
    resolved = [e for e in capture.events("claim_resolved") if e["call_session_id"] == csid]
    assert [e["result"] for e in resolved] == ["held"]
