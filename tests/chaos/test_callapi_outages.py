"""The Call API down for a while, five ways, while calls keep reaching Talk.

Faults lose nothing (holdd-spec sections 6 and 7): every call that entered
Talk during the outage and matches a rule is held exactly once within seconds
of the API's return, none is held twice or wrongly, and /readyz says 503 with
the reason while the API is down and 200 once it answers again.

The outages: the endpoint hangs (reads, never answers), answers a proxy's
HTML 502 page to everything, or refuses connections (its socket closed, the
same port bound again when it returns), all switched in the simulator
(`Simulator.begin_outage`); and a host name that does not resolve or an
https:// URL on a plain HTTP port, where the daemon's own URL is wrong and
the outage ends when it is restarted with the right one (its state database
kept), as an operator would fix it.

The gap is measured on the simulator's request log: from the outage's end to
the arrival of the last `hold.call` that the account applied.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import pytest
from aiohttp.abc import AbstractResolver, ResolveResult

from holdd.config.rulefiles import load_rules
from holdd.config.settings import load_settings
from holdd.io import logs
from holdd.io.daemon import Daemon
from holdd.sim.faults import Outage
from holdd.sim.server import Simulator
from support.chaos import (
    RULES,
    ChaosFaults,
    Traffic,
    Verdict,
    chaos_config,
    chaos_simulator,
    verdict,
)
from support.config import write_config
from support.inproc import ready, running_daemon
from support.logs import LogCapture
from support.sim import running

#: Calls made while the API is down (of every kind: support/chaos.py).
CALLS = 24
#: Their pace: the stream of calls lasts about a second.
RATE = 20.0
#: The bound on the last hold after the outage's end, in seconds. The daemon
#: looks again within 5 s while holds are parked (docs/operations.md
#: `hold_parked`), and a hold still retrying waits at most 8 s between attempts.
GAP = 10.0
#: A short [callapi] timeout and action deadline: holds are parked during the outage.
OPTIONS = {"timeout": "1s", "action_deadline": "2s"}


@dataclass(frozen=True, slots=True)
class Readiness:
    status: int
    callapi: str


async def readyz(daemon: Daemon) -> Readiness:
    assert daemon.services.http is not None
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{daemon.services.http.url}/readyz") as resp,
    ):
        body = await resp.json()
    return Readiness(resp.status, str(body["checks"]["callapi"]["reason"]))


def parked(capture: LogCapture) -> Callable[[], bool]:
    return lambda: bool(capture.events("hold_parked"))


def settled(daemon: Daemon, traffic: Traffic) -> Callable[[], bool]:
    """Every call that must be held is, and nothing is in flight or parked."""
    runner = daemon.runner
    assert runner is not None
    return lambda: traffic.all_held() and runner.in_flight == 0 and not daemon.machine.unsettled


def last_hold_after(sim: Simulator, ended: float) -> float:
    """Seconds from `ended` to the arrival of the last applied hold.call."""
    applied = [r.at for r in sim.faults.log if r.method == "hold.call" and r.applied]
    assert applied, "no hold.call was applied"
    return max(applied) - ended


def report(
    title: str, result: Verdict, calls: int, gap: float, during: Readiness, after: Readiness
) -> str:
    return (
        f"{result.report(title)}\n"
        f"  calls in the outage: {calls}; last hold {gap:.2f} s after its end;"
        f" /readyz during: {during.status} ({during.callapi}); after: {after.status}"
    )


def check(result: Verdict, gap: float, during: Readiness, after: Readiness) -> None:
    assert result.should_hold > 0
    assert result.held_once == result.should_hold, result.missed[:10]
    assert not result.twice
    assert not result.wrongly_held
    assert not result.duplicates
    assert 0 < gap < GAP
    assert during.status == 503
    assert "Call API failing" in during.callapi
    assert after.status == 200, after.callapi


@contextlib.asynccontextmanager
async def simulator() -> AsyncIterator[Simulator]:
    """The chaos simulator (no random faults), its Call API on a port of its own."""
    async with running(chaos_simulator(), apart=True) as sim:
        yield sim


@pytest.mark.timeout(30)
@pytest.mark.parametrize("kind", list(Outage), ids=[k.value for k in Outage])
async def test_calls_that_reach_talk_while_the_call_api_is_down_are_held_once_after(
    tmp_path: Path, kind: Outage
) -> None:
    async with simulator() as sim:
        faults = sim.faults
        assert isinstance(faults, ChaosFaults)
        traffic = Traffic(sim, random.Random(f"outage-{kind}"), RATE, paced=True)
        config = chaos_config(sim, **OPTIONS)
        async with running_daemon(tmp_path, config, RULES) as (daemon, capture):
            await ready(daemon, sim)
            assert (await readyz(daemon)).status == 200
            async with traffic.flowing():
                period = await sim.begin_outage(kind)
                await traffic.allow(CALLS)
                await traffic.wait_emitted(CALLS)
                # The outage has been felt: some hold gave up for now.
                await daemon.wait_for(parked(capture), within=15)
                during = await readyz(daemon)
                await sim.end_outage()
            assert period.ended is not None
            await daemon.wait_for(settled(daemon, traffic), within=20)
            after = await readyz(daemon)
        # Stopped: anything held late or twice is on the account by now.
        result = verdict(traffic, faults.duplicates)
        gap = last_hold_after(sim, period.ended)
        outage_requests = [r for r in faults.log if r.what == f"outage_{kind}"]
    print(report(f"Call API outage: {kind}", result, traffic.count, gap, during, after))
    print(f"  requests met by the outage: {len(outage_requests)}")
    check(result, gap, during, after)
    if kind is not Outage.REFUSE:
        assert outage_requests, "no request met the outage"


def wrong_url(sim: Simulator, fault: str) -> str:
    """The simulator's Call API behind a name that does not resolve, or
    spoken to in TLS though it is plain HTTP."""
    port = urlsplit(sim.callapi_url).port
    if fault == "dns":
        return f"http://holdd-outage.invalid:{port}/v4.0"
    return f"https://127.0.0.1:{port}/v4.0"


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    ("fault", "error"),
    [("dns", "ClientConnectorDNSError"), ("tls", "ClientConnectorSSLError")],
    ids=["unresolvable", "tls-to-plain-http"],
)
async def test_calls_that_reach_talk_while_the_url_is_wrong_are_held_once_it_is_fixed(
    tmp_path: Path, fault: str, error: str
) -> None:
    async with simulator() as sim:
        faults = sim.faults
        assert isinstance(faults, ChaosFaults)
        traffic = Traffic(sim, random.Random(f"outage-{fault}"), RATE, paced=True)
        broken = chaos_config(sim, callapi_url=wrong_url(sim, fault), **OPTIONS)
        async with traffic.flowing():
            async with running_daemon(tmp_path, broken, RULES) as (daemon, capture):
                await sim.wait_for_clients(1)
                await traffic.allow(CALLS)
                await traffic.wait_emitted(CALLS)
                await daemon.wait_for(parked(capture), within=15)
                during = await readyz(daemon)
            await sim.wait_for_clients(0)
            # The fix: the same daemon, its URL right, its state database kept.
            ended = time.monotonic()
            fixed = chaos_config(sim, **OPTIONS)
            async with running_daemon(tmp_path, fixed, RULES) as (daemon, _capture):
                await ready(daemon, sim)
                await daemon.wait_for(settled(daemon, traffic), within=20)
                after = await readyz(daemon)
        result = verdict(traffic, faults.duplicates)
        gap = last_hold_after(sim, ended)
        before_fix = [r for r in faults.log if r.at < ended]
    print(report(f"Call API URL wrong: {fault}", result, traffic.count, gap, during, after))
    check(result, gap, during, after)
    assert error in during.callapi
    assert not before_fix, "a request reached the API through the wrong URL"


class Names(AbstractResolver):
    """The test's own resolver (aiohttp's public resolver interface): one
    name for the simulator's loopback address, unresolvable while `down`."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.down = False

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        if self.down or host != self.name:
            raise OSError(socket.EAI_NONAME, "Name or service not known")
        return [
            {
                "hostname": host,
                "host": "127.0.0.1",
                "port": port,
                "family": socket.AF_INET,
                "proto": 0,
                "flags": socket.AI_NUMERICHOST,
            }
        ]

    async def close(self) -> None:
        return None


@contextlib.asynccontextmanager
async def resolving_daemon(
    tmp_path: Path, config: str, names: Names
) -> AsyncIterator[tuple[Daemon, LogCapture]]:
    """support.inproc.running_daemon, with the daemon's connections made
    through `names` and no DNS cache (a cached name would outlive the outage)."""
    settings = load_settings(write_config(tmp_path, config, RULES))
    capture = LogCapture()
    logs.configure(fmt="json", level="debug", secrets=settings.secrets, stream=capture.buffer)

    def connector() -> aiohttp.TCPConnector:
        return aiohttp.TCPConnector(
            limit=settings.max_connections, resolver=names, use_dns_cache=False
        )

    daemon = Daemon(settings, load_rules(settings.rule_files), connector=connector)
    task = asyncio.create_task(daemon.run(install_signals=False))
    try:
        yield daemon, capture
    finally:
        daemon.request_stop("test over")
        async with asyncio.timeout(15):
            assert await task == 0


@pytest.mark.timeout(30)
async def test_calls_that_reach_talk_while_the_name_does_not_resolve_are_held_once_it_does(
    tmp_path: Path,
) -> None:
    async with simulator() as sim:
        faults = sim.faults
        assert isinstance(faults, ChaosFaults)
        names = Names("callapi.holdd.test")
        url = f"http://{names.name}:{urlsplit(sim.callapi_url).port}/v4.0"
        traffic = Traffic(sim, random.Random("outage-dns-in-place"), RATE, paced=True)
        config = chaos_config(sim, callapi_url=url, **OPTIONS)
        async with resolving_daemon(tmp_path, config, names) as (daemon, capture):
            await ready(daemon, sim)
            assert (await readyz(daemon)).status == 200
            async with traffic.flowing():
                names.down = True
                # Kept-alive connections need no name: close them, so every
                # request of the outage has to resolve one.
                await sim.begin_outage(Outage.REFUSE)
                await sim.end_outage()
                await traffic.allow(CALLS)
                await traffic.wait_emitted(CALLS)
                await daemon.wait_for(parked(capture), within=15)
                during = await readyz(daemon)
                names.down = False
                ended = time.monotonic()
            await daemon.wait_for(settled(daemon, traffic), within=20)
            after = await readyz(daemon)
        result = verdict(traffic, faults.duplicates)
        gap = last_hold_after(sim, ended)
    print(report("DNS outage in place", result, traffic.count, gap, during, after))
    check(result, gap, during, after)
    assert "ClientConnectorDNSError" in during.callapi
