"""The built-in UIS simulator's network side (shell), on aiohttp.

`Simulator` serves one `SimAccount` (holdd.sim.account) over HTTP:

* `POST /v4.0`: the Call API, JSON-RPC 2.0 (`docs/callapi.md` §1).
  Any other HTTP method answers 405 (§1: "Always use the POST method").
* `GET /notify`: a websocket; every notification (§8.3 variables) goes to every
  connected client as one JSON text message. UIS itself only has HTTP webhooks
  (§8.2); this stream is the form holdd's `[notify] url` reads.
* `/control/...`: a small control API for `holdd sim` users: start a call,
  answer it, finish the talk, end it, list the calls and the recorded requests,
  take the Call API down and bring it back (`/control/outage`).

With `start(callapi_port=...)` the Call API has a listener of its own, so that
an outage that closes its socket (`refuse`) leaves the notification stream
and the control API up, as they would be on separate hosts; the port is kept
and bound again when the outage ends.

Tests drive the same control steps in-process (`await sim.answer(id)`) and wait
for what the daemon did with `wait_for_requests`, never by sleeping.

Every Call API exchange goes through `handle_rpc`, the one place a fault layer
(failing requests, delays, HTTP 500 after applying) will wrap.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import orjson
from aiohttp import ClientSession, WSCloseCode, web

from holdd.sim.account import SimAccount
from holdd.sim.calls import CallNotFound, InvalidTransition, Notification, SimControlError
from holdd.sim.faults import Outage, OutagePeriod, RpcFaults
from holdd.sim.rpc import JsonDict, RecordedRequest
from holdd.sim.webhooks import QUIRKY_JSON, SUGGESTED_JSON, render, render_form

#: The Call API version path this simulator serves (§1 Versioning).
API_PATH = "/v4.0"
NOTIFY_PATH = "/notify"
#: How long closing the Call API's own listener waits for requests in flight.
_CALLAPI_SHUTDOWN = 1.0


class Simulator:
    """A fake UIS Call API v4.0 plus a notification websocket, on one local port."""

    def __init__(
        self,
        *,
        tokens: Iterable[str] = ("sim-token",),
        users: dict[str, str] | None = None,
        media_ids: Iterable[str] = ("2034", "2561", "3001"),
        tts_max_length: int = 500,
        minute_limit: int = 250,
        day_limit: int = 10000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._clock = clock
        self._account = SimAccount(
            tokens=tokens,
            users=users,
            media_ids=media_ids,
            tts_max_length=tts_max_length,
            minute_limit=minute_limit,
            day_limit=day_limit,
        )
        #: Fault knobs of the Call API side; none armed by default.
        self.faults = RpcFaults(self._account, clock)
        self._runner: web.AppRunner | None = None
        self._address: tuple[str, int] | None = None
        # The Call API's own listener (start(callapi_port=...)); its address
        # is kept while an outage has it closed.
        self._callapi_runner: web.AppRunner | None = None
        self._callapi_address: tuple[str, int] | None = None
        self._clients: set[web.WebSocketResponse] = set()
        #: Every request for the notification stream, refused or not.
        self.connection_attempts = 0
        self._refusing = False
        self._close_on_accept: int | None = None
        # Notified whenever a request is recorded or a client comes or goes.
        self._changed = asyncio.Condition()
        # Serialises broadcasts so every client gets the notifications in the
        # order the account produced them.
        self._send_lock = asyncio.Lock()

    # -- life cycle ---------------------------------------------------------

    async def start(
        self, host: str = "127.0.0.1", port: int = 0, *, callapi_port: int | None = None
    ) -> None:
        """Listen on host:port (port 0: any free port; read `url` afterwards).

        With `callapi_port` (0: any free port) the Call API listens there
        instead, on its own socket (read `callapi_url`).
        """
        if self._runner is not None:
            raise RuntimeError("the simulator is already running")
        apart = callapi_port is not None
        self._runner, self._address = await _listen(self._build_app(api=not apart), host, port)
        if callapi_port is not None:
            try:
                self._callapi_runner, self._callapi_address = await _listen(
                    self._build_callapi_app(), host, callapi_port, _CALLAPI_SHUTDOWN
                )
            except BaseException:
                await self.stop()
                raise

    async def stop(self) -> None:
        """Close every websocket client, then stop listening."""
        runner, self._runner = self._runner, None
        if runner is None:
            return
        if self.faults.outage is not None:
            self.faults.end_outage()  # hung requests let go
        callapi, self._callapi_runner = self._callapi_runner, None
        if callapi is not None:
            await callapi.cleanup()
        self._callapi_address = None
        for ws in list(self._clients):
            await ws.close(code=WSCloseCode.GOING_AWAY, message=b"simulator stopping")
        await runner.cleanup()
        self._address = None

    # -- Call API outages ---------------------------------------------------

    async def begin_outage(self, kind: Outage | str) -> OutagePeriod:
        """Take the Call API down until `end_outage` (holdd.sim.faults.Outage).

        `refuse` closes the Call API's socket: connections are refused, and
        the connections already open are closed. It needs the Call API on a
        port of its own (`start(callapi_port=...)`), since closing the shared
        one would take the notification stream down too.
        """
        kind = Outage(kind)
        if kind is Outage.REFUSE and self._callapi_address is None:
            raise RuntimeError("refusing connections needs start(callapi_port=...)")
        period = self.faults.begin_outage(kind)
        if kind is Outage.REFUSE:
            runner, self._callapi_runner = self._callapi_runner, None
            if runner is not None:
                await runner.cleanup()
        return period

    async def end_outage(self) -> OutagePeriod:
        """Bring the Call API back (on the same port after `refuse`); the
        period, its end the moment requests are answered again."""
        outage = self.faults.outage
        if outage is None:
            raise RuntimeError("no outage is going on")
        if outage.kind is Outage.REFUSE and self._callapi_runner is None:
            assert self._callapi_address is not None  # noqa: S101 - checked at the start
            host, port = self._callapi_address
            self._callapi_runner, _ = await _listen(
                self._build_callapi_app(), host, port, _CALLAPI_SHUTDOWN
            )
        return self.faults.end_outage()

    async def __aenter__(self) -> Simulator:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    # -- where it is and what it holds -------------------------------------

    @property
    def url(self) -> str:
        host, port = self._bound()
        return f"http://{_host_for_url(host)}:{port}"

    @property
    def callapi_url(self) -> str:
        if self._callapi_address is not None:
            host, port = self._callapi_address
            return f"http://{_host_for_url(host)}:{port}{API_PATH}"
        return self.url + API_PATH

    @property
    def notify_url(self) -> str:
        host, port = self._bound()
        return f"ws://{_host_for_url(host)}:{port}{NOTIFY_PATH}"

    @property
    def account(self) -> SimAccount:
        return self._account

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every Call API request received so far, oldest first (a copy)."""
        return list(self._account.requests)

    @property
    def connected_clients(self) -> int:
        return len(self._clients)

    def _bound(self) -> tuple[str, int]:
        if self._address is None:
            raise RuntimeError("the simulator is not running")
        return self._address

    # -- waiting for things to happen ---------------------------------------

    # The deadline is a parameter (ASYNC109) because tests read better with it and
    # the error then says how far the wait got.
    async def wait_for_clients(self, n: int, timeout: float = 10.0) -> None:  # noqa: ASYNC109
        """Return once exactly `n` websocket clients are connected (0: all have left)."""
        try:
            async with asyncio.timeout(timeout), self._changed:
                await self._changed.wait_for(lambda: len(self._clients) == n)
        except TimeoutError:
            raise TimeoutError(
                f"{len(self._clients)} of {n} websocket clients after {timeout} s"
            ) from None

    async def wait_for_requests(
        self,
        n: int,
        *,
        method: str | None = None,
        timeout: float = 10.0,  # noqa: ASYNC109
    ) -> list[RecordedRequest]:
        """Wait until at least `n` requests (of `method`, if given) were recorded; return them."""

        def matching() -> list[RecordedRequest]:
            return [r for r in self._account.requests if method is None or r.method == method]

        try:
            async with asyncio.timeout(timeout), self._changed:
                await self._changed.wait_for(lambda: len(matching()) >= n)
        except TimeoutError:
            what = "requests" if method is None else f"{method} requests"
            raise TimeoutError(f"{len(matching())} of {n} {what} after {timeout} s") from None
        return matching()

    async def _note_change(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    # -- the Call API -------------------------------------------------------

    async def handle_rpc(self, body: bytes) -> tuple[int, JsonDict]:
        """One Call API exchange: answer `body`, send what it caused, return (status, response).

        The notifications a request causes (`release.call` ends a call) reach the
        websocket clients before the HTTP answer is sent, as a fast UIS would.
        """
        status, response = self._account.handle(body, self._clock())
        await self._broadcast(self._account.drain_notifications())
        await self._note_change()
        return status, response

    async def _on_rpc(self, request: web.Request) -> web.StreamResponse:
        # The fault layer (holdd.sim.faults) decides whether the account sees
        # the request at all, and what the client gets back.
        return await self.faults.serve(request, self.handle_rpc)

    # -- the notification stream -------------------------------------------

    async def _on_notify(self, request: web.Request) -> web.StreamResponse:
        self.connection_attempts += 1
        if self._refusing:
            return web.Response(status=503, text="notification stream unavailable\n")
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        if self._close_on_accept is not None:
            # A server that accepts the handshake and closes at once: the
            # websockets client resets its backoff after every successful
            # handshake, so a naive client reconnects in a tight loop
            # (holdd.io.notify counts such short sessions and backs off).
            await ws.close(code=self._close_on_accept, message=b"try again later")
            return ws
        self._clients.add(ws)
        await self._note_change()
        try:
            # Clients have nothing to say; reading keeps pings and the close handshake going.
            async for _message in ws:
                pass
        finally:
            self._clients.discard(ws)
            await self._note_change()
        return ws

    async def _broadcast(self, notifications: list[Notification]) -> None:
        """Hand every notification, in order, to every connected client."""
        if not notifications:
            return
        await self.send_raw(*(orjson.dumps(note).decode() for note in notifications))

    # -- control, in process ------------------------------------------------

    async def start_call(self, **fields: object) -> int:
        """Start a call (fields of `CallSpec`), broadcast its notification; its call_session_id."""
        call, notifications = self._account.start_call(self._clock(), **fields)
        await self._broadcast(notifications)
        return call.call_session_id

    async def answer(self, call_session_id: int) -> None:
        """Connect the parties (SESSION -> TALK) and broadcast «Начало разговора»."""
        await self._broadcast(self._account.answer(call_session_id, self._clock()))

    async def finish_talk(self, call_session_id: int) -> None:
        """End the talk (TALK/HOLD -> POST_TALK) and broadcast «Окончание разговора»."""
        await self._broadcast(self._account.finish_talk(call_session_id, self._clock()))

    async def end_call(self, call_session_id: int) -> None:
        """End the session and broadcast «Завершение звонка» (after the talk's end if needed)."""
        await self._broadcast(self._account.end_call(call_session_id, self._clock()))

    # -- stream faults ---------------------------------------------------------

    async def drop_clients(self, code: int = WSCloseCode.GOING_AWAY) -> int:
        """Close every notification stream now; return how many were open."""
        clients = list(self._clients)
        for ws in clients:
            await ws.close(code=code, message=b"dropped by the simulator")
        return len(clients)

    def refuse_clients(self, refuse: bool = True) -> None:
        """While set, new stream connections are answered HTTP 503."""
        self._refusing = refuse

    def close_on_accept(self, code: int | None = WSCloseCode.TRY_AGAIN_LATER) -> None:
        """While set, every new stream is accepted, then closed with `code` at once."""
        self._close_on_accept = code

    async def post_webhook(
        self,
        url: str,
        variables: Mapping[str, object],
        *,
        secret: str | None,
        form: str = "json",
        carrier: str = "body",
    ) -> int:
        """POST (or GET) one notification the way UIS's notification server does.

        `form`: "json" (the reference's suggested template), "quirky" (quotes
        around placeholders, a missing variable), "form" (form body), "query"
        (GET with the variables in the query string). `carrier` says where the
        secret goes: "body", "header" (X-Holdd-Secret) or "query". Returns the
        HTTP status.
        """
        params: dict[str, str] = {}
        headers: dict[str, str] = {}
        values = dict(variables)
        in_body = secret if carrier == "body" else None
        if secret is not None and carrier == "header":
            headers["X-Holdd-Secret"] = secret
        elif secret is not None and carrier == "query":
            params["secret"] = secret
        elif in_body is not None:
            values["secret"] = in_body
        async with ClientSession() as session:
            if form == "query":
                query = {k: str(v) for k, v in values.items() if v is not None}
                query.update(params)
                async with session.get(url, params=query, headers=headers) as resp:
                    return resp.status
            if form == "form":
                body = render_form(values, in_body)
                headers["Content-Type"] = "application/x-www-form-urlencoded"
            else:
                template = QUIRKY_JSON if form == "quirky" else SUGGESTED_JSON
                if "secret" not in values:
                    template = template.replace('"secret":"{{secret}}",', "")
                body = render(template, values)
                headers["Content-Type"] = "application/json"
            async with session.post(
                url, data=body.encode(), params=params, headers=headers
            ) as resp:
                return resp.status

    async def send_raw(self, *messages: str | bytes) -> None:
        """Send messages exactly as given (text, or bytes as binary frames)."""
        async with self._send_lock:
            for ws in list(self._clients):
                for message in messages:
                    if ws.closed:
                        break
                    try:
                        if isinstance(message, bytes):
                            await ws.send_bytes(message)
                        else:
                            await ws.send_str(message)
                    except ConnectionError:
                        # The client went away mid-send; its handler forgets it.
                        break

    async def send_notifications(self, *notifications: Notification) -> None:
        """Send notifications as given, outside the account's life cycle.

        For the provider's imperfections: duplicates, reordered or malformed
        notifications. The account's state is not changed.
        """
        await self._broadcast(list(notifications))

    # -- control, over HTTP -------------------------------------------------

    async def _on_start_call(self, request: web.Request) -> web.Response:
        try:
            fields = orjson.loads(await request.read() or b"{}")
        except orjson.JSONDecodeError as exc:
            return _json_response({"error": f"invalid JSON: {exc}"}, status=400)
        if not isinstance(fields, dict):
            return _json_response({"error": "the body must be a JSON object"}, status=400)
        try:
            call_session_id = await self.start_call(**fields)
        except SimControlError as exc:
            return _control_error(exc)
        return _json_response({"call_session_id": call_session_id})

    async def _on_call_step(self, request: web.Request) -> web.Response:
        call_session_id = int(request.match_info["call_session_id"])
        step = request.match_info["step"]
        try:
            match step:
                case "answer":
                    await self.answer(call_session_id)
                case "finish_talk":
                    await self.finish_talk(call_session_id)
                case _:
                    await self.end_call(call_session_id)
        except SimControlError as exc:
            return _control_error(exc)
        call = self._account.call(call_session_id)
        return _json_response({"call_session_id": call_session_id, "state": call.state.value})

    async def _on_list_calls(self, request: web.Request) -> web.Response:
        language = self._account.leg_language
        calls = [call.snapshot(language) for call in self._account.all_calls()]
        return _json_response({"calls": calls})

    async def _on_list_requests(self, request: web.Request) -> web.Response:
        return _json_response({"requests": [r.to_json() for r in self._account.requests]})

    async def _on_outage(self, request: web.Request) -> web.Response:
        try:
            if request.method == "DELETE":
                period = await self.end_outage()
            else:
                try:
                    body = orjson.loads(await request.read() or b"{}")
                except orjson.JSONDecodeError as exc:
                    return _json_response({"error": f"invalid JSON: {exc}"}, status=400)
                kind = body.get("kind") if isinstance(body, dict) else None
                if kind not in tuple(Outage):
                    kinds = ", ".join(k.value for k in Outage)
                    return _json_response({"error": f"kind must be one of {kinds}"}, status=400)
                period = await self.begin_outage(kind)
        except RuntimeError as exc:
            return _json_response({"error": str(exc)}, status=409)
        answer: dict[str, object] = {"kind": period.kind.value}
        if period.ended is not None:
            answer["seconds"] = round(period.ended - period.started, 3)
        return _json_response(answer)

    def _build_callapi_app(self) -> web.Application:
        app = web.Application()
        app.router.add_post(API_PATH, self._on_rpc)
        return app

    def _build_app(self, *, api: bool = True) -> web.Application:
        app = web.Application()
        if api:
            app.router.add_post(API_PATH, self._on_rpc)
        app.router.add_get(NOTIFY_PATH, self._on_notify)
        app.router.add_post("/control/calls", self._on_start_call)
        app.router.add_get("/control/calls", self._on_list_calls)
        app.router.add_post(
            r"/control/calls/{call_session_id:\d+}/{step:answer|finish_talk|end}",
            self._on_call_step,
        )
        app.router.add_get("/control/requests", self._on_list_requests)
        app.router.add_post("/control/outage", self._on_outage)
        app.router.add_delete("/control/outage", self._on_outage)
        return app


async def _listen(
    app: web.Application, host: str, port: int, shutdown: float = 60.0
) -> tuple[web.AppRunner, tuple[str, int]]:
    """Serve `app` on host:port; the runner and the address bound."""
    runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=shutdown)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except BaseException:
        await runner.cleanup()
        raise
    bound = runner.addresses[0]
    return runner, (str(bound[0]), int(bound[1]))


def _json_response(body: Mapping[str, Any], *, status: int = 200) -> web.Response:
    return web.Response(
        status=status,
        body=orjson.dumps(body),
        content_type="application/json",
        charset="utf-8",
    )


def _control_error(exc: SimControlError) -> web.Response:
    if isinstance(exc, CallNotFound):
        status = 404
    elif isinstance(exc, InvalidTransition):
        status = 409
    else:
        status = 400
    return _json_response({"error": str(exc)}, status=status)


def _host_for_url(host: str) -> str:
    return f"[{host}]" if ":" in host else host


__all__ = ["API_PATH", "NOTIFY_PATH", "Outage", "OutagePeriod", "Simulator"]
