"""holdd.toml and the rule file of a test: one writer for every test that
runs the daemon (in process or as `holdd run`)."""

from __future__ import annotations

from pathlib import Path

from holdd.sim.server import Simulator
from support.sim import TOKEN

#: Hold every inbound call at once.
MEDIA_RULE = """
[[rule]]
name = "all-inbound"
[rule.match]
direction = "in"
[rule.hold]
media = "2034"
"""
#: Hold every 7926 caller at once ...
VIP = """
[[rule]]
name = "vip"
[rule.match]
contact_phone_number = "7926*"
[rule.hold]
media = "2034"
"""
#: ... and every inbound call after 2 s of Talk.
AFTER = """
[[rule]]
name = "pause"
after = "2s"
[rule.match]
direction = "in"
[rule.hold]
media = "2034"
"""


def config_text(
    sim: Simulator | None = None,
    *,
    callapi_url: str | None = None,
    notify_url: str | None = None,
    stream: bool = True,
    token: str = TOKEN,
    timeout: str = "5s",
    action_deadline: str | None = None,
    callapi: str = "",
    state: str | None = None,
    log_format: str | None = None,
    log_level: str | None = None,
    http: str = "",
    extra: str = "",
) -> str:
    """holdd.toml. The URLs are the simulator's unless given; `stream=False`
    leaves [notify] out (webhook only). `callapi` adds lines to [callapi],
    `http` to [http], `extra` text at the end."""
    url = callapi_url or (sim.callapi_url if sim is not None else None)
    assert url is not None, "config_text needs a simulator or a callapi_url"
    notify = notify_url or (sim.notify_url if sim is not None and stream else None)
    text = f'[callapi]\nurl = "{url}"\naccess_token = "{token}"\ntimeout = "{timeout}"\n'
    if action_deadline is not None:
        text += f'action_deadline = "{action_deadline}"\n'
    text += callapi
    if notify is not None:
        text += f'\n[notify]\nurl = "{notify}"\n'
    text += '\n[rules]\nfiles = ["rules.d/*.toml"]\n'
    if state is not None:
        text += f'\n[state]\npath = "{state}"\n'
    if log_format is not None or log_level is not None:
        text += "\n[log]\n"
        text += f'format = "{log_format}"\n' if log_format is not None else ""
        text += f'level = "{log_level}"\n' if log_level is not None else ""
    text += '\n[http]\nlisten = "127.0.0.1:0"\n' + http
    return text + extra


def write_config(directory: Path, config: str, rules: str = MEDIA_RULE) -> Path:
    """Write `rules` to rules.d/rules.toml and `config` to holdd.toml; its path."""
    (directory / "rules.d").mkdir(exist_ok=True)
    (directory / "rules.d" / "rules.toml").write_text(rules, encoding="utf-8")
    path = directory / "holdd.toml"
    path.write_text(config, encoding="utf-8")
    return path
