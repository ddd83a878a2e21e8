"""holdd.toml: settings, credentials and problems with file:line."""

from __future__ import annotations

from pathlib import Path

import pytest

from holdd.config.settings import Secret, load_settings
from holdd.core.durations import parse_duration
from holdd.core.errors import ConfigError

GOOD = """
[callapi]
url = "https://callapi.uiscom.ru/v4.0"
{token}
timeout = "1m30s"

[notify]
url = "wss://notify.example.net/stream"

[rules]
files = ["rules.d/*.toml"]
"""


def setup(tmp_path: Path, token: str = 'access_token = "tok-123456"', extra: str = "") -> Path:
    (tmp_path / "rules.d").mkdir(exist_ok=True)
    (tmp_path / "rules.d" / "a.toml").write_text("")
    path = tmp_path / "holdd.toml"
    path.write_text(GOOD.replace("{token}", token) + extra)
    return path


def test_durations() -> None:
    assert parse_duration("500ms") == 0.5
    assert parse_duration("1h30m") == 5400
    for bad in ("30", "", "1x", "m5"):
        with pytest.raises(ValueError, match="duration"):
            parse_duration(bad)


def test_settings_resolve_paths_and_hide_the_token(tmp_path: Path) -> None:
    s = load_settings(setup(tmp_path))
    assert s.timeout == 90
    assert s.rule_files == (tmp_path / "rules.d" / "a.toml",)
    assert s.access_token.reveal() == "tok-123456"
    assert "tok-123456" not in repr(s)


def test_token_from_file_and_from_systemd_credentials(tmp_path: Path) -> None:
    (tmp_path / "tok").write_text("from-file-token\n")
    s = load_settings(setup(tmp_path, 'access_token_file = "tok"'))
    assert s.access_token.reveal() == "from-file-token"
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "access_token").write_text("cred-token")
    s = load_settings(setup(tmp_path, ""), environ={"CREDENTIALS_DIRECTORY": str(creds)})
    assert s.access_token.reveal() == "cred-token"


def test_problems_carry_file_and_line(tmp_path: Path) -> None:
    path = setup(tmp_path, extra='\n[log]\nlevel = "info"\nformatt = "json"\n')
    with pytest.raises(ConfigError) as err:
        load_settings(path)
    line = path.read_text().splitlines().index('formatt = "json"') + 1
    assert line == 15
    # The section is named and the closest key suggested, as rule typos are.
    assert [str(p) for p in err.value.problems] == [
        f"{path}:{line}: unknown key 'formatt' in [log] (did you mean 'format'?)"
    ]


def test_every_semantic_problem_at_once(tmp_path: Path) -> None:
    path = setup(tmp_path, "", extra='\n[notify.events]\n"x" = "dancing"\n')
    path.write_text(path.read_text().replace('"1m30s"', '"soon"').replace("wss://", "tcp://"))
    with pytest.raises(ConfigError) as err:
        load_settings(path, environ={})
    words = [p.what for p in err.value.problems]
    assert len(words) == 4, words
    assert any("no Call API credentials" in w for w in words)
    assert any("bad duration" in w for w in words)
    assert any("not ws(s)" in w for w in words)
    assert any("event kind 'dancing'" in w for w in words)


def test_webhook_secret_inline_from_a_file_or_the_systemd_credential(tmp_path: Path) -> None:
    inline = '\n[webhook]\nsecret = "0123456789abcdef0123"\n'
    assert load_settings(setup(tmp_path, extra=inline)).webhook_secret == Secret(
        "0123456789abcdef0123"
    )
    (tmp_path / "wh").write_text("from-a-file-0123456789\n")
    s = load_settings(setup(tmp_path, extra='\n[webhook]\nsecret_file = "wh"\n'))
    assert s.webhook_secret == Secret("from-a-file-0123456789")
    assert "from-a-file-0123456789" in s.secrets  # so the log redacts it
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "webhook_secret").write_text("from-the-credential-42")
    s = load_settings(
        setup(tmp_path, extra="\n[webhook]\n"), environ={"CREDENTIALS_DIRECTORY": str(creds)}
    )
    assert s.webhook_secret == Secret("from-the-credential-42")


def test_webhook_secret_problems(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(setup(tmp_path, extra="\n[webhook]\n"), environ={})
    assert [p.what for p in err.value.problems] == ["the webhook needs a shared secret"]
    with pytest.raises(ConfigError) as err:
        load_settings(setup(tmp_path, extra='\n[webhook]\nsecret = "short"\n'))
    assert "shorter than 16 characters" in err.value.problems[0].what
    # `holdd explain` (read_secrets=False) does not look at credentials at all;
    # `holdd check` (secrets="verify") finds what `run` would refuse.
    load_settings(setup(tmp_path, extra="\n[webhook]\n"), environ={}, read_secrets=False)
    with pytest.raises(ConfigError) as err:
        load_settings(setup(tmp_path, extra="\n[webhook]\n"), environ={}, secrets="verify")
    assert [p.what for p in err.value.problems] == ["the webhook needs a shared secret"]


def test_every_type_error_at_once_in_operator_words(tmp_path: Path) -> None:
    path = setup(
        tmp_path,
        extra='\n[state]\nretention = 7\n\n[log]\nformat = "loud"\nlevel = 1\n',
    )
    path.write_text(
        path.read_text()
        .replace('timeout = "1m30s"', 'timeout = 5\nmax_connections = "ten"')
        .replace("[rules]", "[rulez]")
    )
    with pytest.raises(ConfigError) as err:
        load_settings(path)
    text = path.read_text().splitlines()

    def at(needle: str) -> str:
        return f"{path}:{next(i for i, t in enumerate(text, 1) if t.startswith(needle))}: "

    assert [str(p) for p in err.value.problems] == [
        at("timeout") + "timeout: expected text in quotes, got a whole number"
        ' (durations are strings such as "5s")',
        at("max_connections") + "max_connections: expected a whole number, got text",
        at("[rulez]") + "unknown section [rulez] (did you mean [rules]?)",
        at("retention") + "retention: expected text in quotes, got a whole number"
        ' (durations are strings such as "5s")',
        at("format") + "format: 'loud' is not one of json, console, auto",
        at("level") + "level: expected text in quotes, got a whole number",
    ]


def test_a_key_in_the_wrong_section_says_where_it_belongs(tmp_path: Path) -> None:
    path = setup(tmp_path)
    path.write_text('timezone = "UTC"\n' + path.read_text().replace("timeout", "timeout_s"))
    with pytest.raises(ConfigError) as err:
        load_settings(path)
    assert [str(p) for p in err.value.problems] == [
        f"{path}:1: key 'timezone' is outside any section"
        " (it belongs in [notify]: write it below that header)",
        f"{path}:6: unknown key 'timeout_s' in [callapi] (did you mean 'timeout'?)",
    ]


def test_webhook_only_config_takes_notify_options(tmp_path: Path) -> None:
    path = setup(tmp_path)
    path.write_text(
        path.read_text().replace(
            '[notify]\nurl = "wss://notify.example.net/stream"\n',
            '[notify]\ntimezone = "Asia/Yekaterinburg"\nresync_interval = "2m"\n'
            '[notify.events]\n"Мой разговор" = "talk_started"\n\n'
            '[webhook]\nsecret = "0123456789abcdef0123"\n',
        )
    )
    s = load_settings(path)
    assert s.notify_url is None
    assert s.timezone == "Asia/Yekaterinburg"
    assert s.resync_interval == 120
    assert s.events == {"Мой разговор": "talk_started"}
    assert s.webhook_listen == ("127.0.0.1", 8081)
    # Neither a url nor a webhook: no source at all.
    path.write_text(path.read_text().split("[webhook]")[0])
    with pytest.raises(ConfigError) as err:
        load_settings(path)
    assert [p.what for p in err.value.problems] == ["no notification source"]


def test_http_guards_default_and_are_checked(tmp_path: Path) -> None:
    s = load_settings(setup(tmp_path))
    assert (s.http_header_timeout, s.http_body_timeout, s.http_connection_limit) == (10, 10, 1024)
    tuned = '\n[http]\nheader_timeout = "3s"\nbody_timeout = "500ms"\nconnection_limit = 64\n'
    s = load_settings(setup(tmp_path, extra=tuned))
    assert (s.http_header_timeout, s.http_body_timeout, s.http_connection_limit) == (3, 0.5, 64)
    bad = '\n[http]\nheader_timeout = "0s"\nbody_timeout = "slow"\nconnection_limit = 0\n'
    path = setup(tmp_path, extra=bad)
    with pytest.raises(ConfigError) as err:
        load_settings(path)
    lines = path.read_text().splitlines()
    assert [(p.line, p.what) for p in err.value.problems] == [
        (lines.index('header_timeout = "0s"') + 1, "header_timeout must be more than 0"),
        (lines.index('body_timeout = "slow"') + 1, err.value.problems[1].what),
        (lines.index("connection_limit = 0") + 1, "connection_limit must be at least 1"),
    ]
    assert "duration" in err.value.problems[1].what
