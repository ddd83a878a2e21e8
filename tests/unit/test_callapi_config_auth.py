"""`[callapi]` credentials: a permanent key or login + password (section 2),
and action_deadline."""

from __future__ import annotations

from pathlib import Path

import pytest

from holdd.config.settings import LoginPassword, Secret, load_settings
from holdd.core.errors import ConfigError

CONFIG = """
[callapi]
url = "https://callapi.uiscom.ru/v4.0"
{callapi}

[notify]
url = "wss://notify.example.net/stream"

[rules]
files = ["rules.d/*.toml"]
"""


def write(tmp_path: Path, callapi: str) -> Path:
    (tmp_path / "rules.d").mkdir(exist_ok=True)
    (tmp_path / "rules.d" / "a.toml").write_text("")
    path = tmp_path / "holdd.toml"
    path.write_text(CONFIG.replace("{callapi}", callapi))
    return path


def problems(path: Path, environ: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as err:
        load_settings(path, environ={} if environ is None else environ)
    return [str(p) for p in err.value.problems]


def test_login_and_password(tmp_path: Path) -> None:
    s = load_settings(write(tmp_path, 'login = "api-user"\npassword = "s3cret-pass"'), environ={})
    assert s.credentials == LoginPassword("api-user", Secret("s3cret-pass"))
    assert s.access_token == Secret("")
    assert "s3cret-pass" in s.secrets  # the log redactor knows it
    assert "s3cret-pass" not in repr(s)
    assert s.action_deadline == 30.0


def test_password_from_a_file_or_the_systemd_credential(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("from-file-pass \n")
    s = load_settings(write(tmp_path, 'login = "u"\npassword_file = "pw"'), environ={})
    assert s.credentials == LoginPassword("u", Secret("from-file-pass "))
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "password").write_text("cred-pass\n")
    s = load_settings(write(tmp_path, 'login = "u"'), environ={"CREDENTIALS_DIRECTORY": str(creds)})
    assert s.credentials == LoginPassword("u", Secret("cred-pass"))


def test_the_permanent_key_stays_as_it_was(tmp_path: Path) -> None:
    s = load_settings(write(tmp_path, 'access_token = "tok-123456"\naction_deadline = "5s"'))
    assert s.credentials == Secret("tok-123456")
    assert s.login is None and s.action_deadline == 5.0


@pytest.mark.parametrize(
    ("callapi", "expected"),
    [
        ('login = "u"\naccess_token = "t"\npassword = "p"', "give either access_token or login"),
        ('login = "u"', "login needs a password"),
        ('password = "p"\naccess_token = "t"', "password is given without login"),
        ('login = "u"\npassword = "p"\npassword_file = "f"', "only one of password and"),
        ('login = "u"\npassword_file = "missing"', "cannot read password"),
        ('access_token = "t"\naction_deadline = "0s"', "action_deadline must be more than 0"),
    ],
)
def test_credential_problems(tmp_path: Path, callapi: str, expected: str) -> None:
    found = problems(write(tmp_path, callapi))
    assert any(expected in p for p in found), found
