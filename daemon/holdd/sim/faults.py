"""Fault injection for the simulated Call API (shell).

`RpcFaults.serve` stands between the HTTP request and `Simulator.handle_rpc`.
With no fault armed it reads the body, lets the account answer, and returns
the JSON answer unchanged.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import orjson
from aiohttp import web

from holdd.sim.state import JsonDict

Handler = Callable[[bytes], Awaitable[tuple[int, JsonDict]]]


class RpcFaults:
    """The fault knobs of the Call API side (none armed by default)."""

    async def serve(self, request: web.Request, handle: Handler) -> web.StreamResponse:
        status, response = await handle(await request.read())
        return json_response(response, status=status)


def json_response(body: object, *, status: int = 200) -> web.Response:
    # §1: responses are JSON, UTF-8.
    return web.Response(
        status=status, body=orjson.dumps(body), content_type="application/json", charset="utf-8"
    )
