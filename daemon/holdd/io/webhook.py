"""The webhook receiver: UIS's notification server POSTs (or GETs) its
rendered template here (shell).

UIS renders a user-written template (docs/callapi.md section 8.2): JSON with
`{{var}}` placeholders, a form body, or a query string. The receiver accepts
all three, checks the shared secret in constant time (body key `secret`,
header `X-Holdd-Secret`, or query `secret`), answers at once and queues the
payload; the daemon's pipeline takes it from the queue exactly as it takes a
websocket message. The secret is removed from the payload before anything
else sees it.
"""

from __future__ import annotations

import asyncio
import hmac
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl

import orjson
import structlog
from aiohttp import web

from holdd.core.events import load_json
from holdd.core.throttle import Throttle

#: The most a notification body may weigh; UIS's are a few hundred bytes.
MAX_BODY = 64 * 1024
SECRET_HEADER = "X-Holdd-Secret"  # noqa: S105 - a header name, not a secret


class WebhookReceiver:
    def __init__(
        self,
        path: str,
        secret: str,
        queue: asyncio.Queue[tuple[str, object]],
    ) -> None:
        self.path = path
        self._secret = secret.encode()
        self.queue = queue
        self.counts: dict[str, int] = {}
        self.log = structlog.get_logger("holdd.webhook")
        #: A flood of 503s logs one line per 10 s, with the count held back.
        self._busy_log = Throttle(per=10.0, burst=1)

    def routes(self, app: web.Application) -> None:
        app.router.add_post(self.path, self._on_request)
        app.router.add_get(self.path, self._on_request)

    def _count(self, outcome: str) -> None:
        self.counts[outcome] = self.counts.get(outcome, 0) + 1

    async def _on_request(self, request: web.Request) -> web.Response:
        if request.content_length is not None and request.content_length > MAX_BODY:
            self._count("too_large")
            return web.Response(status=413, text="body too large\n")
        try:
            # The whole body, however it was split on the wire; the app's
            # client_max_size (MAX_BODY) bounds it.
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            self._count("too_large")
            return web.Response(status=413, text="body too large\n")
        except (ConnectionError, asyncio.IncompleteReadError):
            self._count("read_error")
            return web.Response(status=400, text="body could not be read\n")
        payload = _parse(body, request.content_type, request.query)
        given = _pop_secret(payload, request.headers.get(SECRET_HEADER), request.query)
        if given is None or not hmac.compare_digest(given.encode(), self._secret):
            self._count("unauthorized")
            self.log.warning(
                "webhook_unauthorized", remote=request.remote, secret_given=given is not None
            )
            return web.Response(status=401, text="secret missing or wrong\n")
        try:
            self.queue.put_nowait(("webhook", payload))
        except asyncio.QueueFull:
            self._count("busy")
            held_back = self._busy_log.allow("busy", time.monotonic())
            if held_back is not None:
                self.log.error(
                    "webhook_busy",
                    queued=self.queue.qsize(),
                    held_back=held_back,
                    reason="the daemon is behind; UIS is asked to retry later",
                )
            return web.Response(status=503, text="busy, try again\n", headers={"Retry-After": "1"})
        self._count("accepted")
        return web.Response(status=202, text="accepted\n")


def _parse(body: bytes, content_type: str, query: Mapping[str, str]) -> object:
    """The notification in a request: JSON body, form body, or the query string.

    Unparsable JSON is passed on as raw text, so the pipeline can reject it
    with a reason like any other bad message.
    """
    if body.strip():
        if content_type == "application/x-www-form-urlencoded":
            return dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
        try:
            return load_json(body)
        except orjson.JSONDecodeError:
            return body.decode("utf-8", "replace")
    return dict(query)


def _pop_secret(payload: object, header: str | None, query: Mapping[str, str]) -> str | None:
    """Take the secret out of the payload (so it is never kept) and return it."""
    from_body: Any = None
    if isinstance(payload, dict):
        from_body = payload.pop("secret", None)
        if (
            isinstance(from_body, str)
            and len(from_body) >= 2
            and from_body[0] == '"' == from_body[-1]
        ):
            from_body = from_body[1:-1]  # a form body keeps the template's quotes
    for candidate in (header, from_body, query.get("secret")):
        if isinstance(candidate, str) and candidate:
            return candidate
    return None
