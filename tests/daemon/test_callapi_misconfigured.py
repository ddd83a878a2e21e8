"""A rule the account cannot play (docs/callapi.md section 3.2 errors): one
request, no retry, one ERROR line naming the rule with a hint, a counter."""

from __future__ import annotations

import aiohttp
import pytest

from holdd.callapi import ERROR_KINDS
from holdd.core.rules import Decision
from holdd.sim.server import Simulator
from support.callapi import Harness, decision, make_client
from support.logs import LogCapture
from support.sim import methods, talking_call

# Every test's log is captured (support/logs.py), as an operator would read it.
pytestmark = [pytest.mark.timeout(60), pytest.mark.usefixtures("captured")]

LONG_TTS = "Здравствуйте! " * 40  # 560 characters; the simulated tariff allows 500


def misconfigured(csid: int, mnemonic: str) -> Decision:
    if mnemonic == "media_file_not_found":
        return decision(csid, rule="promo-music", media="9999")
    return decision(csid, rule="promo-music", tts=LONG_TTS)


@pytest.mark.parametrize("mnemonic", ["media_file_not_found", "tts_text_exceeded"])
async def test_a_misconfigured_rule_is_one_request_an_error_line_and_a_counter(
    sim: Simulator, http: aiohttp.ClientSession, captured: LogCapture, mnemonic: str
) -> None:
    """Acceptance 6: the real account refuses the media id / the TTS length."""
    harness = Harness(make_client(sim, http))
    csid = await talking_call(sim)

    outcome = await harness.hold(misconfigured(csid, mnemonic))

    assert (outcome.result, outcome.mnemonic, outcome.attempts) == ("failed", mnemonic, 1)
    assert methods(sim) == ["hold.call"]
    assert sim.account.call(csid).hold_count == 0
    [line] = captured.events("hold_failed")
    assert line["level"] == "error"
    assert (line["rule"], line["call_session_id"]) == ("promo-music", csid)
    assert (line["code"], line["mnemonic"]) == (-32602, mnemonic)
    assert line["hint"] == ERROR_KINDS[mnemonic].hint
    assert line["field"] == "contact_message.value"
    if mnemonic == "tts_text_exceeded":
        assert line["params"] == {"tts_message_max_length": 500, "sent_tts_message_length": 560}
    else:
        assert line["params"] == {"media_file_id": "9999"}
    assert [v.rule_problem for v in harness.verdicts] == [True]
    assert harness.actions == {("failed", mnemonic): 1}
    assert harness.retries == {}
    assert harness.result_of(csid, "promo-music") == mnemonic


async def test_a_tts_text_that_is_not_utf8_is_not_retried(
    sim: Simulator, http: aiohttp.ClientSession, captured: LogCapture
) -> None:
    harness = Harness(make_client(sim, http))
    csid = await talking_call(sim)
    sim.faults.fail_next(1, "character_encoding_not_allowed", method="hold.call")

    outcome = await harness.hold(decision(csid, tts="Привет"))

    assert (outcome.result, outcome.attempts) == ("failed", 1)
    assert [v.rule_problem for v in harness.verdicts] == [True]
    [line] = captured.events("hold_failed")
    assert "UTF-8" in line["hint"]
