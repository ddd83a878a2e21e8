"""The webhook receiver: UIS's notification server POSTs (or GETs) its
rendered template here (shell).

UIS renders a user-written template (docs/callapi.md section 8.2): JSON with
`{{var}}` placeholders, a form body, or a query string. The receiver accepts
all three, checks the shared secret in constant time, answers at once and
queues the payload; the daemon's pipeline takes it from the queue exactly as
it takes a websocket message.

The secret may travel in the header `X-Holdd-Secret`, the query `secret`, or
the body (key `secret`, at the top or beside the payload under `params`,
`data` or `args`). A secret in the header or the query is checked before
the body is read: a wrong one is answered 401 at once, whatever the body.
Every `secret` key is taken out of the payload before anything else sees it.
Bytes that are not UTF-8 where the secret is expected are answered 400.

What a client can make happen at will is logged once per reason per client
per minute (io/throttled.py): `webhook_unauthorized`, `webhook_bad_request`.
The listener's own guards (header deadline, connection cap) are in
io/listener.py.
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
from holdd.io.throttled import ThrottledLog

#: The most a notification body may weigh; UIS's are a few hundred bytes.
MAX_BODY = 64 * 1024
SECRET_HEADER = "X-Holdd-Secret"  # noqa: S105 - a header name, not a secret
#: Where a payload may sit inside the body (core/events.py reads it there too).
_WRAPPERS = ("params", "data", "args")


class WebhookReceiver:
    """The routes of the webhook (`routes(app)`), served by io/listener.py.

    `body_timeout`: the most a body may take to arrive (answered 408).
    `counts`: requests by outcome, exported as `holdd_webhook_requests_total`.
    """

    def __init__(
        self,
        path: str,
        secret: str,
        queue: asyncio.Queue[tuple[str, object]],
        *,
        body_timeout: float = 10.0,
        warnings: ThrottledLog | None = None,
    ) -> None:
        self.path = path
        self._secret = secret.encode()
        self.queue = queue
        self.body_timeout = body_timeout
        self.counts: dict[str, int] = {}
        self.log = structlog.get_logger("holdd.webhook")
        #: One line per reason per client per minute (io/throttled.py).
        self.warnings = warnings if warnings is not None else ThrottledLog(self.log)
        #: A flood of 503s logs one line per 10 s, with the count held back.
        self._busy_log = Throttle(per=10.0, burst=1)

    def routes(self, app: web.Application) -> None:
        app.router.add_post(self.path, self._on_request)
        app.router.add_get(self.path, self._on_request)

    def close(self) -> None:
        """At stop: say the warnings still held back."""
        self.warnings.close()

    def _count(self, outcome: str) -> None:
        self.counts[outcome] = self.counts.get(outcome, 0) + 1

    async def _on_request(self, request: web.Request) -> web.Response:
        source = request.remote or "unknown"
        if request.content_length is not None and request.content_length > MAX_BODY:
            return self._refuse(413, "too_large", source, "body too large")
        try:
            early = _early_secret(request)
        except UnicodeError:
            text = f"{SECRET_HEADER} or the query's secret is not UTF-8"
            return self._refuse(400, "bad_request", source, text, reason="secret_not_utf8")
        if early is not None and not self._matches(early[1]):
            # Checked before the body is read: a wrong secret costs no read.
            return self._unauthorized(source, "secret_wrong", early[0])
        try:
            # The whole body, however it was split on the wire; the app's
            # client_max_size (MAX_BODY) bounds its size, body_timeout its time.
            async with asyncio.timeout(self.body_timeout):
                body = await request.read()
        except TimeoutError:
            return self._refuse(408, "body_timeout", source, "body too slow")
        except web.HTTPRequestEntityTooLarge:
            return self._refuse(413, "too_large", source, "body too large")
        except (ConnectionError, asyncio.IncompleteReadError):
            return self._refuse(400, "read_error", source, "body could not be read")
        payload = _parse(body, request.content_type, request.query)
        in_body = _pop_secrets(payload)
        if early is None:
            if not in_body:
                return self._unauthorized(source, "secret_missing", None)
            if not all(self._matches(given) for given in in_body):
                return self._unauthorized(source, "secret_wrong", "body")
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

    def _matches(self, given: str) -> bool:
        try:
            raw = given.encode("utf-8")
        except UnicodeError:
            return False
        return hmac.compare_digest(raw, self._secret)

    def _unauthorized(self, source: str, reason: str, carrier: str | None) -> web.Response:
        self._count("unauthorized")
        self.warnings.warning(
            "webhook_unauthorized",
            reason=reason,
            source=source,
            carrier=carrier,
            secret_given=reason != "secret_missing",
        )
        response = web.Response(status=401, text="secret missing or wrong\n")
        response.force_close()
        return response

    def _refuse(
        self, status: int, outcome: str, source: str, text: str, *, reason: str | None = None
    ) -> web.Response:
        """A request answered 4xx (not a secret problem), logged per client."""
        self._count(outcome)
        self.warnings.warning(
            "webhook_bad_request", reason=reason or outcome, source=source, status=status
        )
        response = web.Response(status=status, text=_printable(text) + "\n")
        response.force_close()
        return response


def _early_secret(request: web.Request) -> tuple[str, str] | None:
    """(carrier, secret) from the header or the query, the header first;
    None when neither has one. Raises UnicodeError for bytes that are not
    UTF-8 (aiohttp hands them over as surrogate escapes)."""
    for carrier, value in (
        ("header", request.headers.get(SECRET_HEADER)),
        ("query", request.query.get("secret")),
    ):
        if value:
            value.encode("utf-8")  # raises for surrogate escapes
            return carrier, value
    return None


def _printable(text: str) -> str:
    """`text` without surrogate escapes (a client's bytes must not break a
    log line or an answer)."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


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
    # aiohttp's pure-Python parser hands bytes that are not UTF-8 over as
    # surrogate escapes, which no log line or JSON encoder takes.
    return {_printable(k): _printable(v) for k, v in dict(query).items()}


def _pop_secrets(payload: object) -> list[str]:
    """Take every `secret` out of the payload (so none is ever kept) and
    return them: the top level, and beside the notification under
    `params` / `data` / `args` (docs/uis.md), of each item of a batch."""
    found: list[str] = []
    items = payload if isinstance(payload, list) else [payload]
    for item in items:
        if not isinstance(item, dict):
            continue
        places = [item, *(item[key] for key in _WRAPPERS if isinstance(item.get(key), dict))]
        for place in places:
            value: Any = place.pop("secret", None)
            if isinstance(value, str) and len(value) >= 2 and value[0] == '"' == value[-1]:
                value = value[1:-1]  # a form body keeps the template's quotes
            if value is not None:
                found.append(value if isinstance(value, str) else orjson.dumps(value).decode())
    return found
