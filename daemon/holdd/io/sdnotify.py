"""sd_notify without a dependency: readiness, reload, stop, status and the
watchdog for systemd `Type=notify` (shell).

The protocol (systemd's sd_notify(3)) is one AF_UNIX datagram of
newline-separated `KEY=VALUE` lines sent to `$NOTIFY_SOCKET`; an address
starting with `@` is a Linux abstract socket. Outside systemd there is no
`$NOTIFY_SOCKET` and every call is a no-op returning False, so the daemon
calls these unconditionally. A failed send never raises: notification must
not take the daemon down.

The environment is read on every call (no module-level state); each function
takes an optional `environ` so tests and callers can pass their own.

The watchdog (docs/operations.md section 4) proves that the *event loop* runs: `watchdog_loop`
is a task on the loop that pings at half of `WATCHDOG_USEC`, so a loop blocked
for longer than `WatchdogSec=` stops the pings and systemd aborts and restarts
the service. It deliberately does not look at the notification stream or the
Call API: a remote outage is handled by reconnecting, not by a local restart.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Awaitable, Callable, Mapping

#: A send blocks only while systemd's receive queue is full; never for longer.
SEND_TIMEOUT = 1.0


def _env(environ: Mapping[str, str] | None) -> Mapping[str, str]:
    return os.environ if environ is None else environ


def socket_address(environ: Mapping[str, str] | None = None) -> str | None:
    """The address to send to, or None when not run by systemd with Type=notify."""
    addr = _env(environ).get("NOTIFY_SOCKET", "")
    if addr.startswith("@"):
        return "\0" + addr[1:]  # abstract namespace
    if addr.startswith("/"):
        return addr
    return None  # unset, or a transport we do not speak (vsock:...)


def notify(*fields: str, environ: Mapping[str, str] | None = None) -> bool:
    """Send `fields` (each `KEY=VALUE`) as one datagram; True when sent."""
    addr = socket_address(environ)
    if addr is None or not fields:
        return False
    payload = "\n".join(fields).encode()
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.settimeout(SEND_TIMEOUT)
            sock.sendto(payload, addr)
    except OSError:
        return False
    return True


def _with_status(fields: list[str], text: str | None) -> list[str]:
    if text is not None:
        fields.append(f"STATUS={_one_line(text)}")
    return fields


def _one_line(text: str) -> str:
    # A newline would start a new KEY=VALUE field.
    return " ".join(text.splitlines())


def monotonic_usec() -> int:
    """CLOCK_MONOTONIC in microseconds, as systemd expects in MONOTONIC_USEC."""
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


def ready(status: str | None = None, *, environ: Mapping[str, str] | None = None) -> bool:
    """Start-up (or a reload) is complete: READY=1."""
    return notify(*_with_status(["READY=1"], status), environ=environ)


def reloading(status: str | None = None, *, environ: Mapping[str, str] | None = None) -> bool:
    """A reload began; send `ready()` when it is done.

    MONOTONIC_USEC is required by Type=notify-reload (systemd >= 253) to tie
    the message to the reload request; harmless on older systemd.
    """
    fields = ["RELOADING=1", f"MONOTONIC_USEC={monotonic_usec()}"]
    return notify(*_with_status(fields, status), environ=environ)


def stopping(status: str | None = None, *, environ: Mapping[str, str] | None = None) -> bool:
    """Shutdown began: STOPPING=1."""
    return notify(*_with_status(["STOPPING=1"], status), environ=environ)


def status(text: str, *, environ: Mapping[str, str] | None = None) -> bool:
    """Free text shown by `systemctl status holdd`."""
    return notify(f"STATUS={_one_line(text)}", environ=environ)


def watchdog(*, environ: Mapping[str, str] | None = None) -> bool:
    """One keep-alive ping."""
    return notify("WATCHDOG=1", environ=environ)


def watchdog_interval(environ: Mapping[str, str] | None = None) -> float | None:
    """`WatchdogSec=` in seconds, or None when the watchdog is off or meant for
    another process (WATCHDOG_PID is checked, since children inherit the env)."""
    env = _env(environ)
    usec, pid = env.get("WATCHDOG_USEC", ""), env.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    if pid and (not pid.isdigit() or int(pid) != os.getpid()):
        return None
    return int(usec) / 1_000_000


async def watchdog_loop(
    *,
    environ: Mapping[str, str] | None = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> None:
    """Ping WATCHDOG=1 from the event loop every half `WatchdogSec=` until
    cancelled (sd_watchdog_enabled(3): ping at half the interval). Returns at once when
    the watchdog is off. Run it in the daemon's TaskGroup.

    `sleep` is injectable, like every delay of the shell, so tests need not wait.
    """
    interval = watchdog_interval(environ)
    if interval is None:
        return
    while True:
        watchdog(environ=environ)
        await sleep(interval / 2)
