"""What every chaos test shares: the rules, a stream of calls of known kinds,
a fault layer that fails requests at random, and the final count.

Kinds of call and what must become of each (holdd-spec sections 5 and 6):

* NOW: matches the rule without `after` and talks until held: held once.
* AFTER: matches the rule with `after` and talks until held: held once.
* NO_RULE: talks, but matches no rule: never held.
* NO_TALK: matches a rule, but ends before anyone answers: never held.
* SHORT: matches the `after` rule, but its talk ends before `after`: never held.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import orjson
from aiohttp import web

from holdd.core.states import CallState
from holdd.sim.faults import Handler, RpcFaults
from holdd.sim.server import Simulator
from support.config import config_text
from support.sim import make_simulator

#: The `after` of the second rule, and how long a SHORT call talks (well under it).
AFTER = 1.0
SHORT_TALK = 0.3
#: The simulator's minute and day budget: far above any chaos traffic.
LIMIT = 10_000_000

RULES = f"""
[[rule]]
name = "vip-now"
[rule.match]
direction = "in"
contact_phone_number = "7926*"
[rule.hold]
media = "2034"

[[rule]]
name = "sales-after"
after = "{AFTER:g}s"
[rule.match]
contact_phone_number = ["re:^7903\\\\d{{7}}$"]
[rule.hold]
media = "2561"
"""


def with_unhold(rules: str, after: float) -> str:
    """`rules` with the first rule (vip-now) unholding `after` seconds on hold."""
    hold = '[rule.hold]\nmedia = "2034"\n'
    assert hold in rules
    return rules.replace(hold, f'{hold}[rule.then]\nunhold_after = "{after:g}s"\n', 1)


class Kind(StrEnum):
    NOW = "matches the rule without after"
    AFTER = "matches the rule with after"
    NO_RULE = "matches no rule"
    NO_TALK = "ended before Talk"
    SHORT = "talk shorter than after"


HELD = (Kind.NOW, Kind.AFTER)
_PREFIX = {
    Kind.NOW: "7926",
    Kind.AFTER: "7903",
    Kind.NO_RULE: "7000",
    Kind.NO_TALK: "7926",
    Kind.SHORT: "7903",
}


def chaos_config(sim: Simulator, **options: Any) -> str:
    """holdd.toml for a chaos test: a 20 s action deadline and a state database
    (support.config.config_text takes the same `options`)."""
    options.setdefault("action_deadline", "20s")
    options.setdefault("state", "state.db")
    return config_text(sim, **options)


def chaos_simulator() -> Simulator:
    """The simulator of a chaos test (not started): a budget far above the
    traffic (the tests are about faults, not pacing), the chaos fault layer in place."""
    simulator = make_simulator(limit=LIMIT)
    simulator.faults = ChaosFaults(simulator, random.Random(0))
    return simulator


class Traffic:
    """A stream of calls of random kinds (seeded), about `rate` a second.

    Free-running by default. With `paced=True` the stream only makes the
    calls it has been allowed (`allow`), at `rate`, and waits for more:
    a test then decides how many calls arrive in each phase (a daemon
    running, none running), whatever the speed of the machine.
    """

    def __init__(
        self, sim: Simulator, rng: random.Random, rate: float = 100.0, *, paced: bool = False
    ) -> None:
        self.sim = sim
        self.rng = rng
        self.pause = 1.0 / rate
        self.calls: dict[int, Kind] = {}
        #: The number of calls the stream may have made in all (paced only).
        self.allowed: int | None = 0 if paced else None
        self._emitted = asyncio.Condition()
        self._talks: set[asyncio.Task[None]] = set()

    @property
    def count(self) -> int:
        return len(self.calls)

    @property
    def flowing_now(self) -> bool:
        """Whether calls are still coming (always, unless paced and all made)."""
        return self.allowed is None or self.count < self.allowed

    async def allow(self, n: int) -> int:
        """Paced: let `n` more calls through; return the total to wait for."""
        assert self.allowed is not None, "allow() is for a paced Traffic"
        async with self._emitted:
            self.allowed = max(self.allowed, self.count) + n
            self._emitted.notify_all()
        return self.allowed

    async def one(self, kind: Kind) -> int:
        number = f"{_PREFIX[kind]}{self.rng.randrange(10**7):07d}"
        csid = await self.sim.start_call(direction="in", contact_phone_number=number)
        self.calls[csid] = kind
        if kind is Kind.NO_TALK:
            await self.sim.end_call(csid)
        elif kind is Kind.SHORT:
            await self.sim.answer(csid)
            task = asyncio.create_task(self._hang_up(csid))
            self._talks.add(task)
            task.add_done_callback(self._talks.discard)
        else:
            await self.sim.answer(csid)
        async with self._emitted:
            self._emitted.notify_all()
        return csid

    async def _hang_up(self, csid: int) -> None:
        # The talk lasting less than `after` is what this call is about.
        await asyncio.sleep(SHORT_TALK)
        await self.sim.end_call(csid)

    def pick(self) -> Kind:
        weights = {Kind.NOW: 30, Kind.AFTER: 25, Kind.NO_RULE: 15, Kind.NO_TALK: 15, Kind.SHORT: 15}
        return self.rng.choices(list(weights), list(weights.values()))[0]

    async def flow(self, limit: int | None = None) -> None:
        """Calls one after another until cancelled (or `limit` calls)."""
        while limit is None or self.count < limit:
            if self.allowed is not None:
                async with self._emitted:
                    await self._emitted.wait_for(lambda: self.flowing_now)
            await self.one(self.pick())
            # The pace of the stream, not a wait for anything.
            await asyncio.sleep(self.pause)

    @contextlib.asynccontextmanager
    async def flowing(self, limit: int | None = None) -> AsyncIterator[Traffic]:
        task = asyncio.create_task(self.flow(limit))
        try:
            yield self
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            # Short calls still talking hang up now, as planned.
            await asyncio.gather(*self._talks)

    async def wait_emitted(self, n: int, within: float = 20.0) -> None:
        """Wait until at least `n` calls have been made in all."""
        async with asyncio.timeout(within), self._emitted:
            await self._emitted.wait_for(lambda: self.count >= n)

    def expected_held(self) -> list[int]:
        """Calls that must be held once: a rule matches and they are still talking."""
        account = self.sim.account
        return [
            csid
            for csid, kind in self.calls.items()
            if kind in HELD and account.call(csid).state in (CallState.TALK, CallState.HOLD)
        ]

    def all_held(self) -> bool:
        account = self.sim.account
        return all(account.call(csid).hold_count >= 1 for csid in self.expected_held())

    def outstanding(self) -> list[int]:
        """Calls that must be held and are not (yet)."""
        account = self.sim.account
        return [csid for csid in self.expected_held() if account.call(csid).hold_count == 0]

    def by_kind(self, csids: Iterable[int]) -> Counter[Kind]:
        """How many of `csids` are of each kind."""
        return Counter(self.calls[csid] for csid in csids)


async def until(sim: Simulator, predicate: Callable[[], bool], within: float) -> None:
    """Wait until `predicate()` holds, checking after every Call API request."""
    async with asyncio.timeout(within):
        while not predicate():
            await sim.wait_for_requests(len(sim.requests) + 1, timeout=within)


@dataclass(frozen=True, slots=True)
class Verdict:
    held_once: int
    should_hold: int
    by_kind: dict[Kind, tuple[int, int]]
    twice: list[int]
    missed: list[int]
    wrongly_held: list[int]
    duplicates: list[int]

    def report(self, title: str) -> str:
        lines = [
            f"{title}: held exactly once: {self.held_once} of {self.should_hold};"
            f" held twice or more: {len(self.twice)};"
            f" held though they should not be: {len(self.wrongly_held)};"
            f" hold.call sent for a call already on hold: {len(self.duplicates)}"
        ]
        for kind, (good, total) in self.by_kind.items():
            lines.append(f"  {kind.value}: {good} of {total} as expected")
        if self.missed:
            more = f" and {len(self.missed) - 10} more" if len(self.missed) > 10 else ""
            lines.append(f"  missed: {self.missed[:10]}{more}")
        return "\n".join(lines)


def verdict(traffic: Traffic, duplicates: list[int] | None = None) -> Verdict:
    """Count what became of every call, by kind."""
    account = traffic.sim.account
    should = set(traffic.expected_held())
    good: Counter[Kind] = Counter()
    total: Counter[Kind] = Counter()
    twice, missed, wrong = [], [], []
    for csid, kind in traffic.calls.items():
        count = account.call(csid).hold_count
        total[kind] += 1
        good[kind] += count == (1 if csid in should else 0)
        if count > 1:
            twice.append(csid)
        if csid in should and count == 0:
            missed.append(csid)
        if csid not in should and count:
            wrong.append(csid)
    held_once = sum(account.call(csid).hold_count == 1 for csid in should)
    return Verdict(
        held_once=held_once,
        should_hold=len(should),
        by_kind={kind: (good[kind], total[kind]) for kind in Kind},
        twice=twice,
        missed=missed,
        wrongly_held=wrong,
        duplicates=list(duplicates or []),
    )


class ChaosFaults(RpcFaults):
    """The simulator's fault layer with two additions.

    * With `rate` > 0, each request gets one fault at random (seeded): an
      HTTP 500 before or after the request is applied, an answer later than
      the client's timeout (the request applied before or after the wait),
      -32603 internal_error, or -32029 limit_exceeded with a 1 s reset.
    * Every `hold.call` that arrives for a call already on hold is noted in
      `duplicates`, unless an earlier attempt for that call was answered
      late and applied only after the wait: a request the client gave up on
      may take effect after the client looked (list.calls: still talking)
      and sent again, and the client cannot know that.
    """

    def __init__(
        self, sim: Simulator, rng: random.Random, rate: float = 0.0, late: float = 1.0
    ) -> None:
        super().__init__(sim.account)
        self.sim = sim
        self.rng = rng
        self.rate = rate
        #: How late a "timeout" answer is: more than the client's [callapi] timeout.
        self.late = late
        self.injected: Counter[str] = Counter()
        self.duplicates: list[int] = []
        #: Calls with a hold.call applied only after the client's timeout.
        self.late_applied: set[int] = set()

    async def serve(self, request: web.Request, handle: Handler) -> web.StreamResponse:
        # aiohttp keeps the body: RpcFaults.serve reads it again without
        # yielding, so the fault armed here is the one this request takes.
        body = await request.read()
        method, csid = _method_and_call(body)
        if method == "hold.call" and csid is not None:
            call = self.sim.account.calls.get(csid)
            if call is not None and call.state is CallState.HOLD and csid not in self.late_applied:
                self.duplicates.append(csid)
        kind = self._arm_random() if self.rate and method != "login.user" else None
        if kind == "timeout_before_apply" and method == "hold.call" and csid is not None:
            self.late_applied.add(csid)
        return await super().serve(request, handle)

    def _arm_random(self) -> str | None:
        roll = self.rng.random()
        if roll >= self.rate:
            return None
        # The share of each kind within the faults.
        kinds = ["http_500", "timeout", "internal_error", "limit_exceeded"]
        kind = self.rng.choices(kinds, [30, 25, 30, 15])[0]
        after_apply = self.rng.random() < 0.5
        if kind == "http_500":
            self.http_500(1, after_apply=after_apply)
            kind += "_after_apply" if after_apply else "_before_apply"
        elif kind == "timeout":
            self.delay(self.late, 1, after_apply=after_apply)
            kind += "_after_apply" if after_apply else "_before_apply"
        elif kind == "internal_error":
            self.fail_next(1, "internal_error")
        else:
            self.fail_next(1, "limit_exceeded", limits={"minute_reset": 1})
        self.injected[kind] += 1
        return kind


def _method_and_call(body: bytes) -> tuple[str | None, int | None]:
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None, None
    if not isinstance(doc, dict):
        return None, None
    method = doc.get("method") if isinstance(doc.get("method"), str) else None
    params = doc.get("params")
    csid = params.get("call_session_id") if isinstance(params, dict) else None
    return method, csid if isinstance(csid, int) and not isinstance(csid, bool) else None
