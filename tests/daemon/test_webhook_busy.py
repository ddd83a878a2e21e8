"""The webhook when the daemon is behind: its queue full, a post is answered
503 with `Retry-After` (UIS retries later), one ERROR line per 10 s however
many are refused, and nothing queued beyond the bound. A real aiohttp server
on 127.0.0.1:0 with the receiver's routes and a queue nobody drains."""

from __future__ import annotations

import asyncio
import io
import sqlite3
from pathlib import Path

import aiohttp
import orjson
from aiohttp import web

from holdd.config.rulefiles import load_rules
from holdd.config.settings import load_settings
from holdd.io import logs
from holdd.io.daemon import Daemon
from holdd.io.inputs import Frame
from holdd.io.store.sqlite import StateDb
from holdd.io.webhook import WebhookReceiver
from holdd.sim.server import Simulator
from support.config import MEDIA_RULE, config_text, write_config
from support.inproc import ready

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


async def test_readyz_is_503_while_the_webhook_cannot_accept(
    sim: Simulator, tmp_path: Path
) -> None:
    """The daemon behind (its store locked by another process): once the
    webhook's queue is full, posts get 503 and /readyz says why; when the
    store is free again the queue drains and /readyz is 200."""
    text = config_text(sim, stream=False) + (
        f'\n[webhook]\nlisten = "127.0.0.1:0"\npath = "/uis/notify"\nsecret = "{SECRET}-long"\n'
    )
    settings = load_settings(write_config(tmp_path, text, MEDIA_RULE))
    logs.configure(fmt="json", level="info", secrets=settings.secrets, stream=io.BytesIO())
    store = StateDb.open(settings.state_path, busy_timeout=0.2)
    daemon = Daemon(settings, load_rules(settings.rule_files), store=store)
    task = asyncio.create_task(daemon.run(install_signals=False))
    await ready(daemon)
    assert daemon.services.http is not None and daemon.webhook is not None
    probes = daemon.services.http.url
    host, port = daemon.webhook_address or ("", 0)
    hook = f"http://{host}:{port}/uis/notify"
    locker = sqlite3.connect(settings.state_path, isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")
    try:
        csid = await sim.start_call(direction="in", contact_phone_number="79260000401")
        await sim.answer(csid)
        post = {
            "secret": f"{SECRET}-long",
            "notification_name": "Начало разговора",
            "call_session_id": csid,
            "direction": "in",
            "contact_phone_number": "79260000401",
        }
        async with aiohttp.ClientSession() as http:
            async with http.post(hook, json=post) as resp:
                assert resp.status == 202
            await daemon.wait_for(lambda: daemon.store_trouble is not None)
            # The loop waits for the store; what comes in piles up, first in
            # the loop's queue, then in the webhook's.
            while not daemon.inputs.full():
                daemon.inputs.put_nowait(Frame({"notification_name": "x"}, "webhook"))
            queue = daemon.webhook.queue
            for _ in range(3):  # the forwarder takes one, then waits on the loop's queue
                while not queue.full():
                    queue.put_nowait(("webhook", {"notification_name": "x"}))
                await asyncio.sleep(0)
            async with http.post(hook, json=post) as resp:
                assert resp.status == 503
            async with http.get(f"{probes}/readyz") as resp:
                status, body = resp.status, await resp.text()
            assert status == 503
            assert "webhook cannot accept" in body and "state store failing" in body
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    try:
        await daemon.wait_for(
            lambda: daemon.webhook is not None and daemon.webhook.queue.empty(), within=30
        )
        await daemon.wait_for(lambda: daemon.store_trouble is None)
        async with aiohttp.ClientSession() as http, http.get(f"{probes}/readyz") as resp:
            assert resp.status == 200, await resp.text()
        await daemon.wait_for(lambda: csid in daemon.outcomes)
        assert sim.account.call(csid).hold_count == 1
    finally:
        daemon.request_stop("test over")
        async with asyncio.timeout(15):
            assert await task == 0
        store.close()
