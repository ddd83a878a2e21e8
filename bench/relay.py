"""The end-to-end baseline: the least a program can do to hold every call that
starts talking. Websocket in, orjson, `hold.call` out; no rules, no ledger,
no retries, no logs (bench helper, not a product)."""

from __future__ import annotations

import asyncio
import itertools

import aiohttp
import orjson
from websockets.asyncio.client import connect


async def relay(notify_url: str, callapi_url: str, token: str, max_connections: int = 10) -> None:
    """Hold every call whose talk starts, until cancelled."""
    ids = itertools.count(1)
    tasks: set[asyncio.Task[None]] = set()
    connector = aiohttp.TCPConnector(limit=max_connections)
    async with aiohttp.ClientSession(connector=connector) as http:

        async def hold(csid: int) -> None:
            body = {
                "jsonrpc": "2.0",
                "method": "hold.call",
                "id": next(ids),
                "params": {
                    "access_token": token,
                    "call_session_id": csid,
                    "contact_message": {"type": "media", "value": "2034"},
                },
            }
            headers = {"Content-Type": "application/json"}
            async with http.post(callapi_url, data=orjson.dumps(body), headers=headers) as resp:
                await resp.read()

        async with connect(notify_url, max_size=None, compression=None) as ws:
            async for message in ws:
                note = orjson.loads(message)
                if note.get("notification_mnemonic") == "talk_started":
                    task = asyncio.create_task(hold(note["call_session_id"]))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
