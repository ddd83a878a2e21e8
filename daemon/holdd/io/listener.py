"""An aiohttp application on a TCP port, guarded against abusive clients
(shell): the probes' listener (`[http] listen`, io/http.py) and the
webhook's (`[webhook] listen`, io/webhook.py). docs/operations.md section 7
("Slow and abusive clients") says what an operator sees.

aiohttp's server has no header timeout and no cap on connections: a client
that opens thousands of connections and sends each a few bytes of a request
head now and then keeps them all, and the daemon runs out of file
descriptors. Each accepted connection is therefore wrapped in a
`_Connection`, an asyncio protocol between the transport and aiohttp's own
protocol that passes every byte and callback through unchanged and adds:

- **a header deadline**: a connection must deliver a complete request head
  within `header_timeout` of opening, or of its previous answer (an idle
  keep-alive connection is closed after that long too); else it is closed.
  A middleware tells the connection when aiohttp has parsed a head (the
  request reached the application) and when the handler is done.
- **a cap**: at most `connection_limit` connections are open. A connection
  past the cap closes the one that has waited longest for its request head
  (a slow client, or an idle keep-alive one); when every open connection is
  inside a request, the new one is closed at once. Either way the cost is
  an accept and a close: the loop is not starved, and a client that sends
  its request promptly gets in.
- **the body**: `body_timeout` bounds reading a body (the webhook answers
  408, io/webhook.py) and aiohttp's lingering, the reading of a body left
  unread after an early answer (a 401, say), before it closes.

Each connection holdd closes is counted (`ListenerStats`, exported as
`holdd_http_connections_closed_total`) and logged as
`http_connection_closed`, throttled per reason and client (io/throttled.py).
aiohttp's own error lines, a request it could not parse (answered 400) with
its traceback, go through `_ServerLog` the same way: `http_bad_request`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import structlog
from aiohttp import web
from aiohttp.http import HttpProcessingError
from aiohttp.typedefs import Handler

from holdd.io.throttled import ThrottledLog

#: Connections the kernel may queue before accept(); asyncio also accepts up
#: to this many per loop turn, so it bounds the work of one turn.
BACKLOG = 256
#: At stop, how long a request already being handled may take to finish.
SHUTDOWN_GRACE = 2.0


@dataclass(frozen=True, slots=True)
class Limits:
    """`[http] header_timeout`, `body_timeout`, `connection_limit` (seconds,
    seconds, connections per listener)."""

    header_timeout: float = 10.0
    body_timeout: float = 10.0
    connection_limit: int = 1024


@dataclass(slots=True)
class ListenerStats:
    """What /metrics reads at scrape time (io/metrics.py)."""

    #: Connections open now.
    open: int = 0
    #: Connections holdd closed, by reason: `header_timeout`, `evicted`,
    #: `over_limit`, `bad_request` (aiohttp answered 400 and closed).
    closed: dict[str, int] = field(default_factory=dict)


class _Connection(asyncio.Protocol):
    """One accepted connection: aiohttp's protocol inside, the guard around."""

    def __init__(self, listener: Listener, make_inner: Callable[[], asyncio.Protocol]) -> None:
        self._listener = listener
        self._make_inner = make_inner
        self.inner: asyncio.Protocol | None = None
        self.transport: asyncio.Transport | None = None
        self.source = "unknown"
        #: The header deadline, while the connection waits for a request head.
        self.deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)  # noqa: S101 - a TCP server's
        self.transport = transport
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple) and peer:
            self.source = str(peer[0])
        if self._listener.admit(self):
            self.inner = self._make_inner()
            self.inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self.inner is not None:
            self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received() if self.inner is not None else None

    def connection_lost(self, exc: Exception | None) -> None:
        self._listener.forget(self)
        if self.inner is not None:
            self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        if self.inner is not None:
            self.inner.pause_writing()

    def resume_writing(self) -> None:
        if self.inner is not None:
            self.inner.resume_writing()


class _ServerLog(logging.Logger):
    """The logger handed to aiohttp's protocol: its records become holdd's
    throttled lines instead of one traceback per bad request."""

    def __init__(self, listener: Listener) -> None:
        super().__init__(f"holdd.http.{listener.name}", logging.DEBUG)
        self._listener = listener

    def handle(self, record: logging.LogRecord) -> None:
        self._listener.server_said(record)


class Listener:
    """Serve `app` on (host, port) with `limits`; `start()` / `stop()`.

    `name` labels the metrics and log lines ("http", "webhook"); `stats` may
    be given to outlive the listener (a restart of the server).
    """

    def __init__(
        self,
        app: web.Application,
        name: str,
        limits: Limits | None = None,
        stats: ListenerStats | None = None,
    ) -> None:
        self.app = app
        self.name = name
        self.limits = limits or Limits()
        self.stats = stats if stats is not None else ListenerStats()
        self.warnings = ThrottledLog(structlog.get_logger("holdd.http"))
        self._open: set[_Connection] = set()
        #: Connections waiting for a request head, longest waiting first.
        self._waiting: dict[_Connection, None] = {}
        self._runner: web.AppRunner | None = None
        self._server: asyncio.Server | None = None
        app.middlewares.append(self._mark_request)

    # -- serving ----------------------------------------------------------------

    async def start(self, host: str, port: int) -> None:
        runner = web.AppRunner(
            self.app,
            handle_signals=False,
            access_log=None,
            shutdown_timeout=SHUTDOWN_GRACE,
            lingering_time=self.limits.body_timeout,
            logger=_ServerLog(self),
        )
        await runner.setup()
        try:
            make_inner = runner.server
            assert make_inner is not None  # noqa: S101 - set by setup()
            loop = asyncio.get_running_loop()
            self._server = await loop.create_server(
                lambda: _Connection(self, make_inner), host, port, backlog=BACKLOG
            )
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner

    async def stop(self) -> None:
        server, self._server = self._server, None
        runner, self._runner = self._runner, None
        if server is not None:
            server.close()
        if runner is not None:
            await runner.cleanup()  # every connection aiohttp holds is closed
        for conn in list(self._open):
            self._drop(conn)
            if conn.transport is not None:
                conn.transport.abort()
        if server is not None:
            await server.wait_closed()
        self.warnings.close()

    @property
    def address(self) -> tuple[str, int]:
        if self._server is None or not self._server.sockets:
            raise RuntimeError(f"the {self.name} listener is not started")
        bound = self._server.sockets[0].getsockname()
        return str(bound[0]), int(bound[1])

    # -- the guard ----------------------------------------------------------------

    def admit(self, conn: _Connection) -> bool:
        """A new connection: under the cap, or in the place of the one that
        has waited longest for its request head, or refused."""
        if len(self._open) >= self.limits.connection_limit:
            oldest = next(iter(self._waiting), None)
            if oldest is None:
                assert conn.transport is not None  # noqa: S101 - connection_made set it
                conn.transport.abort()
                self._closed("over_limit", conn.source)
                return False
            self._cut(oldest, "evicted", abort=True)
        self._open.add(conn)
        self.stats.open = len(self._open)
        self._wait_for_head(conn)
        return True

    def forget(self, conn: _Connection) -> None:
        """The connection is gone (connection_lost)."""
        self._drop(conn)

    def _wait_for_head(self, conn: _Connection) -> None:
        self._waiting.pop(conn, None)
        self._waiting[conn] = None
        if conn.deadline is not None:
            conn.deadline.cancel()
        loop = asyncio.get_running_loop()
        conn.deadline = loop.call_later(self.limits.header_timeout, self._head_overdue, conn)

    def _head_arrived(self, conn: _Connection) -> None:
        self._waiting.pop(conn, None)
        if conn.deadline is not None:
            conn.deadline.cancel()
            conn.deadline = None

    def _head_overdue(self, conn: _Connection) -> None:
        conn.deadline = None
        self._cut(conn, "header_timeout", abort=False)

    def _cut(self, conn: _Connection, reason: str, *, abort: bool) -> None:
        self._drop(conn)
        if conn.transport is not None:
            if abort:
                conn.transport.abort()
            else:
                conn.transport.close()
        self._closed(reason, conn.source)

    def _drop(self, conn: _Connection) -> None:
        self._open.discard(conn)
        self._waiting.pop(conn, None)
        if conn.deadline is not None:
            conn.deadline.cancel()
            conn.deadline = None
        self.stats.open = len(self._open)

    def _closed(self, reason: str, source: str) -> None:
        self.stats.closed[reason] = self.stats.closed.get(reason, 0) + 1
        self.warnings.warning(
            "http_connection_closed", reason=reason, source=source, listener=self.name
        )

    @web.middleware
    async def _mark_request(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Middleware: the head is in (no header deadline while the request is
        handled); when the handler is done, the next head's deadline starts."""
        transport = request.transport
        conn = transport.get_protocol() if transport is not None else None
        if not isinstance(conn, _Connection):
            return await handler(request)
        self._head_arrived(conn)
        try:
            return await handler(request)
        finally:
            if conn in self._open:
                self._wait_for_head(conn)

    # -- aiohttp's own log lines ----------------------------------------------------

    def server_said(self, record: logging.LogRecord) -> None:
        exc = record.exc_info[1] if record.exc_info else None
        args = record.args
        source = str(args[0]) if isinstance(args, tuple) and args else "unknown"
        if isinstance(exc, HttpProcessingError):
            # A request aiohttp could not parse: answered 400 and closed. The
            # reason is the error's class (a fixed set); what the client sent
            # is only in `detail`, cut short.
            self.stats.closed["bad_request"] = self.stats.closed.get("bad_request", 0) + 1
            # "Invalid header value char: <the bytes>": the words, not the bytes.
            words = (exc.message or "").strip().split(":", 1)[0].splitlines()
            self.warnings.warning(
                "http_bad_request",
                reason=type(exc).__name__,
                source=source,
                listener=self.name,
                status=exc.code,
                detail=words[0][:120] if words else "",
            )
        elif exc is not None:
            # A handler raised (a bug): answered 500. Its traceback is logged,
            # once per exception type per minute.
            self.warnings.emit(
                "error",
                "http_handler_failed",
                type(exc).__name__,
                source,
                {"listener": self.name, "message": record.getMessage()},
                exc,
            )
        elif record.levelno >= logging.WARNING:
            logging.getLogger("aiohttp.server").handle(record)
