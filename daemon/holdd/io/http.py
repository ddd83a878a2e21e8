"""The operator's HTTP endpoints on `[http] listen` (shell): GET /healthz,
/readyz and /metrics (docs/operations.md section 7).

- `/healthz` is liveness: it is answered by the event loop itself, so a 200
  means the process and its loop are alive (a blocked loop answers nothing).
- `/readyz` is readiness: 200 only while every named check passes, otherwise
  503 with each failing check's reason. A check is a plain callable returning
  `(ok, reason)`, evaluated on every request, so the answer is never stale.
  The daemon registers e.g. "notify" (stream connected or webhook listening),
  "rules" (a rule set is loaded), "callapi" (the credentials are accepted).
- `/metrics` is the Prometheus exposition of our own registry (metrics.py),
  text format 0.0.4 or OpenMetrics as the scraper asks. It runs on the loop,
  which is why scrape-time callbacks may read loop-owned state.

The server is an io/listener.py `Listener`: header deadline, body timeout
and connection cap (`[http] header_timeout`, `body_timeout`,
`connection_limit`). aiohttp's access log is off: a scrape every 15 s would
flood the journal.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from types import TracebackType

import orjson
from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from holdd.io.listener import Limits, Listener, ListenerStats

#: `(ok, reason)`: the reason says what is wrong (or what is fine) in a few words.
ReadinessCheck = Callable[[], tuple[bool, str]]

_JSON = "application/json"


class HttpServer:
    """/healthz, /readyz and /metrics on one aiohttp site.

    Use `async with HttpServer(...)` (or `start()` / `stop()`); `port` is the
    bound port, useful with port 0.
    """

    def __init__(
        self,
        registry: CollectorRegistry,
        checks: Mapping[str, ReadinessCheck] | Iterable[tuple[str, ReadinessCheck]] = (),
        *,
        host: str = "127.0.0.1",
        port: int = 9108,
        clock: Callable[[], float] = time.monotonic,
        limits: Limits | None = None,
    ) -> None:
        self.registry = registry
        items = checks.items() if isinstance(checks, Mapping) else checks
        self.checks: dict[str, ReadinessCheck] = dict(items)
        self.host = host
        self.requested_port = port
        self.clock = clock
        self.started_at = clock()
        self.limits = limits or Limits()
        #: Connections open and closed by the guard (io/metrics.py reads it).
        self.stats = ListenerStats()
        #: The listener serving `app()`; a new one at each `start()`.
        self.listener: Listener | None = None
        self._port: int | None = None

    # -- the app ----------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/metrics", self._metrics)
        return app

    def readiness(self) -> tuple[bool, dict[str, dict[str, object]]]:
        """Run every check; a check that raises counts as failing with its error."""
        results: dict[str, dict[str, object]] = {}
        for name, check in self.checks.items():
            try:
                ok, reason = check()
            except Exception as exc:  # a broken check must not break /readyz
                ok, reason = False, f"check raised {type(exc).__name__}: {exc}"
            results[name] = {"ok": bool(ok), "reason": reason}
        return all(r["ok"] for r in results.values()), results

    async def _healthz(self, _request: web.Request) -> web.Response:
        body = {"status": "ok", "uptime_seconds": round(self.clock() - self.started_at, 3)}
        return web.Response(body=orjson.dumps(body), content_type=_JSON)

    async def _readyz(self, _request: web.Request) -> web.Response:
        ready, results = self.readiness()
        failing = [f"{name}: {r['reason']}" for name, r in results.items() if not r["ok"]]
        body = {"ready": ready, "failing": failing, "checks": results}
        return web.Response(
            status=200 if ready else 503, body=orjson.dumps(body), content_type=_JSON
        )

    async def _metrics(self, request: web.Request) -> web.Response:
        encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
        return web.Response(body=encoder(self.registry), headers={"Content-Type": content_type})

    # -- serving ----------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the HTTP server is not started")
        return self._port

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def start(self) -> None:
        listener = Listener(self.app(), "http", self.limits, self.stats)
        await listener.start(self.host, self.requested_port)
        self.listener = listener
        self._port = listener.address[1]

    async def stop(self) -> None:
        listener, self.listener = self.listener, None
        if listener is not None:
            await listener.stop()

    async def __aenter__(self) -> HttpServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        _exc_type: type[BaseException] | None,
        _exc: BaseException | None,
        _tb: TracebackType | None,
    ) -> None:
        await self.stop()
