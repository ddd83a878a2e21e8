"""A request's result alone waits one loop iteration before its turn (so that
what arrives with it shares the transaction); a stop that cancels the loop in
that iteration must not lose it: the last turn records it."""

from __future__ import annotations

import asyncio
from pathlib import Path

from holdd.config.rulefiles import load_rules
from holdd.config.settings import load_settings
from holdd.core.commands import Commands
from holdd.io.daemon import Daemon
from holdd.io.inputs import Frame, HoldDone, Input
from holdd.io.store.memory import MemoryStore
from support.config import MEDIA_RULE, config_text, write_config


def _daemon(tmp_path: Path) -> tuple[Daemon, list[list[Input]]]:
    settings = load_settings(
        write_config(
            tmp_path,
            config_text(callapi_url="http://127.0.0.1:9/v4.0", notify_url="ws://127.0.0.1:9/"),
            MEDIA_RULE,
        )
    )
    daemon = Daemon(settings, load_rules(settings.rule_files), store=MemoryStore())
    turns: list[list[Input]] = []
    fed: list[Input] = []

    # The real loop and turn; only what a turn does with its inputs is noted.
    def feed(item: Input, now: float) -> Commands:
        fed.append(item)
        return Commands()

    async def carry_out(out: Commands) -> None:
        turns.append(fed.copy())
        fed.clear()

    daemon._feed = feed  # type: ignore[method-assign]
    daemon._carry_out = carry_out  # type: ignore[method-assign]
    return daemon, turns


def _result() -> HoldDone:
    return HoldDone.__new__(HoldDone)  # only its type matters here


async def test_a_lone_result_shares_the_turn_of_what_arrives_next(tmp_path: Path) -> None:
    daemon, turns = _daemon(tmp_path)
    loop = asyncio.create_task(daemon._loop())
    done = _result()
    frame = Frame("{}", "websocket")
    daemon.inputs.put_nowait(done)
    await asyncio.sleep(0)  # the loop takes the result and waits one iteration
    daemon.inputs.put_nowait(frame)
    for _ in range(5):
        await asyncio.sleep(0)
    loop.cancel()
    await asyncio.gather(loop, return_exceptions=True)
    assert turns == [[done, frame]]


async def test_a_result_held_back_when_the_loop_is_cancelled_is_recorded_by_the_last_turn(
    tmp_path: Path,
) -> None:
    daemon, turns = _daemon(tmp_path)
    loop = asyncio.create_task(daemon._loop())
    done = _result()
    daemon.inputs.put_nowait(done)
    await asyncio.sleep(0)  # the loop takes the result and waits one iteration
    assert daemon.inputs.empty()
    loop.cancel()
    await asyncio.gather(loop, return_exceptions=True)
    assert turns == []
    await daemon._turn()  # what _drain does last
    assert turns == [[done]]
