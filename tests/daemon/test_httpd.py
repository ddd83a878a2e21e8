"""/healthz, /readyz and /metrics over real sockets: the server on
127.0.0.1:0, an aiohttp client, no mocks."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiohttp
import pytest
import pytest_asyncio
from prometheus_client.parser import text_string_to_metric_families

from holdd.core.states import CallState
from holdd.io.http import HttpServer
from holdd.io.metrics import Metrics

pytestmark = pytest.mark.timeout(10)


@dataclass
class World:
    """What the readiness checks look at; tests flip it."""

    connected: bool = True
    rules: int = 3
    calls: dict[CallState, int] = field(default_factory=dict)

    def notify(self) -> tuple[bool, str]:
        return (True, "stream connected") if self.connected else (False, "stream disconnected")

    def loaded(self) -> tuple[bool, str]:
        return (self.rules > 0, f"{self.rules} rule(s) loaded")


@pytest_asyncio.fixture
async def served() -> AsyncIterator[tuple[HttpServer, Metrics, World, aiohttp.ClientSession]]:
    world = World()
    metrics = Metrics()
    metrics.track_calls(lambda: world.calls)
    server = HttpServer(metrics.registry, {"notify": world.notify, "rules": world.loaded}, port=0)
    async with server, aiohttp.ClientSession(base_url=server.url) as client:
        yield server, metrics, world, client


async def test_healthz(served: tuple[HttpServer, Metrics, World, aiohttp.ClientSession]) -> None:
    server, _, world, client = served
    world.connected = False  # liveness does not care about the stream
    async with client.get("/healthz") as resp:
        assert resp.status == 200
        assert resp.content_type == "application/json"
        body = await resp.json()
    assert body["status"] == "ok"
    assert body["uptime_seconds"] >= 0
    assert server.port > 0


async def test_readyz_follows_every_check(
    served: tuple[HttpServer, Metrics, World, aiohttp.ClientSession],
) -> None:
    _, _, world, client = served
    async with client.get("/readyz") as resp:
        assert resp.status == 200
        body = await resp.json()
    assert body == {
        "ready": True,
        "failing": [],
        "checks": {
            "notify": {"ok": True, "reason": "stream connected"},
            "rules": {"ok": True, "reason": "3 rule(s) loaded"},
        },
    }

    world.connected = False
    world.rules = 0
    async with client.get("/readyz") as resp:
        assert resp.status == 503
        body = await resp.json()
    assert body["ready"] is False
    assert body["failing"] == ["notify: stream disconnected", "rules: 0 rule(s) loaded"]

    world.connected = True
    world.rules = 1
    async with client.get("/readyz") as resp:
        assert resp.status == 200


async def test_a_check_that_raises_fails_readiness(
    served: tuple[HttpServer, Metrics, World, aiohttp.ClientSession],
) -> None:
    server, _, _, client = served

    def broken() -> tuple[bool, str]:
        raise RuntimeError("no credentials checked yet")

    server.checks["callapi"] = broken
    async with client.get("/readyz") as resp:
        assert resp.status == 503
        body = await resp.json()
    assert body["failing"] == ["callapi: check raised RuntimeError: no credentials checked yet"]
    async with client.get("/healthz") as resp:
        assert resp.status == 200  # the server itself is fine


async def test_metrics_in_prometheus_text(
    served: tuple[HttpServer, Metrics, World, aiohttp.ClientSession],
) -> None:
    _, metrics, world, client = served
    metrics.rule_matched("vip-welcome")
    metrics.action("hold", "held")
    world.calls = {CallState.TALK: 2, CallState.HOLD: 1}
    async with client.get("/metrics") as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
        text = await resp.text()
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    assert samples[("holdd_rule_matches_total", (("rule", "vip-welcome"),))] == 1
    assert samples[("holdd_calls", (("state", "TALK"),))] == 2
    assert samples[("holdd_calls", (("state", "HOLD"),))] == 1
    assert samples[("holdd_calls", (("state", "SESSION"),))] == 0

    world.calls = {CallState.TALK: 1}  # read again on the next scrape
    async with client.get("/metrics") as resp:
        assert 'holdd_calls{state="TALK"} 1.0' in await resp.text()


async def test_metrics_in_openmetrics_when_asked(
    served: tuple[HttpServer, Metrics, World, aiohttp.ClientSession],
) -> None:
    _, _, _, client = served
    headers = {"Accept": "application/openmetrics-text; version=1.0.0"}
    async with client.get("/metrics", headers=headers) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("application/openmetrics-text")
        assert (await resp.text()).endswith("# EOF\n")


async def test_unknown_paths_and_methods(
    served: tuple[HttpServer, Metrics, World, aiohttp.ClientSession],
) -> None:
    _, _, _, client = served
    async with client.get("/admin") as resp:
        assert resp.status == 404
    async with client.post("/readyz") as resp:
        assert resp.status == 405
    async with client.head("/healthz") as resp:
        assert resp.status == 200


async def test_stop_closes_the_port() -> None:
    server = HttpServer(Metrics().registry, port=0)
    with pytest.raises(RuntimeError, match="not started"):
        _ = server.port
    async with server:
        url = server.url
        async with aiohttp.ClientSession() as client, client.get(f"{url}/readyz") as resp:
            assert resp.status == 200  # no checks: nothing is failing
    async with aiohttp.ClientSession() as client:
        with pytest.raises(aiohttp.ClientConnectionError):
            async with client.get(f"{url}/healthz"):
                pass


async def test_a_busy_port_is_an_error_at_start() -> None:
    async with HttpServer(Metrics().registry, port=0) as first:
        second = HttpServer(Metrics().registry, port=first.port)
        with pytest.raises(OSError):
            await second.start()
        await second.stop()  # harmless when start failed
