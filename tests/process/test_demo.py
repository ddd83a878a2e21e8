"""`holdd demo` as an operator runs it, from a directory that is not the
checkout: its config comes from the package, and the `holdd explain` command
it prints at the end works on the state database it kept."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path


def holdd(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "holdd", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def test_demo_from_elsewhere_then_its_explain_command(tmp_path: Path) -> None:
    env = {**os.environ, "TMPDIR": str(tmp_path)}  # the kept directory lands here
    demo = holdd("demo", cwd=tmp_path, env=env)
    assert demo.returncode == 0, demo.stderr
    *_, intro, command = demo.stdout.rstrip().splitlines()
    assert intro.startswith("Why call ") and str(tmp_path) in intro
    argv = shlex.split(command.strip())
    assert argv[:3] == ["holdd", "explain", "-c"]
    kept = Path(argv[3]).parent
    assert kept.parent == tmp_path and (kept / "state.db").exists()
    explain = holdd(*argv[1:], cwd=tmp_path, env=env)
    assert explain.returncode == 0, explain.stderr
    lines = explain.stdout.splitlines()
    assert lines[0] == f"call {argv[4]}"
    assert any("hold by rule vip-music: held, media '2034'" in line for line in lines), lines
