"""`holdd check` finds what `holdd run` would refuse: a webhook without a
secret, credential files that are missing or empty; and says "could not
verify" instead of "ok" about credentials this user cannot see."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from holdd.cli.main import main

CONFIG = """
[callapi]
url = "https://callapi.uiscom.ru/v4.0"
{token}

[notify]
events = {{ "Мой разговор" = "talk_started" }}

[webhook]
{secret}

[rules]
files = ["rules.d/*.toml"]
"""
RULE = '[[rule]]\nname = "vip"\n[rule.hold]\nmedia = "2034"\n'
SECRET = 'secret = "0123456789abcdef0123"'


def write(directory: Path, token: str, secret: str = SECRET) -> Path:
    (directory / "rules.d").mkdir(exist_ok=True)
    (directory / "rules.d" / "a.toml").write_text(RULE)
    config = directory / "holdd.toml"
    config.write_text(CONFIG.format(token=token, secret=secret), encoding="utf-8")
    return config


def check(
    config: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> tuple[int, str, str]:
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    code = main(["check", "-c", str(config)])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_webhook_without_a_secret_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    config = write(tmp_path, 'access_token = "tok"', secret="")
    code, out, err = check(config, capsys, monkeypatch)
    line = config.read_text().splitlines().index("[webhook]") + 1
    assert code == 1, (out, err)
    assert err.splitlines()[0].startswith(
        f"{config}:{line}: the webhook needs a shared secret (set secret or secret_file;"
    )
    assert "ok" not in out


@pytest.mark.parametrize(
    ("content", "words"),
    [(None, "cannot read access token: [Errno 2]"), ("\n", "is empty")],
    ids=["missing", "empty"],
)
def test_a_token_file_run_cannot_use_is_refused(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    content: str | None,
    words: str,
) -> None:
    if content is not None:
        (tmp_path / "token").write_text(content)
    config = write(tmp_path, 'access_token_file = "token"')
    code, out, err = check(config, capsys, monkeypatch)
    assert code == 1, (out, err)
    assert f"{config}:4: " in err and words in err, err


def test_an_unreadable_token_file_of_ones_own_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    if os.geteuid() == 0:
        pytest.skip("root reads a mode-000 file; the other-user case is tested below")
    token = tmp_path / "token"
    token.write_text("tok")
    token.chmod(0)
    code, _, err = check(write(tmp_path, 'access_token_file = "token"'), capsys, monkeypatch)
    assert code == 1 and "cannot read access token: [Errno 13]" in err, err


def test_a_systemd_credential_is_not_verified_by_hand(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    config = write(tmp_path, "")
    code, out, err = check(config, capsys, monkeypatch)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == (
        f"{config}:2: could not verify the access token: it comes from systemd"
        " (LoadCredential=access_token), which only the service sees"
        " (`holdd check --credentials /etc/holdd` reads it where the unit does)"
    )
    assert lines[1].startswith(f"{config}: no problem found, 1 rule(s) in 1 file(s); could not")
    assert ": ok" not in out
    # Inside the unit (ExecReload), the credential is there and read; by hand,
    # --credentials names the directory LoadCredential= reads from.
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "access_token").write_text("from-systemd")
    assert main(["check", "-c", str(config), "--credentials", str(creds)]) == 0
    assert capsys.readouterr().out == f"{config}: ok, 1 rule(s) in 1 file(s)\n"
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    assert main(["check", "-c", str(config)]) == 0
    assert capsys.readouterr().out == f"{config}: ok, 1 rule(s) in 1 file(s)\n"
    # A webhook secret that only systemd gives: refused by hand, found with
    # --credentials, and an empty one refused.
    monkeypatch.delenv("CREDENTIALS_DIRECTORY")
    config.write_text(CONFIG.format(token='access_token = "tok"', secret=""))
    assert main(["check", "-c", str(config)]) == 1
    capsys.readouterr()
    (creds / "webhook_secret").write_text("a-long-enough-webhook-secret\n")
    assert main(["check", "-c", str(config), "--credentials", str(creds)]) == 0
    (creds / "webhook_secret").write_text("\n")
    assert main(["check", "-c", str(config), "--credentials", str(creds)]) == 1
    assert "webhook secret file" in capsys.readouterr().err


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory another user can read (pytest's tmp_path is root-only)."""
    path = Path(tempfile.mkdtemp(prefix="holdd-check-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path)


def test_another_users_token_file_is_not_verified(shared_dir: Path) -> None:
    """As the operator's user, a root-only token file (the service's) cannot be
    read: check says so instead of "ok", and does not fail the file."""
    if os.geteuid() != 0:
        pytest.skip("needs root to run holdd check as another user")
    token = shared_dir / "token"
    token.write_text("tok")
    token.chmod(0o600)
    config = write(shared_dir, 'access_token_file = "token"')
    for path in [config, *shared_dir.rglob("*")]:
        if path != token:
            path.chmod(0o755 if path.is_dir() else 0o644)
    python, env = _interpreter_for_nobody(shared_dir)
    done = _as_nobody([python, "-m", "holdd", "check", "-c", str(config)], shared_dir, env)
    assert done.returncode == 0, done.stderr
    first, last = done.stdout.splitlines()
    assert first == (
        f"{config}:4: could not verify access token ({token}): this user cannot read it"
        " (the service's user may; run `holdd check` as that user to be sure"
        " (`systemctl reload holdd` does))"
    )
    assert "could not verify 1 credential(s)" in last


def _as_nobody(argv: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv,
        user=65534,
        group=65534,
        extra_groups=[],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        check=False,
        timeout=60,
    )


def _interpreter_for_nobody(cwd: Path) -> tuple[str, dict[str, str]]:
    """This venv's Python, or (when it lives under a root-only directory, as
    pyenv's does) a system Python of the same version given this venv's
    packages; skip when `nobody` can run neither."""
    import msgspec

    import holdd

    env = {k: v for k, v in os.environ.items() if k != "CREDENTIALS_DIRECTORY"}
    paths = os.pathsep.join(
        str(Path(m.__file__ or "").resolve().parents[1]) for m in (holdd, msgspec)
    )
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    for python, extra in ((sys.executable, {}), (f"/usr/bin/{version}", {"PYTHONPATH": paths})):
        try:
            probe = _as_nobody([python, "-c", "import holdd.cli.main"], cwd, {**env, **extra})
        except OSError:  # not executable by nobody
            continue
        if probe.returncode == 0:
            return python, {**env, **extra}
    pytest.skip(f"user nobody cannot run {sys.executable} nor /usr/bin/{version}")
