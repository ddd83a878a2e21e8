"""`holdd explain`: the decision trace of one call, read back from the state
database the daemon wrote."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from holdd.cli.main import main
from holdd.sim.server import Simulator
from support.config import config_text
from support.inproc import running_daemon

RULES = """
[[rule]]
name = "vip"
[rule.match]
direction = "in"
contact_phone_number = "7926*"
[rule.hold]
media = "2034"
"""


async def test_explain_shows_events_rules_tried_and_the_action(
    sim: Simulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = config_text(sim)
    async with running_daemon(tmp_path, config, RULES) as (daemon, _capture):
        await sim.wait_for_clients(1)
        held = await sim.start_call(direction="in", contact_phone_number="79260000091")
        await sim.answer(held)
        other = await sim.start_call(direction="in", contact_phone_number="79030000092")
        await sim.answer(other)
        outbound = await sim.start_call(direction="out", contact_phone_number="79260000093")
        await sim.answer(outbound)
        await daemon.wait_for(
            lambda: held in daemon.outcomes and {other, outbound} <= daemon.evaluations.keys()
        )
        await sim.end_call(other)
        await daemon.wait_for(lambda: daemon.table.get(other).state.value == "ENDED")  # type: ignore[union-attr]
    capsys.readouterr()
    cfg = str(tmp_path / "holdd.toml")

    assert main(["explain", "-c", cfg, str(held)]) == 0
    out: Sequence[str] = capsys.readouterr().out.splitlines()
    assert out[0] == f"call {held}"
    assert "talk_entered (from notification), episode 1, state TALK" in out[1]
    assert "rule vip chosen; tried vip: matched" in out[2]
    assert "hold by rule vip: held, media '2034'" in out[3]
    assert out[4].startswith("  claim hold by rule 'vip': held")

    assert main(["explain", "-c", cfg, str(other)]) == 0
    out = capsys.readouterr().out
    # The rule was not even tried: the index ruled it out by the caller's
    # number, and says so.
    assert (
        "no rule matched; 1 rule(s) ruled out by the index:"
        " 1 whose [rule.match] contact_phone_number does not list '79030000092'"
    ) in out
    assert "ended (from notification)" in out

    # A rule the index could not rule out is tried, and named with the
    # condition that failed.
    assert main(["explain", "-c", cfg, str(outbound)]) == 0
    out = capsys.readouterr().out
    assert "no rule matched; tried vip: direction failed (actual 'out')" in out

    assert main(["explain", "-c", cfg, "12345"]) == 1
    assert "call 12345: nothing recorded" in capsys.readouterr().err
