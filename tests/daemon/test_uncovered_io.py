"""The webhook's answers to what is not a notification, and a state database
that cannot be opened, as an operator sees them (HTTP status, log lines by
`event`, exit code). The daemon paths are in test_uncovered_paths.py."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest

from holdd.io.daemon import EX_CONFIG, Daemon
from holdd.sim.server import Simulator
from support.config import VIP, config_text, write_config
from support.inproc import ready, running_daemon
from support.process import DaemonProcess

SECRET = "wh-secret-0123456789abcdef"
WEBHOOK = f'\n[webhook]\nlisten = "127.0.0.1:0"\npath = "/uis/notify"\nsecret = "{SECRET}"\n'


def url(daemon: Daemon) -> str:
    assert daemon.webhook_address is not None
    host, port = daemon.webhook_address
    return f"http://{host}:{port}/uis/notify"


def held_calls(sim: Simulator) -> list[int | None]:
    """Every call a hold.call arrived for (applied or not), in order."""
    return [r.call_session_id for r in sim.faults.attempts("hold.call")]


async def talking_call(sim: Simulator, number: str) -> dict[str, object]:
    """A call in Talk at the API, and the talk_started variables UIS would post."""
    csid = await sim.start_call(
        direction="in", contact_phone_number=number, virtual_phone_number="74993720692"
    )
    await sim.answer(csid)
    return {
        "notification_mnemonic": "talk_started",
        "notification_time": "2026-11-26 10:00:00.000",
        "call_session_id": csid,
        "direction": "in",
        "contact_phone_number": number,
        "virtual_phone_number": "74993720692",
        "leg_ids": sim.account.call(csid).leg_ids,
    }


async def post(daemon: Daemon, body: bytes, headers: dict[str, str]) -> tuple[int, str]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(url(daemon), data=body, headers=headers) as resp,
    ):
        return resp.status, await resp.text()


# -- the webhook --------------------------------------------------------------------------


async def test_a_body_that_is_not_json_is_accepted_then_dropped_as_not_json(
    sim: Simulator, tmp_path: Path
) -> None:
    # docs/uis.md: 202 means holdd took it; the pipeline then drops what it
    # cannot use with a reason, like a bad stream message (no 400).
    config = config_text(sim, stream=False, extra=WEBHOOK)
    async with running_daemon(tmp_path, config, VIP) as (daemon, capture):
        await ready(daemon)
        status, _ = await post(
            daemon,
            b"call_session_id: 42, this is not a notification",
            {"Content-Type": "text/plain", "X-Holdd-Secret": SECRET},
        )
        assert status == 202
        await daemon.wait_for(lambda: bool(capture.events("notification_dropped")))
    [dropped] = capture.events("notification_dropped")
    assert (dropped["level"], dropped["reason"], dropped["source"]) == (
        "warning",
        "not_json",
        "webhook",
    )
    assert daemon.dropped == {"not_json": 1}
    assert daemon.webhook is not None and daemon.webhook.counts == {"accepted": 1}
    assert held_calls(sim) == []


async def test_a_body_that_is_not_json_without_the_secret_is_401_and_not_queued(
    sim: Simulator, tmp_path: Path
) -> None:
    config = config_text(sim, stream=False, extra=WEBHOOK)
    async with running_daemon(tmp_path, config, VIP) as (daemon, capture):
        await ready(daemon)
        status, _ = await post(daemon, b"<xml>not json</xml>", {"Content-Type": "text/xml"})
        assert status == 401
        assert daemon.webhook is not None and daemon.webhook.counts == {"unauthorized": 1}
    [refused] = capture.events("webhook_unauthorized")
    assert (refused["level"], refused["secret_given"]) == ("warning", False)
    assert not capture.events("notification_dropped")
    assert daemon.dropped == {}


async def test_a_wrong_secret_is_401_and_the_call_is_never_held(
    sim: Simulator, tmp_path: Path
) -> None:
    config = config_text(sim, stream=False, extra=WEBHOOK)
    async with running_daemon(tmp_path, config, VIP) as (daemon, capture):
        await ready(daemon)
        refused = await talking_call(sim, "79260000501")
        assert (
            await sim.post_webhook(url(daemon), refused, secret="not-the-secret", carrier="header")
            == 401
        )
        # A marker posted after it with the right secret: once it is held, the
        # refused one would have been handled too (one queue, in order).
        marker = await talking_call(sim, "79260000502")
        assert await sim.post_webhook(url(daemon), marker, secret=SECRET) == 202
        await daemon.wait_for(lambda: marker["call_session_id"] in daemon.outcomes)
    assert held_calls(sim) == [marker["call_session_id"]]
    assert sim.account.call(int(refused["call_session_id"])).hold_count == 0  # type: ignore[call-overload]
    [line] = capture.events("webhook_unauthorized")
    assert line["secret_given"] is True
    assert SECRET.encode() not in capture.raw
    assert b"not-the-secret" not in capture.raw


# -- a state database that cannot be opened --------------------------------------------------


@pytest.mark.parametrize("kind", ["directory", "not_sqlite"])
async def test_a_state_path_that_is_no_database_exits_78(
    sim: Simulator, tmp_path: Path, kind: str
) -> None:
    state = tmp_path / "state-here"
    if kind == "directory":
        state.mkdir()
    else:
        state.write_bytes(b"holdd state? no: a text file an operator put here\n" * 100)
    before = state.read_bytes() if state.is_file() else None
    path = write_config(
        tmp_path,
        config_text(
            sim, log_format="json", log_level="debug", extra=f'\n[state]\npath = "{state}"\n'
        ),
        VIP,
    )
    daemon = DaemonProcess(path)
    await daemon.start()
    try:
        assert daemon.proc is not None
        code = await asyncio.wait_for(daemon.proc.wait(), 15)
    finally:
        await daemon.kill()
    assert code == EX_CONFIG == 78
    [unusable] = [e for e in daemon.events() if e["event"] == "state_unusable"]
    assert unusable["level"] == "error"
    assert unusable["path"] == str(state)
    assert str(state) in unusable["error"]
    assert [e["event"] for e in daemon.events()].count("state_unusable") == 1
    # It never got as far as the network, and left the file as it was.
    assert sim.faults.attempts() == []
    assert sim.connected_clients == 0
    assert (state.read_bytes() if state.is_file() else None) == before
