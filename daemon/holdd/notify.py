"""The notification websocket: an async iterator of raw messages that
reconnects forever (shell).

The websockets library resets its own backoff after every successful
handshake, so a server that accepts and closes at once would be hammered
(ecosystem.md section 3.3). This listener keeps its own count of failures:
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

from holdd.backoff import full_jitter

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
    ) -> None:
        self.url = url
        self.headers = dict(headers or {})
        self.healthy_after = healthy_after
        self.delays = delays
        self.max_size = max_size
        self.ping_interval = ping_interval
        self.connected = asyncio.Event()
        self.reconnects = 0
        self.log = structlog.get_logger("holdd.notify")

    async def messages(self) -> AsyncIterator[str | bytes]:
        """Every message of every connection, until cancelled."""
        delays = self.delays()
        down_since: float | None = time.monotonic()
        while True:
            opened: float | None = None
            close_code: int | None = None
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
                    self.connected.set()
                    outage = None if down_since is None else round(opened - down_since, 3)
                    self.log.info("notify_connected", url=self.url, outage_seconds=outage)
                    async for message in ws:
                        yield message
                    close_code = ws.close_code
                    reason = "closed"
            except ConnectionClosed as exc:
                close_code = exc.rcvd.code if exc.rcvd else None
                reason = "connection_closed"
            except InvalidURI:
                raise
            except (OSError, TimeoutError, InvalidHandshake) as exc:
                reason = f"{type(exc).__name__}: {exc}"
            self.connected.clear()
            now = time.monotonic()
            down_since = now
            lived = None if opened is None else now - opened
            if lived is not None and lived >= self.healthy_after:
                delays = self.delays()  # a healthy session resets the backoff
            delay = next(delays)
            if close_code in _SLOW_CODES:
                delay = max(delay, 5.0)
            self.reconnects += 1
            self.log.warning(
                "notify_disconnected",
                reason=reason,
                close_code=close_code,
                session_seconds=None if lived is None else round(lived, 3),
                retry_in=round(delay, 3),
            )
            await asyncio.sleep(delay)
