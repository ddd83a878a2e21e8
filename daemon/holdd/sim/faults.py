"""Fault injection for the simulated Call API (shell).

`RpcFaults.serve` stands between the HTTP request and `Simulator.handle_rpc`
(`handle`, which applies the request to the account and returns its JSON
answer). With no fault armed it reads the body, lets the account answer, and
returns the answer unchanged.

Knobs, each one small method (a knob arms a fault for the next `n` requests,
optionally only those of one `method`; armed faults apply in the order they
were armed, one per request):

* `fail_next(n, mnemonic)`: answer with that JSON-RPC error; the account
  never sees the request. Error objects are built with
  `holdd.sim.rpc.error_object` and carry `metadata.limits` exactly where
  the account would add them (docs/callapi.md section 6).
* `http_500(n, after_apply)`: an HTML 500 page instead of an answer, before
  the account sees the request or after it has applied it.
* `delay(seconds, n)`: answer late (the request is applied after the delay,
  or before it with `after_apply=True`). `clear()` cuts pending delays short.
* `drop_connection(n, after_apply)`: close the connection without answering.
* `override_limits(**fields)`, `deprecate_version()`: rewrite the metadata
  of every answer (a small `minute_reset`, the section 1 version notice).
* `fail_next(..., echo_token=True)`: the error's `message` and
  `data.params.received` echo the request's `access_token`, as an API that
  quotes what it refused might (holdd must never log it).
* `begin_outage(kind)` / `end_outage()`: an outage of the whole endpoint, not
  of `n` requests: until it is switched off every request hangs (`hang`: read,
  never answered, its connection closed unapplied when the outage ends) or
  gets a proxy's HTML 502 page (`html`). `refuse` (nobody listens) needs the
  server's socket: `Simulator.begin_outage` closes it. Each outage is kept in
  `outages` with its start and end on the monotonic clock of `log`.
* `set_session_ttl`, `expire_sessions`, `set_minute_limit`: the account's own
  knobs (section 2 session keys, section 6 limits).

Every request is recorded in `log` (arrival and answer times on the
monotonic clock, method, call_session_id, what was done), including those
the account never saw, so tests can count attempts and measure the gaps
between them.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal

import orjson
from aiohttp import web

from holdd.sim.account import SimAccount
from holdd.sim.rpc import ERRORS, ERRORS_WITHOUT_LIMITS, JsonDict, error_object

Handler = Callable[[bytes], Awaitable[tuple[int, JsonDict]]]

_HTML_500 = (
    b"<html><head><title>500 Internal Server Error</title></head>"
    b"<body><h1>500 Internal Server Error</h1></body></html>"
)
#: What a reverse proxy answers while the API behind it is down.
_HTML_502 = (
    b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    b"<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n"
    b"</body>\r\n</html>\r\n"
)


class Outage(StrEnum):
    """What the Call API endpoint does while it is down."""

    #: Every request is read and never answered.
    HANG = "hang"
    #: Every request gets a proxy's HTML 502 page.
    HTML = "html"
    #: Nobody listens on the port: connections are refused.
    REFUSE = "refuse"


@dataclass(slots=True)
class OutagePeriod:
    """One outage of the endpoint, on the monotonic clock of `RpcFaults.log`."""

    kind: Outage
    started: float
    ended: float | None = None


@dataclass(slots=True)
class FaultRecord:
    """One request as the fault layer saw it."""

    #: time.monotonic() when the request arrived.
    at: float
    method: str | None
    call_session_id: int | None
    #: "passed", "failed:<mnemonic>", "http_500_before_apply", "http_500_after_apply",
    #: "delayed_before_apply", "delayed_after_apply", "dropped_before_apply",
    #: "dropped_after_apply"; during an outage "outage_hang", "outage_html",
    #: "outage_refuse" (a connection opened before the socket closed).
    what: str = "passed"
    #: time.monotonic() when the answer was handed over (or the connection dropped).
    done_at: float | None = None

    @property
    def applied(self) -> bool:
        """Whether the account saw (and answered) the request."""
        return (
            self.what == "passed"
            or self.what.endswith("after_apply")
            or (self.what == "delayed_before_apply")
        )


FaultKind = Literal["fail", "http_500", "delay", "drop"]


@dataclass(slots=True)
class _Armed:
    kind: FaultKind
    remaining: int
    method: str | None
    after_apply: bool = False
    seconds: float = 0.0
    mnemonic: str = ""
    code: int | None = None
    message: str | None = None
    data: JsonDict = field(default_factory=dict)
    limits: Mapping[str, int] | None = None
    echo_token: bool = False


class RpcFaults:
    """The fault knobs of the Call API side (none armed by default).

    `account` is the simulated account behind `handle`; the fault layer
    needs it only for the limits it puts into the errors it makes up and for
    the account knobs. The simulator passes it in; `attach` sets it later.
    """

    def __init__(
        self, account: SimAccount | None = None, clock: Callable[[], float] = time.time
    ) -> None:
        self.account = account
        self.clock = clock
        #: Every request seen, oldest first.
        self.log: list[FaultRecord] = []
        self._armed: list[_Armed] = []
        self._limits_override: dict[str, int] = {}
        self._api_version: JsonDict | None = None
        self._release = asyncio.Event()
        # Notified whenever a request has been answered (or dropped).
        self._changed = asyncio.Condition()
        #: Every outage so far, the current one (if any) last.
        self.outages: list[OutagePeriod] = []
        # Set when the current outage ends: hung requests let go then.
        self._outage_over = asyncio.Event()

    def attach(self, account: SimAccount, clock: Callable[[], float] | None = None) -> None:
        """Use `account` (and its clock) for limits and the account knobs."""
        self.account = account
        if clock is not None:
            self.clock = clock

    # -- request faults --------------------------------------------------------

    def fail_next(
        self,
        n: int,
        mnemonic: str,
        *,
        method: str | None = None,
        code: int | None = None,
        message: str | None = None,
        field: str | None = None,
        value: object = None,
        params: Mapping[str, Any] | None = None,
        limits: Mapping[str, int] | None = None,
        echo_token: bool = False,
    ) -> None:
        """The next `n` requests (of `method`) answer the error `mnemonic`, unapplied.

        A mnemonic the simulator's ERRORS table lacks (the reference's "also
        seen" errors, the CallGear spelling, or one made up) needs its `code`.
        `limits` overrides fields of the error's `metadata.limits`.
        `echo_token`: the message and `data.params.received` quote the
        request's `access_token`.
        """
        if code is None and mnemonic not in ERRORS:
            raise ValueError(f"{mnemonic!r} is not in the simulator's table: give its code")
        data: JsonDict = {}
        if field is not None:
            data["field"] = field
        if value is not None:
            data["value"] = value
        if params is not None:
            data["params"] = dict(params)
        self._arm(
            _Armed(
                "fail",
                n,
                method,
                mnemonic=mnemonic,
                code=code,
                message=message,
                data=data,
                limits=limits,
                echo_token=echo_token,
            )
        )

    def http_500(self, n: int = 1, after_apply: bool = False, *, method: str | None = None) -> None:
        """The next `n` requests get an HTML 500 page, applied first if `after_apply`."""
        self._arm(_Armed("http_500", n, method, after_apply=after_apply))

    def delay(
        self,
        seconds: float,
        n: int = 1,
        *,
        method: str | None = None,
        after_apply: bool = False,
    ) -> None:
        """The next `n` requests are answered `seconds` late.

        The request is applied after the delay (a slow API that is still
        working when the client gives up), or before it with `after_apply`.
        """
        self._arm(_Armed("delay", n, method, after_apply=after_apply, seconds=seconds))

    def drop_connection(
        self,
        n: int = 1,
        after_apply: bool = False,
        *,
        method: str | None = None,
        hang: float = 0.0,
    ) -> None:
        """The next `n` requests get no answer: the connection is closed, after
        applying the request if `after_apply`, and after hanging for `hang`
        seconds (a request still in flight when the client dies; `clear()`
        ends the hang early)."""
        self._arm(_Armed("drop", n, method, after_apply=after_apply, seconds=hang))

    def clear(self) -> None:
        """Disarm every fault, end an outage, and answer delayed requests now."""
        self._armed.clear()
        self._limits_override.clear()
        self._api_version = None
        self._release.set()
        self._release = asyncio.Event()
        if self.outage is not None:
            self.end_outage()

    # -- outages ------------------------------------------------------------------

    @property
    def outage(self) -> OutagePeriod | None:
        """The outage going on now, if any."""
        if self.outages and self.outages[-1].ended is None:
            return self.outages[-1]
        return None

    def begin_outage(self, kind: Outage | str) -> OutagePeriod:
        """From now until `end_outage`, every request meets `kind`.

        For `refuse` this only records the period: the server closes its
        socket (`Simulator.begin_outage`).
        """
        if self.outage is not None:
            raise RuntimeError(f"an outage is already going on ({self.outage.kind})")
        period = OutagePeriod(Outage(kind), time.monotonic())
        self.outages.append(period)
        self._outage_over = asyncio.Event()
        return period

    def end_outage(self) -> OutagePeriod:
        """The endpoint answers again; hung requests have their connection
        closed, unapplied. The period, with its end, is returned."""
        period = self.outage
        if period is None:
            raise RuntimeError("no outage is going on")
        period.ended = time.monotonic()
        self._outage_over.set()
        return period

    @property
    def armed(self) -> int:
        """Requests that armed faults will still affect."""
        return sum(a.remaining for a in self._armed)

    def attempts(self, method: str | None = None) -> list[FaultRecord]:
        """Every request of `method` (all if None) that arrived, applied or not."""
        return [r for r in self.log if method is None or r.method == method]

    # The deadline is a parameter (ASYNC109), as in Simulator.wait_for_requests.
    async def wait_for_attempts(
        self,
        n: int,
        *,
        method: str | None = None,
        answered: bool = True,
        timeout: float = 10.0,  # noqa: ASYNC109
    ) -> list[FaultRecord]:
        """Wait until `n` requests (of `method`) have been answered or dropped
        (or, with `answered=False`, have arrived)."""

        def finished() -> list[FaultRecord]:
            return [r for r in self.attempts(method) if r.done_at is not None or not answered]

        try:
            async with asyncio.timeout(timeout), self._changed:
                await self._changed.wait_for(lambda: len(finished()) >= n)
        except TimeoutError:
            what = "requests" if method is None else f"{method} requests"
            raise TimeoutError(f"{len(finished())} of {n} {what} after {timeout} s") from None
        return finished()

    # -- answer rewrites ---------------------------------------------------------

    def override_limits(self, **fields: int) -> None:
        """Report these `metadata.limits` fields (e.g. minute_reset=2) in every answer."""
        self._limits_override.update(fields)

    def deprecate_version(
        self,
        *,
        spelling: Literal["depricated", "deprecated"] = "depricated",
        current_version: str = "4.0",
        latest_version: str = "4.1",
    ) -> None:
        """Every answer says the called version is deprecated (section 1 Versioning).

        "depricated" is the UIS / CoMagic spelling, "deprecated" CallGear's.
        """
        self._api_version = {
            f"current_version_{spelling}": True,
            "current_version": current_version,
            "latest_version": latest_version,
        }

    # -- the account's knobs -----------------------------------------------------

    def set_session_ttl(self, seconds: float) -> None:
        """Session keys from login.user from now on live `seconds` (section 2: 1 h)."""
        self._need_account().session_ttl = seconds

    def expire_sessions(self) -> int:
        """Every session key handed out so far is past its hour now; return how many."""
        account = self._need_account()
        count = len(account.sessions)
        # The account drops a key it finds expired; forgetting them is the same
        # to a client: `access_token_invalid` (section 2).
        account.sessions.clear()
        return count

    def set_minute_limit(self, limit: int, *, used: int | None = None) -> None:
        """The account's points per minute, and optionally how many are used already."""
        account = self._need_account()
        account.points.minute_limit = limit
        if used is not None:
            account.points.minute_used = used

    def _need_account(self) -> SimAccount:
        if self.account is None:
            raise RuntimeError("no account attached to the fault layer (RpcFaults.attach)")
        return self.account

    # -- serving -------------------------------------------------------------------

    async def serve(self, request: web.Request, handle: Handler) -> web.StreamResponse:
        body = await request.read()
        method, call_session_id, request_id = _peek(body)
        record = FaultRecord(time.monotonic(), method, call_session_id)
        self.log.append(record)
        outage = self.outage
        fault = self._take(method) if outage is None else None
        async with self._changed:
            self._changed.notify_all()
        try:
            if outage is not None:
                return await self._down(request, record, outage.kind)
            if fault is None:
                status, response = await handle(body)
                return json_response(self._rewrite(response), status=status)
            stage = "after_apply" if fault.after_apply else "before_apply"
            match fault.kind:
                case "fail":
                    record.what = f"failed:{fault.mnemonic}"
                    token = _access_token(body) if fault.echo_token else None
                    return json_response(self._error_response(request_id, fault, token))
                case "delay":
                    record.what = f"delayed_{stage}"
                    if fault.after_apply:
                        status, response = await handle(body)
                        await self._pause(fault.seconds)
                    else:
                        await self._pause(fault.seconds)
                        status, response = await handle(body)
                    return json_response(self._rewrite(response), status=status)
                case "http_500":
                    record.what = f"http_500_{stage}"
                    if fault.after_apply:
                        await handle(body)
                    return web.Response(status=500, body=_HTML_500, content_type="text/html")
                case _:
                    record.what = f"dropped_{stage}"
                    if fault.after_apply:
                        await handle(body)
                    if fault.seconds:
                        await self._pause(fault.seconds)
                    if request.transport is not None:
                        request.transport.close()
                    # Never delivered: the transport is gone.
                    return web.Response(status=500)
        finally:
            record.done_at = time.monotonic()
            async with self._changed:
                self._changed.notify_all()

    async def _down(
        self, request: web.Request, record: FaultRecord, kind: Outage
    ) -> web.StreamResponse:
        """One request during an outage; never applied."""
        record.what = f"outage_{kind}"
        if kind is Outage.HTML:
            return web.Response(status=502, body=_HTML_502, content_type="text/html")
        # hang (or refuse, on a connection opened before the socket closed):
        # no answer until the outage ends, then the connection goes.
        if kind is Outage.HANG:
            await self._outage_over.wait()
        if request.transport is not None:
            request.transport.close()
        # Never delivered: the transport is gone.
        return web.Response(status=502)

    def _arm(self, fault: _Armed) -> None:
        if fault.remaining < 1:
            raise ValueError("a fault must apply to at least one request")
        self._armed.append(fault)

    def _take(self, method: str | None) -> _Armed | None:
        for fault in self._armed:
            if fault.method is None or fault.method == method:
                fault.remaining -= 1
                if fault.remaining == 0:
                    self._armed.remove(fault)
                return fault
        return None

    async def _pause(self, seconds: float) -> None:
        # The delay is the fault itself; `clear()` ends it early so that a
        # stopping simulator never waits for it.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._release.wait()

    def _limits(self, extra: Mapping[str, int] | None) -> JsonDict | None:
        limits: JsonDict = {}
        if self.account is not None:
            limits.update(self.account.points.limits(self.clock()))
        limits.update(self._limits_override)
        limits.update(extra or {})
        return limits or None

    def _error_response(
        self, request_id: object, fault: _Armed, token: str | None = None
    ) -> JsonDict:
        data = dict(fault.data)
        if token is not None:
            data["params"] = {**data.get("params", {}), "received": token}
        if fault.mnemonic == "limit_exceeded" and "params" not in data:
            maximum = self.account.points.minute_limit if self.account is not None else 0
            data["params"] = {"limit_type": "minute", "limit_max_value": maximum}
        if fault.mnemonic in ERRORS:
            error = error_object(fault.mnemonic, data)
        else:
            error = {
                "code": fault.code,
                "message": fault.message or f"{fault.mnemonic} (simulated)",
                "data": {"mnemonic": fault.mnemonic, **data},
            }
        if fault.code is not None:
            error["code"] = fault.code
        if fault.message is not None:
            error["message"] = fault.message
        if token is not None:
            error["message"] = f"{error['message']} (access_token {token})"
        # Section 6: limits in every answer but those of the listed errors.
        if fault.mnemonic not in ERRORS_WITHOUT_LIMITS:
            limits = self._limits(fault.limits)
            if limits is not None:
                error["data"]["metadata"] = {"limits": limits}
        response: JsonDict = {"jsonrpc": "2.0", "id": request_id, "error": error}
        return self._rewrite(response, copy=False)

    def _rewrite(self, response: JsonDict, *, copy: bool = True) -> JsonDict:
        """Apply the limit override and the version notice to one answer."""
        if not self._limits_override and self._api_version is None:
            return response
        if copy:
            # The account keeps the original in its request log.
            response = orjson.loads(orjson.dumps(response))
        result = response.get("result")
        error = response.get("error")
        metadata: JsonDict | None = None
        if isinstance(result, dict):
            metadata = result.setdefault("metadata", {})
        elif isinstance(error, dict) and isinstance(error.get("data"), dict):
            metadata = error["data"].get("metadata")
            if metadata is None and self._api_version is not None:
                metadata = error["data"]["metadata"] = {}
        if metadata is None:
            return response
        if self._limits_override and isinstance(metadata.get("limits"), dict):
            metadata["limits"].update(self._limits_override)
        if self._api_version is not None:
            metadata["api_version"] = dict(self._api_version)
        return response


def _peek(body: bytes) -> tuple[str | None, int | None, object]:
    """(method, params.call_session_id, id) of a request body, where it has them."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None, None, None
    if not isinstance(doc, dict):
        return None, None, None
    method = doc.get("method") if isinstance(doc.get("method"), str) else None
    params = doc.get("params")
    csid = params.get("call_session_id") if isinstance(params, dict) else None
    if not isinstance(csid, int) or isinstance(csid, bool):
        csid = None
    return method, csid, doc.get("id")


def _access_token(body: bytes) -> str | None:
    """`params.access_token` of a request body, where it has one."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    params = doc.get("params") if isinstance(doc, dict) else None
    token = params.get("access_token") if isinstance(params, dict) else None
    return token if isinstance(token, str) else None


def json_response(body: object, *, status: int = 200) -> web.Response:
    # §1: responses are JSON, UTF-8.
    return web.Response(
        status=status, body=orjson.dumps(body), content_type="application/json", charset="utf-8"
    )


__all__ = ["FaultRecord", "Outage", "OutagePeriod", "RpcFaults", "json_response"]
