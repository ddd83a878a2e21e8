"""Call API v4.0 client: JSON-RPC 2.0 over one pooled aiohttp session (shell).

Every request is one JSON-RPC object POSTed to the versioned URL with
`access_token` inside `params` (docs/callapi.md section 1). What the client
does for every request, so that its callers do not have to:

* **Errors** are typed by `code` + `data.mnemonic` (section 5,
  holdd.callapi.errors) and raised as holdd.callapi.failures; an unknown
  mnemonic is kept, counted and logged once.
* **Credentials** (section 2, holdd.callapi.auth): a permanent key, or session keys
  from `login.user` renewed before `expire_at` and again when the API rejects
  them (the failed request is then sent once more). A permanent key that is
  rejected sets `credentials_ok = False` with a reason (one ERROR line, no
  loop), so /readyz can say so.
* **Limits** (section 6): `metadata.limits` of every answer (success, and
  `error.data.metadata`) is read; requests are spread out as the minute or
  day budget runs low, and after `limit_exceeded` nothing is sent until the
  reset. Waits never run past the caller's deadline (`RateLimitWait`).
* **One request per call**: never two requests in flight for the same
  `call_session_id` (holdd.callapi.locks).

What the client does not do is retry: `hold.call` is not idempotent, so the
caller (holdd.io.runner) decides. An exchange whose outcome is unknown
(timeout, dropped connection, HTTP 5xx without a JSON-RPC body) raises
`OutcomeUnknown`; one that certainly never reached the API raises
`RequestNotSent`.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Awaitable, Callable, Mapping
from types import MappingProxyType
from typing import Any, Final

import aiohttp
import structlog

from holdd.callapi.answers import ActiveCall, Answer, Limits
from holdd.callapi.auth import PermanentKey, SessionKey, SessionKeys, TokenSource
from holdd.callapi.failures import (
    CallApiError,
    LimitExceeded,
    OutcomeUnknown,
    ProtocolError,
    RateLimitWait,
    RequestNotSent,
    TokenRejected,
)
from holdd.callapi.locks import CallLocks
from holdd.callapi.pacing import Pacing, RateGate
from holdd.callapi.rpc import read_reply, request_body, secrets_of
from holdd.callapi.slots import Slots
from holdd.callapi.stats import ClientStats
from holdd.config.credentials import LoginPassword, Secret
from holdd.core.events import beyond_int64
from holdd.core.rules.model import ContactMessage

_HEADERS: Final[Mapping[str, str]] = MappingProxyType(
    {"Content-Type": "application/json; charset=UTF-8", "Accept": "application/json"}
)


class CallApiClient:
    """One client for the life of the daemon; the aiohttp session is the caller's.

    `credentials` is a permanent key (`Secret`) or `LoginPassword` for
    `login.user` session keys (holdd.config.settings, docs/callapi.md section 2).
    `timeout` bounds one HTTP exchange: connect, send and receive, never
    the wait for a connection. Requests take one of `connections` slots
    (the pool's size: the session's connector limit by default) in the
    order they ask; a request whose `deadline` (monotonic) passes while it
    waits for a slot or for the rate gate is not sent (`RequestNotSent`),
    which is never mistaken for an unknown outcome.
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        url: str,
        credentials: Secret | LoginPassword,
        timeout: float,
        *,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        pacing: Pacing | None = None,
        refresh_margin: float = 60.0,
        connections: int | None = None,
    ) -> None:
        self.session = session
        self.url = url
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self.monotonic = monotonic
        limit = connections or getattr(session.connector, "limit", 0) or 100
        #: At most one exchange per pooled connection: none ever waits in
        #: aiohttp's pool, where its timeout would already be running.
        self._slots = Slots(limit, monotonic)
        self.clock = clock
        self._sleep = sleep
        self._ids = itertools.count(1)
        self.gate = RateGate(pacing or Pacing(), monotonic)
        self.stats = ClientStats()
        #: The `metadata.limits` of the latest answer that had them (API budget remaining).
        self.last_limits: Limits | None = None
        #: False while the API refuses the credentials or the account (an alert).
        self.credentials_ok = True
        #: Why `credentials_ok` is False: "<mnemonic>: <hint>".
        self.credentials_problem: str | None = None
        #: Why the latest exchange got no usable answer (connection refused,
        #: DNS, TLS, a timeout, HTML or another non-JSON-RPC reply), and since
        #: when (monotonic); None once the API answers again (/readyz).
        self.unreachable: tuple[str, float] | None = None
        self.auth: TokenSource
        if isinstance(credentials, LoginPassword):
            self.auth = SessionKeys(
                credentials, self._login_user, clock=clock, margin=refresh_margin
            )
        else:
            self.auth = PermanentKey(credentials)
        self._locks = CallLocks()
        self._deprecation_logged = False
        self._unknown_logged: set[tuple[int, str]] = set()
        self._wide_logged: set[tuple[str, str]] = set()
        self._slow = ""
        #: Asked right before a request goes out: a reason not to send it now
        #: (a shared store's lease no longer surely held), or None.
        self.send_guard: Callable[[str], str | None] = lambda _method: None
        self.log = structlog.get_logger("holdd.callapi")

    # -- methods ---------------------------------------------------------------

    async def hold_call(
        self, call_session_id: int, message: ContactMessage, *, deadline: float | None = None
    ) -> Answer:
        """`hold.call` (section 3.2): only valid while the call is in TALK. Not idempotent."""
        return await self.call(
            "hold.call",
            {
                "call_session_id": call_session_id,
                "contact_message": {"type": message.type, "value": message.value},
            },
            deadline=deadline,
        )

    async def unhold_call(self, call_session_id: int, *, deadline: float | None = None) -> Answer:
        """`unhold.call` (section 3.3): only valid in HOLD, after `hold.call`."""
        return await self.call(
            "unhold.call", {"call_session_id": call_session_id}, deadline=deadline
        )

    async def list_calls(
        self,
        *,
        direction: str | None = None,
        virtual_phone_number: str | None = None,
        deadline: float | None = None,
    ) -> list[ActiveCall]:
        """`list.calls` (section 3.4): every active session, optionally filtered."""
        params: dict[str, Any] = {}
        if direction is not None:
            params["direction"] = direction
        if virtual_phone_number is not None:
            params["virtual_phone_number"] = virtual_phone_number
        answer = await self.call("list.calls", params, deadline=deadline)
        if not isinstance(answer.data, list):
            raise ProtocolError("list.calls", "result.data is not a list")
        calls: list[ActiveCall] = []
        for item in answer.data:
            parsed = ActiveCall.parse(item)
            if parsed is None:
                self.stats.bad_list_entries += 1
                wide = isinstance(item, dict) and beyond_int64(item.get("call_session_id"))
                reason = "number_out_of_range" if wide else "no call_session_id"
                self.log.warning("callapi_list_entry_skipped", reason=reason)
                continue
            calls.append(parsed)
        return calls

    async def logout(self, *, deadline: float | None = None) -> None:
        """`logout.user` for the current session key, if there is one (section 2)."""
        if not isinstance(self.auth, SessionKeys) or self.auth.current is None:
            return
        token = self.auth.current
        self.auth.forget()
        await self._exchange("logout.user", {"access_token": token.reveal()}, deadline)

    # -- one request -------------------------------------------------------------

    async def call(
        self, method: str, params: Mapping[str, Any], *, deadline: float | None = None
    ) -> Answer:
        """Send `method` with `params` (the key is added) and return its answer.

        Requests naming a `call_session_id` wait for any other request for the
        same call to finish first. A rejected session key is replaced and the
        request sent once more (section 2).
        """
        csid = params.get("call_session_id")
        async with self._locks.hold(csid if isinstance(csid, int) else None):
            token = await self.auth.token(deadline)
            try:
                return await self._exchange(
                    method, {"access_token": token.reveal(), **params}, deadline
                )
            except TokenRejected as exc:
                if not self.auth.refreshable:
                    raise
                self.auth.invalidate(token)
                self.log.info("callapi_token_rejected", method=method, mnemonic=exc.mnemonic)
                token = await self.auth.token(deadline)
                try:
                    return await self._exchange(
                        method, {"access_token": token.reveal(), **params}, deadline
                    )
                except TokenRejected as again:
                    # A key fresh from login.user refused: that needs a human.
                    self._credentials_rejected(again)
                    raise

    async def _login_user(
        self, credentials: LoginPassword, deadline: float | None, reason: str
    ) -> SessionKey:
        """`login.user` (section 2); failures of the exchange mean the caller's
        request was never sent."""
        self.stats.logins[reason] += 1
        params = {"login": credentials.login, "password": credentials.password.reveal()}
        try:
            answer = await self._exchange("login.user", params, deadline)
        except RequestNotSent:
            raise
        except ProtocolError as exc:
            raise RequestNotSent("login.user", "login_bad_answer", exc.reason) from None
        except OutcomeUnknown as exc:
            # Whatever became of the login, the request it was for never left.
            raise RequestNotSent("login.user", f"login_{exc.reason}") from None
        data = answer.data if isinstance(answer.data, dict) else {}
        token, expire_at = data.get("access_token"), data.get("expire_at")
        if (
            not isinstance(token, str)
            or not token
            or not isinstance(expire_at, int | float)
            or isinstance(expire_at, bool)
        ):
            raise RequestNotSent("login.user", "login_bad_answer", "no access_token / expire_at")
        if beyond_int64(expire_at):
            raise RequestNotSent(
                "login.user", "login_bad_answer", "expire_at is outside the signed 64-bit range"
            )
        now = self.clock()
        self.log.info(
            "callapi_login",
            user=credentials.login,
            reason=reason,
            expires_in=round(float(expire_at) - now),
        )
        return SessionKey(Secret(token), float(expire_at), now)

    async def _exchange(
        self, method: str, params: Mapping[str, Any], deadline: float | None
    ) -> Answer:
        """One HTTP exchange: wait for the rate gate, POST, read the answer."""
        try:
            wait = self.gate.reserve(method, deadline)
        except RateLimitWait as exc:
            self.stats.not_sent[(method, exc.reason)] += 1
            raise
        if wait > 0:
            await self._sleep(wait)
        request_id = next(self._ids)
        body = request_body(method, request_id, params)
        try:
            await self._slots.take(deadline)
        except TimeoutError:
            self.stats.not_sent[(method, "queue_timeout")] += 1
            raise RequestNotSent(method, "queue_timeout", "no free connection") from None
        if (why := self.send_guard(method)) is not None:
            self._slots.release()
            self.stats.not_sent[(method, why)] += 1
            raise RequestNotSent(method, why)
        self.stats.requests[method] += 1
        try:
            async with self.session.post(
                self.url, data=body, headers=_HEADERS, timeout=self.timeout
            ) as response:
                raw = await response.read()
                status = response.status
        except aiohttp.ClientConnectorCertificateError:
            # TLS verification is on (section 1: HTTPS); a bad certificate is
            # not something a retry fixes.
            self._unreachable("tls: the server's certificate was rejected")
            raise ProtocolError(method, "the server's TLS certificate was rejected") from None
        except aiohttp.ClientConnectorError as exc:
            # No connection was made: the API never saw the request.
            self.stats.not_sent[(method, "connect")] += 1
            self._unreachable(f"connect: {type(exc).__name__}")
            raise RequestNotSent(method, "connect", type(exc).__name__) from None
        except TimeoutError:
            self.stats.unknown_outcomes[(method, "timeout")] += 1
            self._unreachable("timeout: no answer in time")
            raise OutcomeUnknown(method, "timeout") from None
        except aiohttp.ClientError as exc:
            self.stats.unknown_outcomes[(method, "connection")] += 1
            self._unreachable(f"connection: {type(exc).__name__}")
            raise OutcomeUnknown(method, "connection", type(exc).__name__) from None
        finally:
            self._slots.release()
        return self._read(method, request_id, status, raw, secrets_of(params))

    @property
    def queue_depth(self) -> int:
        """Requests waiting for a connection slot now."""
        return self._slots.depth

    @property
    def oldest_wait(self) -> float:
        """How long the longest-waiting request has waited, in seconds."""
        return self._slots.oldest_wait

    def _read(
        self, method: str, request_id: int, status: int, raw: bytes, secrets: tuple[str, ...]
    ) -> Answer:
        """Act on one reply (holdd.callapi.rpc): count and log it, then return
        or raise. The request's `secrets` never survive in what the answer quotes."""
        reply = read_reply(method, request_id, status, raw, secrets)
        self._wide_numbers(method, reply.out_of_range)
        outcome = reply.outcome
        if isinstance(outcome, Answer | CallApiError):
            self.unreachable = None  # the API answers (an error is an answer)
        else:
            self._unreachable(f"{outcome.reason}: HTTP {status}, no JSON-RPC answer")
        if isinstance(outcome, Answer):
            self._observe(outcome.limits, reply.metadata)
            self.stats.answers[(method, "ok")] += 1
            self._credentials_accepted()
            return outcome
        if isinstance(outcome, CallApiError):
            self._observe(outcome.limits, reply.metadata)
            self._on_error(outcome)
        elif isinstance(outcome, RequestNotSent):
            self.stats.not_sent[(method, outcome.reason)] += 1
        elif not isinstance(outcome, ProtocolError):
            self.stats.unknown_outcomes[(method, outcome.reason)] += 1
        raise outcome

    # -- bookkeeping -----------------------------------------------------------

    def _observe(self, limits: Limits | None, metadata: object) -> None:
        """Section 6 limits and section 1 version notice of one answer."""
        if limits is not None:
            self.last_limits = limits
            self.gate.observe(limits)
            slow = self.gate.spacing_by if self.gate.spacing else ""
            if slow != self._slow:
                self._slow = slow
                if slow:
                    self.log.warning(
                        "callapi_slowing_down",
                        limit_type=slow,
                        minute_remaining=limits.minute_remaining,
                        day_remaining=limits.day_remaining,
                        spacing=round(self.gate.spacing, 3),
                    )
                else:
                    self.log.info("callapi_pace_restored")
        version = metadata.get("api_version") if isinstance(metadata, dict) else None
        if isinstance(version, dict) and not self._deprecation_logged:
            # [DOC-2017]/[DOC-CM] spell it "depricated", [DOC-CG] "deprecated".
            flag = version.get(
                "current_version_depricated", version.get("current_version_deprecated")
            )
            if flag is True or (isinstance(flag, str) and flag.strip().lower() == "true"):
                self._deprecation_logged = True
                self.log.warning(
                    "callapi_version_deprecated",
                    current_version=version.get("current_version"),
                    latest_version=version.get("latest_version"),
                    hint="a deprecated version is served for 2 months: move [callapi] url"
                    " to the latest version",
                )

    def _on_error(self, error: CallApiError) -> None:
        self.stats.answers[(error.method, error.mnemonic)] += 1
        if not error.kind.known:
            key = (error.code, error.mnemonic)
            self.stats.unknown_mnemonics[key] += 1
            if key not in self._unknown_logged:
                self._unknown_logged.add(key)
                self.log.warning(
                    "callapi_unknown_mnemonic",
                    **error.as_log(),
                    policy=error.policy.value,
                    hint=error.kind.hint,
                )
        if isinstance(error, LimitExceeded):
            limits = error.limits
            reset = None
            if limits is not None:
                reset = limits.day_reset if error.limit_type == "day" else limits.minute_reset
            wait = self.gate.block(error.limit_type, reset)
            self.stats.rate_limited[error.limit_type] += 1
            self.log.warning(
                "callapi_rate_limited",
                method=error.method,
                limit_type=error.limit_type,
                limit_max_value=error.params.get("limit_max_value"),
                wait=round(wait, 3),
            )
        if error.kind.alert and not (isinstance(error, TokenRejected) and self.auth.refreshable):
            self._credentials_rejected(error)

    def _wide_numbers(self, method: str, fields: tuple[str, ...]) -> None:
        """Log once per field a number outside the signed 64-bit range."""
        for name in fields:
            self.stats.out_of_range[(method, name)] += 1
            if (method, name) in self._wide_logged:
                continue
            self._wide_logged.add((method, name))
            self.log.warning(
                "callapi_number_out_of_range",
                method=method,
                field=name,
                hint="the answer holds a number no signed 64-bit integer holds: it is not"
                " used (a list.calls entry with such a call_session_id is skipped, such a"
                " limit is taken as not given)",
            )

    def _credentials_rejected(self, error: CallApiError) -> None:
        problem = f"{error.mnemonic}: {error.kind.hint}"
        if not self.credentials_ok and self.credentials_problem == problem:
            return
        self.credentials_ok = False
        self.credentials_problem = problem
        # One line per change, never one per request: this needs a human.
        self.log.error(
            "callapi_credentials_rejected",
            method=error.method,
            code=error.code,
            mnemonic=error.mnemonic,
            credentials=self.auth.kind,
            hint=error.kind.hint,
        )

    def _unreachable(self, why: str) -> None:
        since = self.unreachable[1] if self.unreachable is not None else self.monotonic()
        self.unreachable = (why, since)

    def _credentials_accepted(self) -> None:
        if self.credentials_ok:
            return
        self.credentials_ok = True
        self.credentials_problem = None
        self.log.info("callapi_credentials_accepted", credentials=self.auth.kind)


__all__ = ["CallApiClient", "ClientStats"]
