"""`holdd simulate` and `holdd run` are two drivers of one machine
(docs/architecture.md): the same notification timeline must give the same
decisions through both.

The simulator's own calls produce the notifications; a plain websocket client
records every frame the simulator broadcasts, with its arrival time. A real
`holdd run` subprocess, connected to the same stream, acts on them against the
simulated Call API. The recording then becomes the JSONL that `holdd simulate`
replays on its virtual clock (`at`: the arrival offset). Per call, the rule
that acted, hold vs would_hold, the message and unhold vs would_unhold must be
the same on both sides, and the actions must come in the same order.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import orjson
import pytest
from websockets.asyncio.client import connect

from holdd.cli.main import main
from holdd.config.settings import load_settings
from holdd.core.records import TraceKind
from holdd.io.store.sqlite import StateDb
from holdd.sim.server import Simulator
from support.config import config_text, write_config
from support.process import DaemonProcess

RULES = """
[[rule]]
name = "vip-media"
[rule.match]
contact_phone_number = "7926*"
[rule.hold]
media = "2034"

[[rule]]
name = "sales-tts"
[rule.match]
virtual_phone_number = "+7 (499) 372-06-92"
[rule.unless]
contact_phone_number = ["79030000013"]
[rule.hold]
tts = "Здравствуйте, {contact_full_name}! Одну минуту, соединяем."

[[rule]]
name = "billing-after"
after = "1s"
[rule.match]
virtual_phone_number = "74950000002"
[rule.hold]
media = "2561"

[[rule]]
name = "survey-unhold"
[rule.match]
virtual_phone_number = "74950000003"
[rule.hold]
media = "2034"
[rule.then]
unhold_after = "1s"

[[rule]]
name = "agent-shadow"
mode = "shadow"
[rule.match]
direction = "out"
employee_id = [25]
[rule.hold]
tts = "Вам звонит {employee_full_name}. Одну секунду."
[rule.then]
unhold_after = "1s"

[[rule]]
name = "once-an-hour"
[rule.match]
virtual_phone_number = "74950000004"
[rule.hold]
media = "2561"
[rule.limit]
cooldown = "1h"
"""

#: The calls, by label: the fields the simulator starts each with.
CALLS: dict[str, dict[str, object]] = {
    # vip-media at once; a duplicate "talk started" follows
    "vip": {"contact_phone_number": "79261234567", "virtual_phone_number": "74951112233"},
    # sales-tts, the caller's name in the text
    "sales": {
        "contact_phone_number": "74957654321",
        "virtual_phone_number": "74993720692",
        "contact_full_name": "Анна Петрова",
    },
    # sales line, but a staff number: [rule.unless] excludes it
    "staff": {"contact_phone_number": "79030000013", "virtual_phone_number": "74993720692"},
    # billing-after: talks 2 s, held after 1 s
    "billing": {"contact_phone_number": "74951230001", "virtual_phone_number": "74950000002"},
    # billing-after: ends before its 1 s runs out
    "billing-short": {
        "contact_phone_number": "74951230002",
        "virtual_phone_number": "74950000002",
    },
    # survey-unhold: held, unheld 1 s later
    "survey": {"contact_phone_number": "74951230003", "virtual_phone_number": "74950000003"},
    # agent-shadow: would_hold, would_unhold
    "agent": {
        "direction": "out",
        "contact_phone_number": "74951230004",
        "virtual_phone_number": "74950000009",
        "employee_id": 25,
        "employee_full_name": "Иван Смирнов",
    },
    # no rule at all
    "nobody": {"contact_phone_number": "74959268686", "virtual_phone_number": "74951045771"},
    # once-an-hour, then the same caller again within the cooldown
    "repeat-1": {"contact_phone_number": "79161112233", "virtual_phone_number": "74950000004"},
    "repeat-2": {"contact_phone_number": "79161112233", "virtual_phone_number": "74950000004"},
}

#: Log events of the daemon that carry a decision, and simulate's output events.
ACTIONS = {"hold", "would_hold", "unhold", "would_unhold"}


class Recorder:
    """A plain websocket client of the simulator: every frame and when it came."""

    def __init__(self) -> None:
        self.frames: list[tuple[float, str]] = []
        self._changed = asyncio.Condition()

    async def run(self, url: str) -> None:
        async with connect(url) as ws:
            async for message in ws:
                assert isinstance(message, str), message
                self.frames.append((time.time(), message))
                async with self._changed:
                    self._changed.notify_all()

    async def wait_for(
        self, predicate: Callable[[dict[str, Any]], bool], within: float = 5.0
    ) -> str:
        """The first recorded frame whose JSON satisfies `predicate` (waits for it)."""

        def found() -> str | None:
            for _at, frame in self.frames:
                if predicate(orjson.loads(frame)):
                    return frame
            return None

        async with asyncio.timeout(within), self._changed:
            await self._changed.wait_for(lambda: found() is not None)
        frame = found()
        assert frame is not None
        return frame

    def jsonl(self) -> str:
        """The recording as `holdd simulate` reads it: `at` = offset from the first frame."""
        start = self.frames[0][0]
        lines = []
        for at, frame in self.frames:
            doc = orjson.loads(frame)
            lines.append(orjson.dumps({"at": round(at - start, 6), **doc}).decode())
        return "\n".join(lines) + "\n"


def talk_started(csid: int) -> Callable[[dict[str, Any]], bool]:
    return lambda n: (
        n.get("call_session_id") == csid and n.get("notification_name") == ("Начало разговора")
    )


def logged(event: str, csid: int) -> Callable[[dict[str, Any]], bool]:
    return lambda e: e["event"] == event and e.get("call_session_id") == csid


def failures(trace: list[dict[str, Any]]) -> tuple[tuple[str, str], ...]:
    """Each rule and the condition that failed (the times in reasons differ)."""
    return tuple((t["rule"], t.get("failed", "")) for t in trace)


Failed = dict[int, tuple[tuple[str, str], ...]]


def simulate_decisions(
    out: list[dict[str, Any]], failed: Failed
) -> dict[int, list[tuple[Any, ...]]]:
    """Per call, in order: what `holdd simulate` decided. A call no rule
    matched counts the rules its trace gives (every rule); their failed
    conditions go to `failed`."""
    per: dict[int, list[tuple[Any, ...]]] = {}
    for o in out:
        event = o["event"]
        if event in ("hold", "would_hold"):
            item: tuple[Any, ...] = (event, o["rule"], o["type"], o["value"])
        elif event in ("unhold", "would_unhold"):
            item = (event, o["rule"])
        elif event == "hold_pending":
            item = ("pending", o["rule"])
        elif event == "timer_cancelled":
            item = ("cancelled", o["timer"], o["rule"], o["reason"])
        elif event == "hold_skipped":
            item = ("skipped", o["rule"], o["reason"])
        elif event == "no_rule_matched":
            item = (event, len(o["trace"]))
            failed[o["call_session_id"]] = failures(o["trace"])
        else:
            item = (event,)
        per.setdefault(o["call_session_id"], []).append(item)
    return per


def stored_evaluations(config: Path) -> Callable[[int], list[Mapping[str, Any]]]:
    """What `holdd run` stored of each evaluation of a call in which no rule
    matched, in order, as `holdd explain` reads it: the log line only counts
    the rules."""

    def evaluations(csid: int) -> list[Mapping[str, Any]]:
        with StateDb.open(load_settings(config).state_path, readonly=True) as state:
            entries = [e for e in state.trace(csid) if e.kind is TraceKind.EVALUATION]
        return [e.payload for e in entries if e.payload["rule"] is None]

    return evaluations


def run_decisions(
    events: list[dict[str, Any]],
    evaluations: Callable[[int], list[Mapping[str, Any]]],
    failed: Failed,
    stored: dict[int, list[Mapping[str, Any]]],
) -> dict[int, list[tuple[Any, ...]]]:
    """Per call, in order: what `holdd run` logged. A call no rule matched
    counts the rules its stored evaluation accounts for: those tried, whose
    failed conditions go to `failed`, and those the index ruled out, counted
    by key."""
    per: dict[int, list[tuple[Any, ...]]] = {}
    for e in events:
        event = e["event"]
        if event == "hold_sent":
            item: tuple[Any, ...] = ("hold", e["rule"], e["message_type"], e["message_value"])
        elif event == "would_hold":
            item = (event, e["rule"], e["message_type"], e["message_value"])
        elif event == "unhold_sent":
            item = ("unhold", e["rule"])
        elif event == "would_unhold":
            item = (event, e["rule"])
        elif event == "rule_pending":
            item = ("pending", e["rule"])
        elif event == "timer_cancelled":
            item = ("cancelled", e["timer"], e["rule"], e["reason"])
        elif event == "no_rule_matched":
            # The n-th such line goes with the n-th such evaluation stored.
            csid = e["call_session_id"]
            seen = stored.setdefault(csid, [])
            payload = evaluations(csid)[len(seen)]
            seen.append(payload)
            by_key = payload.get("ruled_out_by", {})
            assert sum(n["rules"] for n in by_key.values()) == payload["ruled_out"], payload
            assert (e["tried"], e["ruled_out"]) == (len(payload["trace"]), payload["ruled_out"])
            item = (event, len(payload["trace"]) + payload["ruled_out"])
            failed[csid] = failures(payload["trace"])
        elif event.startswith(("hold_", "unhold_")):
            # hold_failed, hold_skipped, hold_confirmed_by_..., unhold_failed, ...
            item = (event, e.get("rule"), e.get("reason"))
        else:
            continue
        per.setdefault(e["call_session_id"], []).append(item)
    return per


def api_actions(sim: Simulator) -> dict[int, list[tuple[Any, ...]]]:
    """Per call, in order: the hold.call / unhold.call requests the API answered."""
    per: dict[int, list[tuple[Any, ...]]] = {}
    for r in sim.requests:
        if r.method not in ("hold.call", "unhold.call"):
            continue
        assert r.response.get("result", {}).get("data", {}).get("success") == "true", r
        csid = r.params["call_session_id"]
        if r.method == "hold.call":
            message = r.params["contact_message"]
            item: tuple[Any, ...] = ("hold", message["type"], message["value"])
        else:
            item = ("unhold",)
        per.setdefault(csid, []).append(item)
    return per


def show(label: str, per: dict[int, list[tuple[Any, ...]]], names: dict[int, str]) -> str:
    rows = [f"  {csid} {names.get(csid, '?')}: {per[csid]}" for csid in sorted(per)]
    return f"{label}:\n" + "\n".join(rows)


async def test_simulate_gives_the_decisions_run_makes(
    sim: Simulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, config_text(sim, log_format="json", log_level="debug"), RULES)
    recorder = Recorder()
    recording = asyncio.create_task(recorder.run(sim.notify_url))
    daemon = DaemonProcess(config)
    ids: dict[str, int] = {}
    talk_began: dict[str, float] = {}
    try:
        await sim.wait_for_clients(1)
        await daemon.start()
        await sim.wait_for_clients(2, timeout=20)
        await daemon.wait_event(lambda e: e["event"] == "resync_done")

        loop = asyncio.get_running_loop()
        t0 = loop.time()

        async def at(offset: float) -> None:
            # Pacing of the timeline's real gaps, not a wait for anything.
            await asyncio.sleep(max(0.0, t0 + offset - loop.time()))

        async def answer(label: str) -> None:
            talk_began[label] = time.time()
            await sim.answer(ids[label])

        async def end(*labels: str) -> None:
            for label in labels:
                await sim.end_call(ids[label])

        for label, fields in CALLS.items():
            if label != "repeat-2":
                ids[label] = await sim.start_call(**fields)
        await at(0.10)
        await answer("vip")  # hold now
        await at(0.40)
        await answer("sales")  # hold now (tts)
        await at(0.55)
        duplicate = await recorder.wait_for(talk_started(ids["vip"]))
        await sim.send_raw(duplicate)  # a duplicate "talk started": nothing more
        await at(0.70)
        await answer("nobody")  # no rule
        await at(0.85)
        await answer("billing")  # pending; hold at 1.85
        await at(1.05)
        await answer("billing-short")  # pending; due at 2.05, ends at 1.65
        await at(1.30)
        await answer("survey")  # hold now, unhold at 2.30
        await at(1.55)
        await answer("agent")  # would_hold now, would_unhold at 2.55
        await at(1.65)
        await end("billing-short")  # talk finished + call finished: cancelled
        await at(1.75)
        await answer("staff")  # excluded by [rule.unless]
        await at(2.10)
        await answer("repeat-1")  # hold now, starts the cooldown
        await at(2.75)
        await end("repeat-1")
        ids["repeat-2"] = await sim.start_call(**CALLS["repeat-2"])
        await at(2.85)
        await answer("repeat-2")  # the same caller within the cooldown
        await at(3.00)
        await sim.finish_talk(ids["vip"])
        await at(3.10)
        await end("vip", "sales")
        await at(3.20)
        await sim.finish_talk(ids["survey"])
        await end("billing")
        await at(3.30)
        await end("survey", "agent", "staff", "nobody", "repeat-2")

        names = {csid: label for label, csid in ids.items()}
        async with asyncio.timeout(10):
            for csid in ids.values():
                await daemon.wait_event(logged("call_ended", csid))
            await recorder.wait_for(
                lambda n: (
                    n.get("call_session_id") == ids["repeat-2"]
                    and n.get("notification_name") == "Завершение звонка"
                )
            )
    finally:
        code = await daemon.stop()
        recording.cancel()
    assert code == 0, daemon.stderr

    # -- the same recording through `holdd simulate` -----------------------------
    events = tmp_path / "events.jsonl"
    events.write_text(recorder.jsonl(), encoding="utf-8")
    capsys.readouterr()
    assert main(["simulate", "-c", str(config), str(events)]) == 0
    out, err = capsys.readouterr()
    simulated = [orjson.loads(line) for line in out.splitlines()]

    simulate_failed: Failed = {}
    run_failed: Failed = {}
    by_simulate = simulate_decisions(simulated, simulate_failed)
    stored: dict[int, list[Mapping[str, Any]]] = {}
    by_run = run_decisions(daemon.events(), stored_evaluations(config), run_failed, stored)
    report = (
        show("holdd simulate", by_simulate, names)
        + "\n"
        + show("holdd run", by_run, names)
        + f"\nsimulate stderr: {err}"
    )
    print(report)
    assert set(by_simulate) == set(ids.values()), report
    assert by_simulate == by_run, report
    # Where no rule matched, each rule `holdd run` tried failed as `holdd
    # simulate`'s full trace says.
    assert set(run_failed) == set(simulate_failed), (run_failed, simulate_failed)
    for csid, tried in run_failed.items():
        assert set(tried) <= set(simulate_failed[csid]), (tried, simulate_failed[csid])
        # The rules it did not try are counted by the key that ruled them
        # out, with the value the call had for it.
        fields = CALLS[names[csid]]
        for payload in stored[csid]:
            for key, counted in payload.get("ruled_out_by", {}).items():
                if key in fields:
                    assert counted["actual"] == fields[key], (csid, key, counted)
    assert stored[ids["nobody"]][0]["ruled_out"] == len(simulate_failed[ids["nobody"]])
    # The timeline does what it says: the exclusion and the cooldown were hit,
    # and both drivers saw the duplicate "talk started".
    assert ("sales-tts", "unless.contact_phone_number") in run_failed[ids["staff"]], report
    assert ("once-an-hour", "cooldown") in run_failed[ids["repeat-2"]], report
    frames = [orjson.loads(frame) for _at, frame in recorder.frames]
    assert sum(talk_started(ids["vip"])(n) for n in frames) == 2

    # What the daemon logged as sent is what the Call API received.
    by_api = api_actions(sim)
    sent = {
        csid: [
            ("hold", *d[2:]) if d[0] == "hold" else ("unhold",)
            for d in decisions
            if d[0] in ("hold", "unhold")
        ]
        for csid, decisions in by_run.items()
    }
    assert {c: a for c, a in sent.items() if a} == by_api, (by_api, report)

    # The actions across calls come in the same order.
    simulate_order = [
        (o["call_session_id"], o["event"]) for o in simulated if o["event"] in ACTIONS
    ]
    run_order = [
        (
            e["call_session_id"],
            {"hold_sent": "hold", "unhold_sent": "unhold"}.get(e["event"], e["event"]),
        )
        for e in daemon.events()
        if e["event"] in ("hold_sent", "would_hold", "unhold_sent", "would_unhold")
    ]
    assert simulate_order == run_order, (simulate_order, run_order, report)

    # `after`: simulate holds exactly 1 s after Talk began; the daemon no earlier.
    billing = ids["billing"]
    pending = next(o for o in simulated if o["call_session_id"] == billing)
    hold = next(o for o in simulated if o["call_session_id"] == billing and o["event"] == "hold")
    assert pending["event"] == "hold_pending"
    assert hold["offset"] - pending["offset"] == pytest.approx(1.0, abs=1e-6)
    [request] = [
        r
        for r in sim.requests
        if r.method == "hold.call" and r.params["call_session_id"] == billing
    ]
    assert request.received_at - talk_began["billing"] >= 1.0, request.received_at
