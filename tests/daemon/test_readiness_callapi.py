"""/readyz tells the truth about the Call API: 503 with the reason while its
answers are not JSON-RPC (a proxy's HTML error page, here), 200 again once it
answers, and the call that entered Talk meanwhile is held once."""

from __future__ import annotations

from pathlib import Path

import aiohttp

from holdd.sim.server import Simulator
from support.config import config_text
from support.inproc import ready, running_daemon


async def readyz(url: str) -> tuple[int, dict[str, object]]:
    async with aiohttp.ClientSession() as http, http.get(f"{url}/readyz") as resp:
        return resp.status, await resp.json()


async def test_readyz_is_503_while_the_call_api_answers_html(
    sim: Simulator, tmp_path: Path
) -> None:
    async with running_daemon(tmp_path, config_text(sim)) as (daemon, _capture):
        await ready(daemon, sim)
        assert daemon.services.http is not None
        url = daemon.services.http.url
        assert (await readyz(url))[0] == 200
        sim.faults.http_500(10_000)  # every request: an HTML 500 page
        csid = await sim.start_call(direction="in", contact_phone_number="79260000501")
        await sim.answer(csid)
        await sim.faults.wait_for_attempts(1, method="hold.call")
        # The client reads that answer on the loop: a probe or two later it shows.
        for _ in range(50):
            status, body = await readyz(url)
            if status == 503:
                break
        assert status == 503
        assert "Call API failing" in str(body)
        sim.faults.clear()
        await daemon.wait_for(lambda: csid in daemon.outcomes, within=30)
        assert daemon.outcomes[csid].result == "held"
        status, body = await readyz(url)
    assert status == 200, body
    assert sim.account.call(csid).hold_count == 1
