"""The notification websocket: an async iterator of raw messages that
reconnects forever (shell).

The websockets library resets its own backoff after every successful
handshake, so a server that accepts and closes at once would be hammered
in a tight reconnect loop. This listener keeps its own count of failures:
a session shorter than `healthy_after` counts as one, and the next attempt
waits a full-jitter delay that grows with the count.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping

import structlog
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from holdd.core.backoff import full_jitter

#: Close codes that say "not now" or "not you": wait longer before retrying.
_SLOW_CODES = frozenset({1008, 1013})


class NotifyListener:
    def __init__(
        self,
        url: str,
        headers: Mapping[str, str] | None = None,
        *,
        healthy_after: float = 30.0,
        delays: Callable[[], Iterator[float]] = lambda: full_jitter(0.5, 60.0),
        max_size: int = 1024 * 1024,
        ping_interval: float = 15.0,
        idle_timeout: float = 0.0,
        on_connect: Callable[[float | None], None] = lambda _outage: None,
        on_disconnect: Callable[[str], None] = lambda _reason: None,
    ) -> None:
        self.url = url
        self.headers = dict(headers or {})
        self.healthy_after = healthy_after
        self.delays = delays
        self.max_size = max_size
        self.ping_interval = ping_interval
        #: Reconnect when no message arrived for this long (0: never). Pings
        #: prove the TCP path; this catches a server that stopped sending.
        self.idle_timeout = idle_timeout
        #: Called after every successful connect with the outage it ended (the
        #: daemon resyncs then), and after every disconnect with the reason.
        self.on_connect = on_connect
        self.on_disconnect = on_disconnect
        self.connected = asyncio.Event()
        self.reconnects = 0
        #: When the stream went down (monotonic), None while connected.
        self.down_since: float | None = time.monotonic()
        #: Seconds without a stream, summed over every outage so far.
        self.gap_seconds = 0.0
        self.log = structlog.get_logger("holdd.notify")

    async def messages(self) -> AsyncIterator[str | bytes]:
        """Every message of every connection, until cancelled."""
        delays = self.delays()
        while True:
            opened: float | None = None
            close_code: int | None = None
            detail: str | None = None
            try:
                async with connect(
                    self.url,
                    additional_headers=self.headers,
                    open_timeout=10,
                    ping_interval=self.ping_interval,
                    ping_timeout=self.ping_interval,
                    close_timeout=3,
                    max_size=self.max_size,
                    compression=None,
                ) as ws:
                    opened = time.monotonic()
                    outage = None if self.down_since is None else opened - self.down_since
                    if outage is not None:
                        self.gap_seconds += outage
                    self.down_since = None
                    self.connected.set()
                    self.log.info(
                        "notify_connected",
                        url=self.url,
                        outage_seconds=None if outage is None else round(outage, 3),
                    )
                    self.on_connect(outage)
                    reason = "closed"
                    while True:
                        try:
                            async with asyncio.timeout(self.idle_timeout or None):
                                message = await ws.recv()
                        except TimeoutError:
                            reason = "idle_timeout"
                            break
                        yield message
                    close_code = ws.close_code
            except ConnectionClosed as exc:
                close_code = exc.rcvd.code if exc.rcvd else None
                reason = "connection_closed"
            except InvalidURI:
                raise
            except (OSError, TimeoutError, InvalidHandshake) as exc:
                reason = type(exc).__name__
                detail = str(exc)
            self.connected.clear()
            now = time.monotonic()
            self.down_since = now
            lived = None if opened is None else now - opened
            if lived is not None and lived >= self.healthy_after:
                delays = self.delays()  # a healthy session resets the backoff
            delay = next(delays)
            if close_code in _SLOW_CODES:
                delay = max(delay, 5.0)
            self.reconnects += 1
            self.on_disconnect(reason if close_code is None else f"close_{close_code}")
            self.log.warning(
                "notify_disconnected",
                reason=reason,
                detail=detail,
                close_code=close_code,
                session_seconds=None if lived is None else round(lived, 3),
                retry_in=round(delay, 3),
            )
            await asyncio.sleep(delay)
