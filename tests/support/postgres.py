"""A throwaway PostgreSQL cluster for the tests (real server binaries, temp dir).

`Cluster.start(tmp)` runs `initdb` and `pg_ctl start` from Debian's
`postgresql` package (or any binaries on PATH), listening on 127.0.0.1 on a
port the kernel picked free, with a role `holdd` whose password the tests
pass through a password file, as an operator would. `.ci/run` installs the
package when the binaries are missing. PostgreSQL refuses to run as root, so
as root the cluster runs as the `postgres` user the package creates.

`restart()` stops and starts the same cluster (the PostgreSQL restart of the
several-instances chaos test); `stop()` ends it.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

PASSWORD = "holdd-test-password-5b1e"


def binaries() -> Path | None:
    """The directory of initdb/pg_ctl/postgres, or None when none are installed."""
    found = shutil.which("pg_ctl")
    if found is not None:
        real = Path(found).resolve().parent
        if (real / "initdb").exists():
            return real
    for candidate in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if Path(candidate, "pg_ctl").exists():
            return Path(candidate)
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Cluster:
    bin: Path
    data: Path
    port: int
    user: str | None
    log: Path

    @classmethod
    def start(cls, base: Path, *, fsync: bool = False) -> Cluster:
        bindir = binaries()
        if bindir is None:
            raise RuntimeError(
                "PostgreSQL server binaries not found (initdb, pg_ctl): install Debian's"
                " postgresql package (.ci/run does) to run the several-instances tests"
            )
        user = "postgres" if os.geteuid() == 0 else None
        base.mkdir(parents=True, exist_ok=True)
        data = base / "pgdata"
        if user is not None:
            entry = pwd.getpwnam(user)
            os.chown(base, entry.pw_uid, entry.pw_gid)
            base.chmod(0o700)
        pwfile = base / "pw"
        pwfile.write_text(PASSWORD + "\n")
        if user is not None:
            os.chown(pwfile, pwd.getpwnam(user).pw_uid, -1)
        cluster = cls(bindir, data, _free_port(), user, base / "postgres.log")
        cluster._run(
            "initdb",
            "-D",
            str(data),
            "-U",
            "holdd",
            "--pwfile",
            str(pwfile),
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            "-E",
            "UTF8",
            "--no-instructions",
        )
        with (data / "postgresql.conf").open("a") as conf:
            conf.write(
                f"port = {cluster.port}\n"
                "listen_addresses = '127.0.0.1'\n"
                f"unix_socket_directories = '{base}'\n"
                # A throwaway cluster: no fsync (the machine does not crash
                # under the tests), but every commit is in the WAL before it
                # returns, so a PostgreSQL killed and restarted keeps it.
                # `make bench` fsyncs, as SQLite does there.
                + ("" if fsync else "fsync = off\nfull_page_writes = off\n")
                + "max_connections = 200\n"
            )
        cluster.pg_start()
        return cluster

    @property
    def url(self) -> str:
        """The URL a config gives, without the password (it comes from a file)."""
        return f"postgresql://holdd@127.0.0.1:{self.port}/postgres"

    def _run(self, tool: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        cmd = [str(self.bin / tool), *args]
        if self.user is not None:
            cmd = ["runuser", "-u", self.user, "--", *cmd]
        return subprocess.run(cmd, check=check, capture_output=True, text=True, timeout=60)

    def pg_start(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "30", "start")

    def pg_stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "30", "stop", check=False)

    def running(self) -> bool:
        done = self._run("pg_ctl", "-D", str(self.data), "status", check=False)
        return done.returncode == 0

    def pg_start_if_down(self) -> None:
        if not self.running():
            self.pg_start()

    def restart(self) -> None:
        self.pg_stop("immediate")
        self.pg_start()

    def stop(self) -> None:
        self.pg_stop("immediate")

    def reset(self) -> None:
        """Drop every holdd table: each test starts on an empty database."""
        import psycopg

        with psycopg.connect(
            f"host=127.0.0.1 port={self.port} user=holdd dbname=postgres password={PASSWORD}",
            autocommit=True,
        ) as conn:
            conn.execute("DROP SCHEMA public CASCADE")
            conn.execute("CREATE SCHEMA public")


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[Cluster]:
    """One throwaway cluster for the whole run, started when a test first asks.

    Its directory is its own under the system's temp dir (pytest's are 0700
    for root, which the `postgres` user could not enter), removed at the end.
    """
    base = Path(tempfile.mkdtemp(prefix="holdd-pg-"))
    try:
        cluster = Cluster.start(base)
        try:
            yield cluster
        finally:
            cluster.stop()
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def pg(pg_cluster: Cluster, tmp_path: Path) -> Iterator[PgConfig]:
    """An empty database on the session's cluster, and the `[state]` lines
    that point a config at it (the password in a 0600 file beside it)."""
    pg_cluster.pg_start_if_down()
    pg_cluster.reset()
    password_file = tmp_path / "db-password"
    password_file.write_text(PASSWORD + "\n")
    password_file.chmod(0o600)
    yield PgConfig(pg_cluster, password_file)


@dataclass(frozen=True)
class PgConfig:
    cluster: Cluster
    password_file: Path

    def state(self, lease: str = "2s", instance: str | None = None) -> str:
        """The `[state]` section of a config for this database."""
        text = (
            f'\n[state]\nurl = "{self.cluster.url}"\n'
            f'password_file = "{self.password_file}"\nlease = "{lease}"\n'
        )
        if instance is not None:
            text += f'instance = "{instance}"\n'
        return text
