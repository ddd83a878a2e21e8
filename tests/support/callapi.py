"""Helpers for the Call API tests (tests/daemon/test_callapi_*.py): a client
and runner on the simulator, outcomes to wait on, decisions.

Nothing here sleeps to wait for something: tests wait on outcomes
(`Outcomes.wait`), on the simulator's request log (`wait_for_requests`) or on
the fault layer's (`faults.wait_for_attempts`). Backoff delays are injected
small and deterministic (`FAST`), so a test's timing is a handful of 0.05 s
steps; where a test is about a deadline or a clock position, `VirtualTime`
replaces the clocks and sleeps of simulator, client and runner.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import aiohttp
import structlog

from holdd.callapi import CallApiClient
from holdd.config.settings import LoginPassword, Secret
from holdd.core.backoff import full_jitter
from holdd.core.commands import Outcome
from holdd.core.events import DEFAULT_EVENT_NAMES
from holdd.core.hold_policy import Verdict
from holdd.core.machine import Machine
from holdd.core.records import Claim, PutClaim
from holdd.core.rules import Decision, Rule, RuleSet
from holdd.core.rules.model import HoldAction
from holdd.io.runner import Runner
from holdd.io.store.memory import MemoryStore
from holdd.sim.server import Simulator
from support.sim import TOKEN


def fast_backoff(base: float = 0.05) -> Callable[[], Iterator[float]]:
    """Full jitter with its random factor pinned to 1: delays base, 2 base, 4 base, ..."""
    return lambda: full_jitter(base=base, cap=8 * base, rng=lambda: 1.0)


FAST = fast_backoff()


class VirtualTime:
    """One clock for the simulator, the client and the runner that moves only
    when one of them sleeps: a wait of 60 s takes no time, and how long the
    machine takes to answer a request never shows in what the test measures.
    `time` and `monotonic` read the same value (the simulator takes it as
    UTC wall time, so `start` picks the moment in the minute)."""

    def __init__(self, start: float) -> None:
        self.now = start
        #: Every sleep asked for, in order.
        self.sleeps: list[float] = []

    def time(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, delay: float) -> None:
        self.sleeps.append(delay)
        self.now += max(0.0, delay)
        await asyncio.sleep(0)  # still a turn of the loop, as a real sleep is


def make_client(
    sim: Simulator,
    http: aiohttp.ClientSession,
    credentials: Secret | LoginPassword | None = None,
    *,
    timeout: float = 2.0,
    **kwargs: Any,
) -> CallApiClient:
    return CallApiClient(http, sim.callapi_url, credentials or Secret(TOKEN), timeout, **kwargs)


class Outcomes:
    """Collects the runner's outcomes; `wait` returns once `n` have come in."""

    def __init__(self) -> None:
        self.items: list[Outcome] = []
        self._tick = asyncio.Event()

    def __call__(self, outcome: Outcome) -> None:
        self.items.append(outcome)
        tick, self._tick = self._tick, asyncio.Event()
        tick.set()

    async def wait(self, n: int = 1, timeout: float = 30.0) -> list[Outcome]:  # noqa: ASYNC109
        async with asyncio.timeout(timeout):
            while len(self.items) < n:
                await self._tick.wait()
        return list(self.items)

    def by_call(self) -> dict[int, Outcome]:
        return {o.call_session_id: o for o in self.items}


class Harness:
    """A client and a runner on one simulator, as the daemon wires them: each
    verdict goes through the machine (core/machine.py), which writes the
    ledger's result to a memory store and logs what an operator reads."""

    def __init__(
        self,
        client: CallApiClient,
        *,
        deadline: float = 10.0,
        backoff: Callable[[], Iterator[float]] = FAST,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        monotonic: Callable[[], float] = time.monotonic,
        workers: int = 20,
    ) -> None:
        self.client = client
        self.machine = Machine(RuleSet(), DEFAULT_EVENT_NAMES)
        self.store = MemoryStore()
        self.outcomes = Outcomes()
        self.verdicts: list[Verdict] = []
        #: Retries by reason, as the runner reports them to /metrics.
        self.retries: Counter[str] = Counter()
        #: Actions by (result, mnemonic), as the machine counts them for /metrics.
        self.actions: Counter[tuple[str, str]] = Counter()
        self.log = structlog.get_logger("holdd")
        self.runner = Runner(
            client,
            on_hold=self._settled,
            on_unhold=self._unheld,
            on_retry=lambda _action, reason: self.retries.update([reason]),
            deadline=deadline,
            backoff=backoff,
            sleep=sleep,
            monotonic=monotonic,
            workers=workers,
        )

    def submit(self, decision: Decision) -> None:
        """Claim (in the store) and send, as the daemon does."""
        key = (decision.call_session_id, decision.rule.name, "hold")
        self.store.commit([PutClaim(Claim(*key, 0.0))])
        self.runner.hold(decision)

    async def _settled(self, decision: Decision, verdict: Verdict) -> None:
        self.verdicts.append(verdict)
        commands = self.machine.hold_settled(decision, verdict, 0.0)
        self.store.commit(commands.persist)
        for record in commands.logs:
            getattr(self.log, record.level)(record.event, **record.fields)
        for metric in commands.metrics:
            if metric.name == "action":
                _action, result, mnemonic = metric.labels
                self.actions[(result, mnemonic)] += 1
        self.outcomes(self.machine.outcomes[decision.call_session_id])

    async def _unheld(self, call_session_id: int, rule: str, verdict: Verdict) -> None:
        self.verdicts.append(verdict)

    def result_of(self, call_session_id: int, rule: str) -> str | None:
        """The ledger's result for the hold of `rule` on the call."""
        return self.store.claim_rows[(call_session_id, rule, "hold")].result

    async def hold(self, decision: Decision, timeout: float = 30.0) -> Outcome:  # noqa: ASYNC109
        """Submit one decision and wait for its outcome."""
        before = len(self.outcomes.items)
        self.submit(decision)
        return (await self.outcomes.wait(before + 1, timeout))[before]


def decision(
    call_session_id: int, *, rule: str = "vip", media: str | None = "2034", tts: str | None = None
) -> Decision:
    action = HoldAction(tts=tts) if tts is not None else HoldAction(media=media)
    return Decision(call_session_id, 1, Rule(name=rule, hold=action), action.render({}))
