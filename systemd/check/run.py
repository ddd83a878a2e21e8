"""Run systemd/holdd.service under a real systemd, as written, and hold one call.

Not part of `make test` (it needs root, systemd-nspawn and a Debian-like
host): `sudo make systemd-check`. It boots the host's own /usr as a volatile
container (systemd as PID 1), installs nothing into it but binds:
/opt/holdd (a venv with holdd installed: `python3 -m venv /opt/holdd/venv &&
/opt/holdd/venv/bin/pip install .`), /etc/holdd (config, rules, the token file
0600 root), the unit file unchanged, and a checker unit. The simulator runs
here on 127.0.0.1 (the container shares the network). The checker waits for
the service to be active, lets one call be held, runs `systemctl reload`
(ExecReload: holdd check, then SIGHUP) and `systemctl stop`, and writes what
systemd says to the output folder, then powers the container off.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import tempfile
from pathlib import Path

from holdd.sim.server import Simulator

HERE = Path(__file__).resolve().parent
UNIT = HERE.parent / "holdd.service"
TOKEN = "nspawn-permanent-key-5a1c9e"  # noqa: S105 - the fake API's test key
RULES = (
    '[[rule]]\nname = "vip"\n[rule.match]\ncontact_phone_number = "7926*"\n'
    '[rule.hold]\nmedia = "2034"\n'
)


async def main(work: Path) -> int:
    etc, units, wants, out = (work / d for d in ("etc-holdd", "units", "wants", "out"))
    for d in (etc / "rules.d", units, wants, out):
        d.mkdir(parents=True)
    (etc / "rules.d" / "vip.toml").write_text(RULES)
    (etc / "access_token").write_text(TOKEN + "\n")
    os.chmod(etc / "access_token", 0o600)
    shutil.copy(UNIT, units / "holdd.service")
    shutil.copy(HERE / "checker.service", units / "checker.service")
    shutil.copy(HERE / "check.sh", out / "check.sh")
    for name in ("holdd.service", "checker.service"):
        (wants / name).symlink_to(f"/etc/systemd/system/{name}")
    sim = Simulator(tokens=(TOKEN,), media_ids=("2034",))
    await sim.start()
    (etc / "holdd.toml").write_text(
        f'[callapi]\nurl = "{sim.callapi_url}"\n\n[notify]\nurl = "{sim.notify_url}"\n\n'
        '[rules]\nfiles = ["rules.d/*.toml"]\n\n[state]\npath = "/var/lib/holdd/state.db"\n'
    )
    for path in (etc, etc / "rules.d", etc / "holdd.toml", etc / "rules.d" / "vip.toml"):
        os.chmod(path, 0o755 if path.is_dir() else 0o644)
    # /run/systemd/nspawn must be a tmpfs on hosts not booted with systemd.
    nspawn = [
        "systemd-nspawn",
        "-D",
        "/",
        "--volatile=yes",
        "--boot",
        "-q",
        "--register=no",
        "--keep-unit",
        "--bind-ro=/opt/holdd",
        f"--bind-ro={etc}:/etc/holdd",
        f"--bind-ro={units}/holdd.service:/etc/systemd/system/holdd.service",
        f"--bind-ro={units}/checker.service:/etc/systemd/system/checker.service",
        f"--bind-ro={wants}:/etc/systemd/system/multi-user.target.wants",
        f"--bind={out}:/out",
        "systemd.firstboot=off",
    ]
    with (work / "console.log").open("wb") as console:
        proc = await asyncio.create_subprocess_exec(
            *nspawn,
            stdout=console,
            stderr=asyncio.subprocess.STDOUT,
            stdin=asyncio.subprocess.DEVNULL,
        )
    try:
        await sim.wait_for_clients(1, timeout=120)
        csid = await sim.start_call(direction="in", contact_phone_number="79261234567")
        await sim.answer(csid)
        [req] = await sim.wait_for_requests(1, method="hold.call", timeout=30)
        (out / "held").write_text("1")
        await asyncio.wait_for(proc.wait(), 120)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await sim.stop()
    ok = req.body["params"] == {
        "access_token": TOKEN,
        "call_session_id": csid,
        "contact_message": {"type": "media", "value": "2034"},
    }
    print(f"hold.call as expected (token from LoadCredential): {ok}")
    print((out / "result").read_text())
    print(f"journal: {out / 'journal.txt'}")
    result = (out / "result").read_text()
    good = (
        ok
        and "SubState=running" in result
        and "reload rc=0" in result
        and "Result=success" in result
        and "ExecMainStatus=0" in result
    )
    return 0 if good else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main(Path(tempfile.mkdtemp(prefix="holdd-systemd-")))))
