"""`[state] url` (several instances on one PostgreSQL database): where its
password may come from, and what `holdd check` / `holdd run` refuse."""

from __future__ import annotations

from pathlib import Path

import pytest

from holdd.config.settings import load_settings
from holdd.core.errors import ConfigError

BASE = """[callapi]
url = "https://callapi.uiscom.ru/v4.0"
access_token = "permanent-key-for-tests-123456"

[notify]
url = "wss://relay.example/notify"

[rules]
files = ["rules.d/*.toml"]
"""


def config(tmp_path: Path, state: str, mode: int = 0o644) -> Path:
    (tmp_path / "rules.d").mkdir(exist_ok=True)
    (tmp_path / "rules.d" / "rules.toml").write_text(
        '[[rule]]\nname = "vip"\n[rule.match]\ndirection = "in"\n[rule.hold]\nmedia = "1"\n'
    )
    path = tmp_path / "holdd.toml"
    path.write_text(BASE + "\n[state]\n" + state, encoding="utf-8")
    path.chmod(mode)
    return path


def problems(path: Path, env: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as caught:
        load_settings(path, env or {})
    return "\n".join(str(p) for p in caught.value.problems)


def test_the_password_comes_from_a_file_and_is_a_secret(tmp_path: Path) -> None:
    (tmp_path / "db-password").write_text("pg-pass-7c1f\n")
    path = config(
        tmp_path,
        'url = "postgresql://holdd@db.internal:5432/holdd"\npassword_file = "db-password"\n'
        'lease = "3s"\ninstance = "host-a"\n',
    )
    s = load_settings(path, {})
    assert s.state_url == "postgresql://holdd@db.internal:5432/holdd"
    assert s.state_password is not None and s.state_password.reveal() == "pg-pass-7c1f"
    assert (s.state_lease, s.state_instance) == (3.0, "host-a")
    assert "pg-pass-7c1f" in s.secrets  # redacted from every log line
    assert "pg-pass-7c1f" not in repr(s)


def test_the_password_comes_from_the_systemd_credential(tmp_path: Path) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "state_password").write_text("from-systemd-31\n")
    path = config(tmp_path, 'url = "postgresql://holdd@db.internal/holdd"\n')
    s = load_settings(path, {"CREDENTIALS_DIRECTORY": str(creds)})
    assert s.state_password is not None and s.state_password.reveal() == "from-systemd-31"


def test_no_password_is_fine_for_other_authentication(tmp_path: Path) -> None:
    path = config(tmp_path, 'url = "postgresql://holdd@db.internal/holdd?sslmode=verify-full"\n')
    s = load_settings(path, {})
    assert s.state_password is None and s.state_lease == 5.0


def test_a_password_in_the_url_of_a_readable_config_is_refused(tmp_path: Path) -> None:
    path = config(tmp_path, 'url = "postgresql://holdd:inline-pw-9@db.internal/holdd"\n')
    said = problems(path)
    assert "the url holds a password but the config file can be read by other users" in said
    assert "password_file" in said and "inline-pw-9" not in said
    # The same file, readable by its owner only: accepted, and the password redacted.
    path.chmod(0o600)
    s = load_settings(path, {})
    assert "inline-pw-9" in s.secrets


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        ('url = "mysql://db/holdd"\n', "url must start with postgresql://"),
        ('password_file = "db-password"\n', "password_file is given without url"),
        ('url = "postgresql://holdd@db/holdd"\nlease = "200ms"\n', "lease must be at least 1s"),
        (
            'url = "postgresql://holdd@db/holdd"\npassword_file = "missing"\n',
            "cannot read the database password",
        ),
    ],
)
def test_mistakes_are_named(tmp_path: Path, state: str, expected: str) -> None:
    assert expected in problems(config(tmp_path, state))
