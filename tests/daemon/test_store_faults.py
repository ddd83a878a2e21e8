"""The file system under the state database fails: full, or refusing writes
as a read-only one does. While it lasts, calls that enter Talk are not held
and nothing is sent without its durable claim, /readyz answers 503 naming
the store, /healthz 200; once it clears, every call is held exactly once
within seconds (docs/operations.md `state_write_failed`, section 10).

How each fault is made, for real where the kernel lets us:

- **tmpfs-full**: the database lives on a tmpfs of its own (`mount -t tmpfs
  -o size=4m`, root only), filled to the last byte with a file; deleting the
  file frees the space. Skipped where mount is refused (not root).
- **fsize-limit**: the fallback where no tmpfs can be mounted, and run here
  as well: RLIMIT_FSIZE lowered to the size the WAL has, so its next frame
  cannot be written (EFBIG, as on a full disk); raising it clears the fault.
- **read-only**: `mount -o remount,ro` is refused by the kernel (EBUSY) while
  holdd holds its database open for writing, and this test shows it; a file
  system only turns read-only under a running holdd when the kernel remounts
  it on an error (ext4 `errors=remount-ro`), which cannot be undone without
  stopping holdd. So the failure is injected instead: strace attaches to the
  thread that runs the daemon's store calls (`Daemon.in_store`: the event
  loop's, for SQLite, while no request is out, as here) alone and fails its
  every pwrite with EROFS, the answer of a read-only file system; detaching
  clears it. Skipped without strace or ptrace.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import io
import resource
import shutil
import signal
import sqlite3
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, Protocol

import aiohttp
import orjson
import pytest

from holdd.config.rulefiles import load_rules
from holdd.config.settings import load_settings
from holdd.io import logs
from holdd.io.daemon import Daemon
from holdd.sim.server import Simulator
from support.config import MEDIA_RULE, config_text, write_config
from support.inproc import ready
from support.sim import hold_requests, talking_call

#: Calls that enter Talk while the fault lasts.
CALLS = 5


class Fault(Protocol):
    async def begin(self, daemon: Daemon) -> None: ...

    async def end(self) -> None: ...


class FullTmpfs:
    """Fill the tmpfs the database lives on; free it again."""

    def __init__(self, mount: Path) -> None:
        self.filler = mount / "filler"

    async def begin(self, daemon: Daemon) -> None:
        with self.filler.open("wb", buffering=0) as f:
            for chunk in (1 << 16, 1 << 12, 1):
                with contextlib.suppress(OSError):
                    while True:
                        f.write(b"\0" * chunk)
        probe = self.filler.with_name("probe")
        with pytest.raises(OSError) as full, probe.open("wb", buffering=0) as f:
            f.write(b"\0" * 4096)
        assert full.value.errno == errno.ENOSPC

    async def end(self) -> None:
        self.filler.unlink()
        self.filler.with_name("probe").unlink(missing_ok=True)


class FileSizeLimit:
    """RLIMIT_FSIZE (this process's, for the few seconds of the fault) at
    the WAL's size: its next frame fails with EFBIG (Python ignores SIGXFSZ)."""

    def __init__(self, db: Path) -> None:
        self.wal = db.with_name(db.name + "-wal")
        self.saved = resource.getrlimit(resource.RLIMIT_FSIZE)

    async def begin(self, daemon: Daemon) -> None:
        size = self.wal.stat().st_size
        assert size > 0
        resource.setrlimit(resource.RLIMIT_FSIZE, (size, self.saved[1]))

    async def end(self) -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, self.saved)


class ReadOnlyWrites:
    """strace on the thread of the daemon's store calls: every pwrite64 fails with EROFS."""

    def __init__(self) -> None:
        self.proc: asyncio.subprocess.Process | None = None

    async def begin(self, daemon: Daemon) -> None:
        strace = shutil.which("strace")
        if strace is None:
            pytest.skip("strace is not installed: no way to inject EROFS (apt-get install strace)")
        tid = await daemon.in_store(threading.get_native_id)
        self.proc = await asyncio.create_subprocess_exec(
            strace,
            *("-p", str(tid), "-o", "/dev/null"),
            *("-e", "trace=pwrite64", "-e", "inject=pwrite64:error=EROFS"),
            stdin=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        assert self.proc.stderr is not None
        async with asyncio.timeout(10):
            said = (await self.proc.stderr.readline()).decode()
        if "attached" not in said:
            await self.proc.wait()
            pytest.skip(f"strace cannot attach (no ptrace here?): {said.strip()}")

    async def end(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGINT)  # strace detaches, the thread goes on
            async with asyncio.timeout(10):
                await self.proc.wait()


@contextlib.contextmanager
def tmpfs(at: Path, size: str) -> Iterator[Path]:
    """A tmpfs of `size` mounted at `at`, unmounted on exit."""
    at.mkdir(mode=0o700)
    try:
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "holdd-test", str(at)],
            capture_output=True,
            text=True,
            check=False,
        )
    except FileNotFoundError:
        pytest.skip("no mount command")
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (root only): {done.stderr.strip()}")
    try:
        yield at
    finally:
        if subprocess.run(["umount", str(at)], check=False).returncode != 0:
            subprocess.run(["umount", "-l", str(at)], check=True)


@contextlib.asynccontextmanager
async def state_dir(kind: str, tmp_path: Path) -> AsyncIterator[tuple[Path, bool]]:
    """Where the state database goes, and whether that is a tmpfs of its own."""
    if kind == "fsize-limit":
        yield tmp_path, False
        return
    with contextlib.ExitStack() as stack:
        try:
            mount = stack.enter_context(tmpfs(tmp_path / "state", "4m"))
        except pytest.skip.Exception:
            if kind == "tmpfs-full":
                raise
            yield tmp_path, False  # read-only: the injection needs no tmpfs
            return
        yield mount, True


async def probe(url: str, path: str) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as http, http.get(f"{url}{path}") as resp:
        return resp.status, await resp.json()


def remount_read_only(mount: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["mount", "-o", "remount,ro", str(mount)], capture_output=True, text=True, check=False
    )


@pytest.mark.parametrize("kind", ["tmpfs-full", "fsize-limit", "read-only"])
async def test_while_the_state_file_system_fails_nothing_is_sent_then_each_call_is_held_once(
    sim: Simulator, tmp_path: Path, kind: str
) -> None:
    async with state_dir(kind, tmp_path) as (where, mounted):
        db = where / "state.db"
        config = write_config(tmp_path, config_text(sim, state=str(db)), MEDIA_RULE)
        settings = load_settings(config)
        buf = io.BytesIO()
        logs.configure(fmt="json", level="info", secrets=settings.secrets, stream=buf)
        daemon = Daemon(settings, load_rules(settings.rule_files))
        task = asyncio.create_task(daemon.run(install_signals=False))
        fault: Fault = (
            FullTmpfs(where)
            if kind == "tmpfs-full"
            else FileSizeLimit(db)
            if kind == "fsize-limit"
            else ReadOnlyWrites()
        )
        try:
            await ready(daemon, sim)
            assert daemon.services.http is not None
            url = daemon.services.http.url
            before = await talking_call(sim, direction="in", contact_phone_number="79260000500")
            await daemon.wait_for(lambda: before in daemon.outcomes)
            refused = None
            if kind == "read-only" and mounted:
                # What an operator gets: the kernel will not take the file
                # system read-only under a file open for writing.
                refused = remount_read_only(where)
                assert refused.returncode != 0 and "busy" in refused.stderr
            await fault.begin(daemon)
            began = time.monotonic()
            try:
                calls = [
                    await talking_call(
                        sim, direction="in", contact_phone_number=f"792600005{i:02d}"
                    )
                    for i in range(1, CALLS + 1)
                ]
                await daemon.wait_for(lambda: daemon.store_trouble is not None, within=15)
                status, body = await probe(url, "/readyz")
                assert status == 503
                assert body["checks"]["store"]["ok"] is False
                assert any(f.startswith("store: state store failing") for f in body["failing"])
                assert (await probe(url, "/healthz"))[0] == 200
                attempts = daemon._store_failures
                await daemon.wait_for(lambda: daemon._store_failures >= attempts + 2, within=15)
                assert (await probe(url, "/healthz"))[0] == 200
                # No claim on disk, no request: not one of them went out.
                assert not any(hold_requests(sim, c) for c in calls)
                assert not any(c in daemon.outcomes for c in calls)
                failing_for = time.monotonic() - began
            finally:
                await fault.end()
            cleared = time.monotonic()
            await daemon.wait_for(lambda: all(c in daemon.outcomes for c in calls), within=10)
            recovered_in = time.monotonic() - cleared
            status, body = await probe(url, "/readyz")
        finally:
            daemon.request_stop("test over")
            async with asyncio.timeout(15):
                code = await task
        # The claims are on the file system that failed, durable.
        with contextlib.closing(sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True)) as conn:
            rows = conn.execute("SELECT call_session_id, result FROM claims").fetchall()
    assert sorted(rows) == sorted((c, "held") for c in [before, *calls])
    assert code == 0
    assert status == 200, body
    for csid in [before, *calls]:
        assert len(hold_requests(sim, csid)) == 1, csid
        assert daemon.outcomes[csid].result == "held"
    events = [orjson.loads(line) for line in buf.getvalue().splitlines()]
    [failed] = [e for e in events if e["event"] == "state_write_failed"]
    [recovered] = [e for e in events if e["event"] == "state_write_recovered"]
    assert failed["level"] == "error" and failed["requests_waiting"] >= 1
    assert recovered["attempts"] >= 3
    if kind == "tmpfs-full":
        assert "disk is full" in failed["error"]
    print(
        f"{kind}: {failed['error'].split(': ', 1)[1]}; failing {failing_for:.1f} s,"
        f" {recovered['attempts']} attempts; {CALLS} calls held once each"
        f" {recovered_in:.2f} s after the fault cleared"
        + ("; `mount -o remount,ro` refused: busy" if refused is not None else "")
    )
