"""Call API credentials: a permanent key, or session keys from `login.user` (shell).

docs/callapi.md section 2 knows two kinds of `access_token`:

* a permanent key («Доступ по ключу»): sent as it is; nothing can renew it, so
  when the API rejects it (-32001) a human has to act (`PermanentKey`);
* a session key from `login.user`, valid until `result.data.expire_at` (a
  Unix time, one hour after login). `SessionKeys` logs in on first use,
  again shortly before `expire_at`, and again when the API rejects the key:
  an expired session key answers `access_token_invalid`, not `_expired`.

Session keys are secrets that the config does not know, so the log redactor
cannot know them either: they live only inside `SessionKey.token` (a `Secret`)
and are never passed to a logger, an exception message or a repr.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from holdd.config.credentials import LoginPassword, Secret


@dataclass(frozen=True, slots=True)
class SessionKey:
    """One `login.user` answer (section 2): the key and when it stops working."""

    token: Secret
    #: `result.data.expire_at`: Unix time at which the key stops being valid.
    expire_at: float
    #: Unix time of the login, to size the refresh margin to the key's lifetime.
    obtained_at: float

    def refresh_at(self, margin: float) -> float:
        """When to log in again: `margin` seconds before `expire_at`, but never
        earlier than half way through the key's life (a short-lived key would
        otherwise be renewed before every request)."""
        lifetime = max(0.0, self.expire_at - self.obtained_at)
        return self.expire_at - min(margin, lifetime / 2)


#: Sends `login.user` for `credentials` and returns the new key. The second
#: argument is the monotonic deadline of the request that needs the key, the
#: third says why a login is due ("first", "expiring", "rejected").
LoginUser = Callable[[LoginPassword, float | None, str], Awaitable[SessionKey]]


class TokenSource(Protocol):
    """Where the `access_token` of every request comes from."""

    #: "access_token" (a permanent key) or "login" (session keys), for logs.
    @property
    def kind(self) -> str: ...

    #: True when a rejected key can be replaced without a human (login again).
    @property
    def refreshable(self) -> bool: ...

    async def token(self, deadline: float | None) -> Secret:
        """The key to send now (may log in first)."""
        ...

    def invalidate(self, token: Secret) -> None:
        """The API rejected `token`: do not hand it out again."""
        ...


class PermanentKey:
    """A permanent key: always the same; a rejection needs a human (section 2)."""

    kind = "access_token"
    refreshable = False

    def __init__(self, key: Secret) -> None:
        self._key = key

    async def token(self, deadline: float | None) -> Secret:
        return self._key

    def invalidate(self, token: Secret) -> None:
        """Nothing to do: there is no other key to use."""


class SessionKeys:
    """Session keys from `login.user`, renewed before they expire or when rejected.

    One login at a time: requests that need a key while a login is running
    wait for it instead of logging in again themselves.
    """

    kind = "login"
    refreshable = True

    def __init__(
        self,
        credentials: LoginPassword,
        login_user: LoginUser,
        *,
        clock: Callable[[], float] = time.time,
        margin: float = 60.0,
    ) -> None:
        self._credentials = credentials
        self._login_user = login_user
        self._clock = clock
        self.margin = margin
        self._key: SessionKey | None = None
        self._rejected = False
        self._lock = asyncio.Lock()
        #: Successful logins so far.
        self.logins = 0

    @property
    def login(self) -> str:
        return self._credentials.login

    @property
    def expire_at(self) -> float | None:
        """`expire_at` of the current key; None before the first login."""
        return None if self._key is None else self._key.expire_at

    @property
    def current(self) -> Secret | None:
        """The current key without logging in (for `logout.user`)."""
        return None if self._key is None else self._key.token

    async def token(self, deadline: float | None) -> Secret:
        async with self._lock:
            key = self._key
            if key is not None and self._clock() < key.refresh_at(self.margin):
                return key.token
            if key is not None:
                reason = "expiring"
            elif self._rejected:
                reason = "rejected"
            else:
                reason = "first"
            key = await self._login_user(self._credentials, deadline, reason)
            self._key = key
            self._rejected = False
            self.logins += 1
            return key.token

    def invalidate(self, token: Secret) -> None:
        # Another request may have logged in again already: forget only the
        # key that was rejected, never a newer one.
        if self._key is not None and self._key.token == token:
            self._key = None
            self._rejected = True

    def forget(self) -> None:
        """Drop the current key (after `logout.user`)."""
        self._key = None
