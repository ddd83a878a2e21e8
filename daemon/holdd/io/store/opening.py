"""Which store `[state]` asks for, opened (shell).

`[state] path` (the default): the SQLite file, one instance. `[state] url`:
a PostgreSQL database several instances share (io/store/postgres.py).
"""

from __future__ import annotations

from holdd.config.settings import Settings
from holdd.io.store.base import Store
from holdd.io.store.postgres import PgStore, safe_url
from holdd.io.store.sqlite import StateDb, WriteObserver

#: How long a SQLite write waits for a lock another process holds.
SQLITE_BUSY = 0.25


def where(settings: Settings) -> str:
    """The store as a log line may name it (never with a password)."""
    if settings.state_url is not None:
        return safe_url(settings.state_url)
    return str(settings.state_path)


def where_fields(settings: Settings) -> dict[str, str]:
    """The store as log fields: `path` (SQLite) or `url` (no password)."""
    if settings.state_url is not None:
        return {"url": safe_url(settings.state_url)}
    return {"path": str(settings.state_path)}


def open_store(settings: Settings, on_write: WriteObserver | None = None) -> Store:
    """Open the configured store; raises StoreError (with the reason) when it cannot."""
    if settings.state_url is None:
        # Its writes run on the event loop: a lock held by another process
        # makes a write fail after this long (and be tried again), instead
        # of blocking the loop, the probes and the watchdog for seconds.
        return StateDb.open(settings.state_path, on_write=on_write, busy_timeout=SQLITE_BUSY)
    password = settings.state_password.reveal() if settings.state_password is not None else None
    return PgStore.open(
        settings.state_url,
        password=password,
        lease=settings.state_lease,
        # A request sent just before a lease ran out lands within the timeout.
        settle_margin=settings.timeout + 1.0,
        name=settings.state_instance,
        on_write=on_write,
    )


__all__ = ["open_store", "where", "where_fields"]
