"""Where the webhook's secret may travel, and that none of it is kept: every
`secret` key leaves the payload (also beside a notification wrapped under
`params` / `data` / `args`, in each item of a batch) before it is queued. A
real listener on 127.0.0.1:0 with the receiver's routes; the queue is what
the daemon would read."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import orjson
import pytest
import pytest_asyncio
from aiohttp import web

from holdd.io.listener import Listener
from holdd.io.webhook import MAX_BODY, WebhookReceiver

pytestmark = pytest.mark.timeout(10)

SECRET = "webhook-secret-5d1e77a0b9"
NOTE = {"call_session_id": 7, "notification_name": "Talk started"}


class Served:
    def __init__(self, receiver: WebhookReceiver, url: str) -> None:
        self.receiver = receiver
        self.url = url

    async def post(self, body: object, headers: dict[str, str] | None = None) -> int:
        async with (
            aiohttp.ClientSession() as session,
            session.post(self.url, data=orjson.dumps(body), headers=headers) as resp,
        ):
            return resp.status

    def queued(self) -> list[object]:
        out = []
        while not self.receiver.queue.empty():
            out.append(self.receiver.queue.get_nowait()[1])
        return out


@pytest_asyncio.fixture
async def served() -> AsyncIterator[Served]:
    queue: asyncio.Queue[tuple[str, object]] = asyncio.Queue(100)
    receiver = WebhookReceiver("/uis/notify", SECRET, queue)
    app = web.Application(client_max_size=MAX_BODY)
    receiver.routes(app)
    listener = Listener(app, "webhook")
    await listener.start("127.0.0.1", 0)
    host, port = listener.address
    try:
        yield Served(receiver, f"http://{host}:{port}/uis/notify")
    finally:
        await listener.stop()
        receiver.close()


@pytest.mark.parametrize(
    "body",
    [
        {**NOTE, "secret": SECRET},
        {"params": {**NOTE, "secret": SECRET}},
        {"data": {**NOTE, "secret": SECRET}},
        {"args": NOTE, "secret": SECRET},
        [{**NOTE, "secret": SECRET}, {"params": {"call_session_id": 8, "secret": SECRET}}],
    ],
    ids=["top", "params", "data", "args-beside", "batch"],
)
async def test_a_secret_in_the_body_is_accepted_and_taken_out(served: Served, body: object) -> None:
    assert await served.post(body) == 202
    [payload] = served.queued()
    assert b"secret" not in orjson.dumps(payload)
    assert b"call_session_id" in orjson.dumps(payload)


async def test_a_right_header_wins_and_a_body_secret_is_still_taken_out(served: Served) -> None:
    body = {"params": {**NOTE, "secret": "something-else"}}
    assert await served.post(body, {"X-Holdd-Secret": SECRET}) == 202
    [payload] = served.queued()
    assert payload == {"params": NOTE}


@pytest.mark.parametrize(
    "body",
    [
        NOTE,
        {"params": {**NOTE, "secret": "wrong"}},
        [{**NOTE, "secret": SECRET}, {**NOTE, "secret": "wrong"}],
        {**NOTE, "secret": 12345},
    ],
    ids=["none", "nested-wrong", "one-wrong-in-a-batch", "not-text"],
)
async def test_a_missing_or_wrong_body_secret_is_refused(served: Served, body: object) -> None:
    assert await served.post(body) == 401
    assert served.queued() == []
