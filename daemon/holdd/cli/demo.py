"""`holdd demo`: the simulator and the daemon in one process, a scripted set of
calls, the daemon's JSON log on stdout and a final table (shell).

Nothing here is staged: the daemon is the same `Daemon` that `holdd run`
starts, it reaches the simulator over real sockets, and the table's last
column is the answer the simulated Call API actually gave.
"""

from __future__ import annotations

import asyncio
import dataclasses
import shutil
import sys
import tempfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import holdd
from holdd.config.rulefiles import load_rules
from holdd.config.settings import load_settings
from holdd.core.errors import ConfigError
from holdd.core.states import CallState
from holdd.io import logs
from holdd.io.daemon import Daemon
from holdd.sim.server import Simulator


@dataclass(frozen=True, slots=True)
class Scripted:
    label: str
    fields: dict[str, object]
    answered: bool = True
    #: Answered while the notification stream is down: only resync can find it.
    during_outage: bool = False


SCRIPT = (
    Scripted(
        "VIP caller",
        {
            "direction": "in",
            "contact_phone_number": "79261234567",
            "virtual_phone_number": "74951112233",
            "contact_full_name": "Ольга Смирнова",
        },
    ),
    Scripted(
        "sales line, TTS",
        {
            "direction": "in",
            "contact_phone_number": "74957654321",
            "virtual_phone_number": "74993720692",
            "contact_full_name": "Анна Петрова",
        },
    ),
    Scripted(
        "outbound call",
        {
            "direction": "out",
            "contact_phone_number": "79031234567",
            "virtual_phone_number": "74993720692",
            "employee_id": 25,
        },
    ),
    Scripted(
        "ends before answer",
        {
            "direction": "in",
            "contact_phone_number": "79265550000",
            "virtual_phone_number": "74951112233",
        },
        answered=False,
    ),
    Scripted(
        "VIP during stream outage",
        {
            "direction": "in",
            "contact_phone_number": "79167654321",
            "virtual_phone_number": "74951112233",
            "contact_full_name": "Пётр Иванов",
        },
        during_outage=True,
    ),
    Scripted(
        "support, shadow rule",
        {
            "direction": "in",
            "contact_phone_number": "74951230000",
            "virtual_phone_number": "74950000001",
        },
    ),
    Scripted(
        "billing, bad media id",
        {
            "direction": "in",
            "contact_phone_number": "74951239999",
            "virtual_phone_number": "74950000002",
        },
    ),
)


def default_config_dir() -> Path:
    """The demo's config, shipped in the package (holdd/demo/)."""
    return Path(str(resources.files(holdd).joinpath("demo")))


def _working_copy(config_dir: Path) -> Path:
    """A fresh directory with the demo's config and rules, kept after the demo
    so that `holdd explain -c DIR/holdd.toml ID` can read its state database
    (its [state] path is relative: DIR/state.db)."""
    work = Path(tempfile.mkdtemp(prefix="holdd-demo-"))
    shutil.copytree(config_dir, work, dirs_exist_ok=True)
    return work


async def run_demo(config_dir: Path | None = None) -> int:
    work = _working_copy(config_dir or default_config_dir())
    config = work / "holdd.toml"
    try:
        settings = load_settings(config)
        rules = load_rules(settings.rule_files, settings.tts_max_length)
    except ConfigError as err:
        for problem in err.problems:
            print(problem, file=sys.stderr)
        return 78
    sim = Simulator(tokens=(settings.access_token.reveal(),), media_ids=("2034", "2561", "3001"))
    await sim.start()
    try:
        # A fresh state database each run (in the fresh working copy): the
        # simulator numbers its calls from the same start every time, and the
        # ledger would remember them.
        settings = dataclasses.replace(
            settings, callapi_url=sim.callapi_url, notify_url=sim.notify_url
        )
        logs.configure(fmt=settings.log_format, level=settings.log_level, secrets=settings.secrets)
        daemon = Daemon(settings, rules)
        async with asyncio.TaskGroup() as tg:
            running = tg.create_task(daemon.run(install_signals=False))
            await sim.wait_for_clients(1, timeout=15)
            calls = [await _play(sim, daemon, step) for step in SCRIPT]
            for csid in calls:
                await sim.end_call(csid)
            await daemon.wait_for(
                lambda: all(
                    daemon.table.get(c) is None or daemon.table.get(c).state is CallState.ENDED  # type: ignore[union-attr]
                    for c in calls
                )
            )
            daemon.request_stop("demo finished")
        code = running.result()
    finally:
        await sim.stop()
    print(_table(sim, daemon, calls), flush=True)
    print(
        f"\nWhy call {calls[0]} was held, from the state database the demo kept in {work}:"
        f"\n  holdd explain -c {config} {calls[0]}",
        flush=True,
    )
    return code


async def _play(sim: Simulator, daemon: Daemon, step: Scripted) -> int:
    if step.during_outage:
        # Take the stream down and keep it down while the call starts and
        # reaches Talk; when it comes back, the resync finds the call.
        sim.refuse_clients()
        await sim.drop_clients(code=1011)
        listener = daemon.listener
        assert listener is not None  # noqa: S101 - the demo config has [notify]
        await daemon.wait_for(lambda: not listener.connected.is_set())
    csid = await sim.start_call(**step.fields)
    if not step.answered:
        return csid
    await sim.answer(csid)
    if step.during_outage:
        sim.refuse_clients(False)

    def settled() -> bool:
        ev = daemon.evaluations.get(csid)
        return ev is not None and (ev.decision is None or csid in daemon.outcomes)

    await daemon.wait_for(settled, within=30)
    return csid


def _table(sim: Simulator, daemon: Daemon, calls: list[int]) -> str:
    answers: dict[int, str] = {}
    for req in sim.requests:
        body = req.body
        if not isinstance(body, dict) or body.get("method") != "hold.call":
            continue
        csid = body.get("params", {}).get("call_session_id")
        if "error" in req.response:
            err = req.response["error"]
            answers[csid] = f"error {err['code']} {err['data']['mnemonic']}"
        else:
            answers[csid] = f"success={req.response['result']['data']['success']}"
    rows = [("call", "scenario", "rule", "action", "API answer")]
    for step, csid in zip(SCRIPT, calls, strict=True):
        ev = daemon.evaluations.get(csid)
        outcome = daemon.outcomes.get(csid)
        rule = ev.decision.rule.name if ev and ev.decision else "-"
        if outcome is not None:
            action = f"{outcome.result}: {outcome.message.type} {outcome.message.value[:28]}"
        elif ev is None:
            action = "never in Talk"
        else:
            action = "no rule matched"
        rows.append((str(csid), step.label, rule, action, answers.get(csid, "(no request)")))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n" + "\n".join(lines)
