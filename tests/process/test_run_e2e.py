"""`holdd run` as a subprocess against the simulator over real sockets: the
exact JSON-RPC request the API receives, the log lines an operator reads."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from holdd.sim.server import Simulator
from support.config import config_text, write_config
from support.process import DaemonProcess, explain
from support.sim import TOKEN

RULES = """
[[rule]]
name = "vip-music"
priority = 10
[rule.match]
direction = "in"
contact_phone_number = ["7926*"]
[rule.hold]
media = "2034"

[[rule]]
name = "sales-tts"
[rule.match]
virtual_phone_number = "+7 (499) 372-06-92"
[rule.hold]
tts = "Здравствуйте, {contact_full_name}! Одну минуту, соединяем."
"""

CALL_EVENTS = {
    "call_talk_started",
    "call_talk_finished",
    "call_ended",
    "rule_matched",
    "no_rule_matched",
    "hold_sent",
    "hold_failed",
    "hold_skipped",
    "would_hold",
    "notification_received",
}


def holds(sim: Simulator) -> list[dict[str, Any]]:
    return [
        r.body
        for r in sim.requests
        if isinstance(r.body, dict) and r.body.get("method") == "hold.call"
    ]


async def test_holds_calls_with_the_exact_request_shape(sim: Simulator, tmp_path: Path) -> None:
    config = write_config(tmp_path, config_text(sim, log_format="json", log_level="debug"), RULES)
    daemon = DaemonProcess(config)
    await daemon.start()
    try:
        await sim.wait_for_clients(1, timeout=20)

        # 1. media
        vip = await sim.start_call(
            direction="in", contact_phone_number="79261234567", virtual_phone_number="74951112233"
        )
        await sim.answer(vip)
        [req] = await sim.wait_for_requests(1, method="hold.call", timeout=20)
        body = req.body
        assert isinstance(body, dict)
        assert set(body) == {"jsonrpc", "id", "method", "params"}
        assert body["jsonrpc"] == "2.0"
        assert body["method"] == "hold.call"
        assert isinstance(body["id"], int | str)
        assert body["params"] == {
            "access_token": TOKEN,
            "call_session_id": vip,
            "contact_message": {"type": "media", "value": "2034"},
        }
        assert type(body["params"]["call_session_id"]) is int
        assert req.response["result"]["data"]["success"] == "true"

        # 2. a call no rule wants, then UTF-8 TTS
        other = await sim.start_call(
            direction="out", contact_phone_number="79031234567", virtual_phone_number="74950000000"
        )
        await sim.answer(other)
        sales = await sim.start_call(
            direction="in",
            contact_phone_number="74957654321",
            virtual_phone_number="74993720692",
            contact_full_name="Анна Петрова",
        )
        await sim.answer(sales)
        reqs = await sim.wait_for_requests(2, method="hold.call", timeout=20)
        second = reqs[1].body
        assert isinstance(second, dict)
        assert second["params"] == {
            "access_token": TOKEN,
            "call_session_id": sales,
            "contact_message": {
                "type": "tts",
                "value": "Здравствуйте, Анна Петрова! Одну минуту, соединяем.",
            },
        }
        await daemon.wait_event(
            lambda e: e["event"] == "hold_sent" and e.get("call_session_id") == sales
        )
        nomatch = await daemon.wait_event(lambda e: e["event"] == "no_rule_matched")
        assert nomatch["call_session_id"] == other
        # The line counts the rules; the trace is for `holdd explain`.
        # Both rules were ruled out by the index: vip-music by the caller's
        # number, sales-tts by the virtual number.
        assert (nomatch["level"], nomatch["tried"], nomatch["ruled_out"]) == ("debug", 0, 2)
        assert "trace" not in nomatch
    finally:
        code = await daemon.stop()

    assert code == 0, daemon.stderr
    # Requests still in flight are finished before exit, so this is final:
    assert [h["params"]["call_session_id"] for h in holds(sim)] == [vip, sales]

    # 3. every stdout line is JSON with timestamp, level, event; call lines name the call
    events = daemon.events()
    assert len(events) == len(daemon.raw) > 10
    for event in events:
        assert {"timestamp", "level", "event"} <= event.keys(), event
        if event["event"] in CALL_EVENTS:
            assert isinstance(event.get("call_session_id"), int), event
    assert {"holdd_started", "notify_connected", "hold_sent", "holdd_stopped"} <= {
        e["event"] for e in events
    }
    sent = [e for e in events if e["event"] == "hold_sent"]
    assert [(e["call_session_id"], e["rule"]) for e in sent] == [
        (vip, "vip-music"),
        (sales, "sales-tts"),
    ]
    # the access token never appears, in stdout or stderr
    assert TOKEN.encode() not in b"\n".join(daemon.raw)
    assert TOKEN.encode() not in daemon.stderr


def sent(csid: int) -> Callable[[dict[str, Any]], bool]:
    return lambda e: e["event"] == "hold_sent" and e["call_session_id"] == csid


async def test_at_info_a_held_call_is_one_line_and_explain_keeps_the_trace(
    sim: Simulator, tmp_path: Path
) -> None:
    """The default level: from Talk to the end of the call, a held call logs
    `hold_sent` and nothing else; a call no rule wants logs nothing. Why
    either went as it did is in `holdd explain`, not in the log."""
    state = tmp_path / "state.db"
    text = config_text(sim, log_format="json", log_level="info", state=str(state))
    config = write_config(tmp_path, text, RULES)
    daemon = DaemonProcess(config)
    await daemon.start()
    calls: list[int] = []
    try:
        await sim.wait_for_clients(1, timeout=20)
        for i in range(5):
            csid = await sim.start_call(
                direction="in",
                contact_phone_number=f"7926000000{i}",
                virtual_phone_number="74951112233",
            )
            await sim.answer(csid)
            calls.append(csid)
        other = await sim.start_call(
            direction="out", contact_phone_number="79031234567", virtual_phone_number="74950000000"
        )
        await sim.answer(other)
        await sim.wait_for_requests(5, method="hold.call", timeout=20)
        for csid in calls:
            await daemon.wait_event(sent(csid))
        for csid in [*calls, other]:
            await sim.finish_talk(csid)
            await sim.end_call(csid)
        # Held after the others ended on the same stream: once its line is
        # out, every notification before it has been handled.
        marker = await sim.start_call(
            direction="in", contact_phone_number="79269999999", virtual_phone_number="74951112233"
        )
        await sim.answer(marker)
        await daemon.wait_event(sent(marker))
    finally:
        code = await daemon.stop()
    assert code == 0, daemon.stderr
    events = daemon.events()
    assert {e["level"] for e in events} <= {"info", "warning", "error"}
    for csid in calls:
        [line] = [e for e in events if e.get("call_session_id") == csid]
        assert (line["level"], line["event"], line["rule"]) == ("info", "hold_sent", "vip-music")
        assert (line["message_type"], line["message_value"]) == ("media", "2034")
        assert line["attempts"] == 1 and line["request_id"]
    assert [e for e in events if e.get("call_session_id") == other] == []
    assert not [e for e in events if "trace" in e]

    why_not = await explain(config, other)
    assert (
        "no rule matched; 2 rule(s) ruled out by the index:"
        " 1 whose [rule.match] contact_phone_number does not list '79031234567',"
        " 1 whose [rule.match] virtual_phone_number does not list '74950000000'"
    ) in why_not, why_not
    why = await explain(config, calls[0])
    assert "rule vip-music chosen; tried vip-music: matched" in why, why
    assert "hold by rule vip-music: held, media '2034'" in why, why


async def test_duplicate_talk_started_never_holds_twice(sim: Simulator, tmp_path: Path) -> None:
    config = write_config(tmp_path, config_text(sim, log_format="json", log_level="debug"), RULES)
    daemon = DaemonProcess(config)
    await daemon.start()
    try:
        await sim.wait_for_clients(1, timeout=20)
        vip = await sim.start_call(
            direction="in", contact_phone_number="79261234567", virtual_phone_number="74951112233"
        )
        await sim.answer(vip)
        await daemon.wait_event(lambda e: e["event"] == "hold_sent")
        talk = {
            "notification_name": "Начало разговора",
            "call_session_id": vip,
            "direction": "in",
            "contact_phone_number": "79261234567",
        }
        # The provider repeats itself: the same notification three more times,
        # once in English and once with an explicit state.
        await sim.send_notifications(
            talk, {**talk, "notification_name": "Talk started"}, {**talk, "state": "TALK"}
        )
        # A marker call after the duplicates: once it is held, every duplicate
        # before it on the same stream has been handled.
        marker = await sim.start_call(
            direction="in", contact_phone_number="79269999999", virtual_phone_number="74951112233"
        )
        await sim.answer(marker)
        await daemon.wait_event(
            lambda e: e["event"] == "hold_sent" and e["call_session_id"] == marker
        )
    finally:
        code = await daemon.stop()
    assert code == 0, daemon.stderr
    assert [h["params"]["call_session_id"] for h in holds(sim)] == [vip, marker]
    started = [e for e in daemon.events() if e["event"] == "call_talk_started"]
    assert [e["call_session_id"] for e in started] == [vip, marker]
    received = [
        e
        for e in daemon.events()
        if e["event"] == "notification_received"
        and e["call_session_id"] == vip
        and e["kind"] == "talk_started"
    ]
    assert len(received) >= 3  # the duplicates did arrive, and were recognised


async def test_bad_config_exits_78_with_file_and_line(tmp_path: Path) -> None:
    config = write_config(
        tmp_path,
        config_text(
            callapi_url="https://x/v4.0",
            notify_url="wss://x/s",
            log_format="json",
            log_level="debug",
        ),
        RULES.replace("direction =", "direktion ="),
    )
    daemon = DaemonProcess(config)
    await daemon.start()
    code = await daemon.stop(sig=0)
    assert code == 78
    rules = tmp_path / "rules.d" / "rules.toml"
    line = rules.read_text().splitlines().index('direktion = "in"') + 1
    assert f"{rules}:{line}: rule \"vip-music\": unknown key 'direktion'" in daemon.stderr.decode()
    [event] = daemon.events()
    assert event["event"] == "config_invalid" and event["level"] == "error"
