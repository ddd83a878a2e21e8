"""The webhook when the daemon is behind: its queue full, a post is answered
503 with `Retry-After` (UIS retries later), one ERROR line per 10 s however
many are refused, and nothing queued beyond the bound. A real aiohttp server
on 127.0.0.1:0 with the receiver's routes and a queue nobody drains."""

from __future__ import annotations

import asyncio
import io

import aiohttp
import orjson
from aiohttp import web

from holdd.io import logs
from holdd.io.webhook import WebhookReceiver

SECRET = "webhook-secret-3f9a0c"


async def test_a_full_queue_answers_503_with_retry_after_and_logs_once() -> None:
    buf = io.BytesIO()
    logs.configure(fmt="json", level="info", secrets=[SECRET], stream=buf)
    queue: asyncio.Queue[tuple[str, object]] = asyncio.Queue(maxsize=1)
    receiver = WebhookReceiver("/uis/notify", SECRET, queue)
    app = web.Application()
    receiver.routes(app)
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    url = f"http://{host}:{port}/uis/notify"
    statuses, retry_after = [], []
    try:
        async with aiohttp.ClientSession() as http:
            for n in range(1, 6):
                body = {"secret": SECRET, "call_session_id": n, "notification_name": "x"}
                async with http.post(url, json=body) as resp:
                    statuses.append(resp.status)
                    retry_after.append(resp.headers.get("Retry-After"))
    finally:
        await runner.cleanup()
    assert statuses == [202, 503, 503, 503, 503]
    assert retry_after[1:] == ["1"] * 4
    assert queue.qsize() == 1
    assert receiver.counts == {"accepted": 1, "busy": 4}
    lines = [orjson.loads(line) for line in buf.getvalue().splitlines()]
    busy = [e for e in lines if e["event"] == "webhook_busy"]
    assert len(busy) == 1 and busy[0]["level"] == "error"
    assert SECRET.encode() not in buf.getvalue()
