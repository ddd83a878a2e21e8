"""Logs: JSON lines with timestamp, level, event; contextvars; secrets redacted;
stdlib loggers (aiohttp, websockets) in the same shape; a syslog priority
prefix when stdout is the journal."""

from __future__ import annotations

import io
import logging
import os
import re
import shlex
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import orjson
import pytest
import structlog

from holdd.io import logs

SECRET = "2fRN4g217ca0b4224a67988aff3e584f"


def lines(buf: io.BytesIO) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in buf.getvalue().splitlines()]


def test_json_lines_with_bound_call_and_redaction() -> None:
    buf = io.BytesIO()
    logs.configure(fmt="json", level="info", secrets=[SECRET], stream=buf)
    log = structlog.get_logger("t")
    with structlog.contextvars.bound_contextvars(call_session_id=42, rule="vip"):
        log.info("hold_sent", url=f"https://x/?token={SECRET}", nested={"k": [SECRET]})
    log.debug("too_quiet")
    log.info("login", password="hunter2-long", access_token="abc")
    out = lines(buf)
    assert [e["event"] for e in out] == ["hold_sent", "login"]
    first = out[0]
    assert {"timestamp", "level", "event"} <= first.keys()
    assert (first["call_session_id"], first["rule"], first["level"]) == (42, "vip", "info")
    assert first["url"] == "https://x/?token=***"
    assert first["nested"] == {"k": ["***"]}
    assert out[1]["password"] == "***" and out[1]["access_token"] == "***"
    assert SECRET.encode() not in buf.getvalue()


def test_a_secret_that_json_escapes_is_redacted_too() -> None:
    """The line is searched raw and JSON-escaped: a password with a quote,
    a backslash or Cyrillic letters is found however orjson wrote it."""
    odd = 'pa"ss\\wörd-секрет'
    buf = io.BytesIO()
    logs.configure(fmt="json", level="info", secrets=[odd], stream=buf)
    structlog.get_logger("t").info(
        "hold_failed", error_message=f"bad key {odd}", params={"deep": [{"v": odd}]}
    )
    [line] = lines(buf)
    assert line["error_message"] == "bad key ***"
    assert line["params"] == {"deep": [{"v": "***"}]}
    assert odd not in buf.getvalue().decode()


def test_stdlib_loggers_come_out_as_the_same_json() -> None:
    buf = io.BytesIO()
    logs.configure(fmt="json", level="info", secrets=[SECRET], stream=buf)
    logging.getLogger("websockets.client").info("connect failed; token %s", SECRET)
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("aiohttp.server").exception("Error handling request")
    out = lines(buf)
    assert out[0]["event"] == "websockets_client_log"
    assert out[0]["message"] == "connect failed; token ***"
    assert out[0]["level"] == "info"
    assert out[1]["event"] == "aiohttp_server_log" and out[1]["level"] == "error"
    assert out[1]["exception"][0]["exc_type"] == "ValueError"
    assert all({"timestamp", "level", "event"} <= e.keys() for e in out)


# -- journald: `<N>` priority prefix (ecosystem.md section 1.8) -------------------


@pytest.fixture
def log_file(tmp_path: Path) -> Iterator[BinaryIO]:
    """A real file standing in for journald's stdout stream."""
    with (tmp_path / "stdout").open("wb") as out:
        try:
            yield out
        finally:
            # Leave logging pointed at something open for later tests.
            logs.configure(fmt="json", stream=io.BytesIO())


def journal_stream(f: BinaryIO) -> str:
    st = os.fstat(f.fileno())
    return f"{st.st_dev}:{st.st_ino}"


def test_on_the_journal_every_line_carries_its_priority(
    log_file: BinaryIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JOURNAL_STREAM", journal_stream(log_file))
    logs.configure(fmt="json", level="debug", secrets=[SECRET], stream=log_file)
    log = structlog.get_logger("t")
    log.debug("notification_received", call_session_id=1)
    log.info("hold_sent", call_session_id=1, token=SECRET)
    log.warning("notification_dropped", reason="not_json")
    log.error("hold_failed", mnemonic="media_file_not_found")
    log.critical("holdd_failed")
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("hold_crashed")
    logging.getLogger("aiohttp.server").error("Error handling request")
    log_file.flush()
    raw = Path(log_file.name).read_bytes().splitlines()
    prefixes = [line[:3] for line in raw]
    assert prefixes == [b"<7>", b"<6>", b"<4>", b"<3>", b"<2>", b"<3>", b"<3>"]
    events = [orjson.loads(line[3:]) for line in raw]  # journald strips the prefix
    assert [e["event"] for e in events] == [
        "notification_received",
        "hold_sent",
        "notification_dropped",
        "hold_failed",
        "holdd_failed",
        "hold_crashed",
        "aiohttp_server_log",
    ]
    assert events[1]["token"] == "***"
    assert events[5]["exception"][0]["exc_type"] == "ValueError"


def test_no_prefix_when_stdout_is_another_file(
    log_file: BinaryIO, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A child inherits JOURNAL_STREAM but not the stream: the inode decides."""
    with (tmp_path / "elsewhere").open("wb") as other:
        monkeypatch.setenv("JOURNAL_STREAM", journal_stream(other))
    logs.configure(fmt="json", stream=log_file)
    structlog.get_logger("t").error("hold_failed")
    log_file.flush()
    assert orjson.loads(Path(log_file.name).read_bytes())["event"] == "hold_failed"


def test_no_prefix_without_journal_stream_or_a_file_descriptor(
    log_file: BinaryIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("JOURNAL_STREAM", raising=False)
    assert not logs.on_journal(log_file)
    monkeypatch.setenv("JOURNAL_STREAM", journal_stream(log_file))
    assert logs.on_journal(log_file)
    assert not logs.on_journal(io.BytesIO())  # no fileno at all
    buf = io.BytesIO()
    logs.configure(fmt="json", stream=buf, journal=True)  # forced on
    structlog.get_logger("t").warning("notify_disconnected")
    assert buf.getvalue().startswith(b'<4>{"')


def test_tracebacks_carry_no_frame_locals() -> None:
    """A local such as a request body or a session key never reaches the log."""
    buf = io.BytesIO()
    logs.configure(fmt="json", level="info", secrets=[], stream=buf)

    def exchange() -> None:
        session_key = "sess-3b9d1f0e7a6c4d2b"  # noqa: F841 - the local under test
        raise RuntimeError("boom")

    try:
        exchange()
    except RuntimeError:
        structlog.get_logger("t").exception("hold_crashed")
    [line] = lines(buf)
    assert line["exception"][0]["exc_type"] == "RuntimeError"
    assert b"sess-3b9d1f0e7a6c4d2b" not in buf.getvalue()


def test_console_on_a_terminal_is_coloured_with_readable_nested_values(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    master, replica = os.openpty()
    try:
        with open(replica, "wb", buffering=0, closefd=False) as tty:
            logs.configure(fmt="auto", stream=tty, journal=False)
            structlog.get_logger("t").warning(
                "config_invalid", problems=["a.toml:3: unknown key 'х'"], trace={"rule": "vip"}
            )
        text = os.read(master, 65536).decode()
    finally:
        os.close(master)
        os.close(replica)
    assert "\x1b[" in text  # ANSI colour
    plain = re.sub(r"\x1b\[[0-9;]*m", "", text)
    assert "config_invalid" in plain
    # A list of texts: one line each, below the event; other nesting as JSON.
    assert "\n    problems:\n      - a.toml:3: unknown key 'х'" in plain.replace("\r\n", "\n")
    assert """trace='{"rule":"vip"}'""" in plain
    # NO_COLOR, or not a terminal: no escape codes.
    buf = io.BytesIO()
    logs.configure(fmt="console", stream=buf, journal=False)
    structlog.get_logger("t").info("plain_console", nested={"k": 1})
    assert b"\x1b[" not in buf.getvalue() and b"""nested='{"k":1}'""" in buf.getvalue()


def _doc_jq_recipes() -> list[list[str]]:
    """The `journalctl ... | jq ...` recipes of docs/operations.md section 6."""
    text = (Path(__file__).resolve().parents[2] / "docs" / "operations.md").read_text("utf-8")
    block = text.split("## 6. Logs", 1)[1].split("```sh\n", 1)[1].split("```", 1)[0]
    recipes = []
    for line in block.splitlines():
        command = line.split(" | ", 1)[1].split("  #", 1)[0]
        recipes.append(shlex.split(command))
    return recipes


def test_the_documented_jq_recipes_survive_systemds_plain_lines(tmp_path: Path) -> None:
    if shutil.which("jq") is None:
        pytest.skip("jq is not installed")
    buf = io.BytesIO()
    logs.configure(fmt="json", stream=buf, journal=False)
    log = structlog.get_logger("t")
    log.info("holdd_started", version="x")
    with structlog.contextvars.bound_contextvars(call_session_id=3140723459, rule="vip"):
        log.info("hold_sent", message_type="media")
    # What `journalctl -u holdd -o cat` shows: holdd's JSON and systemd's own lines.
    ours = buf.getvalue().decode().splitlines()
    mixed = "\n".join(
        [
            "Starting holdd.service - holdd: puts telephone calls on hold...",
            ours[0],
            "Started holdd.service - holdd: puts telephone calls on hold.",
            ours[1],
            "holdd.service: Deactivated successfully.",
        ]
    )
    recipes = _doc_jq_recipes()
    assert len(recipes) >= 5 and all(r[0] == "jq" and "R" in r[1] for r in recipes)
    for argv in recipes:
        done = subprocess.run(argv, input=mixed, capture_output=True, text=True, check=False)
        assert done.returncode == 0, (argv, done.stderr)
    follow = subprocess.run(recipes[1], input=mixed, capture_output=True, text=True)  # -c
    assert [orjson.loads(line)["event"] for line in follow.stdout.splitlines()] == [
        "holdd_started",
        "hold_sent",
    ]
    tsv = subprocess.run(recipes[-1], input=mixed, capture_output=True, text=True)
    assert tsv.stdout.split("\t")[1:] == ["3140723459", "vip\n"]
    # Why: a bare `jq .` stops at systemd's first line.
    bare = subprocess.run(["jq", "."], input=mixed, capture_output=True, text=True)
    assert bare.returncode != 0


def test_logger_follows_every_configure() -> None:
    """logs.Logger keeps the bound logger it assembled, but only until the
    next `configure`: a line then goes to the new stream, at the new level,
    through the new redaction, exactly as structlog's own proxy writes it."""
    first, second = io.BytesIO(), io.BytesIO()
    logs.configure(fmt="json", level="info", stream=first)
    log = logs.Logger("t")
    proxy = structlog.get_logger("t")
    log.info("one", n=1)
    log.debug("quiet")
    logs.configure(fmt="json", level="debug", secrets=[SECRET], stream=second)
    with structlog.contextvars.bound_contextvars(call_session_id=7):
        log.debug("two", token_text=SECRET)
        proxy.debug("two", token_text=SECRET)
    log.bind(rule="vip").warning("three")
    assert [e["event"] for e in lines(first)] == ["one"]
    two, same, three = lines(second)
    assert {k: v for k, v in two.items() if k != "timestamp"} == {
        k: v for k, v in same.items() if k != "timestamp"
    }
    assert two["token_text"] == "***"
    assert two["call_session_id"] == 7
    assert (three["event"], three["rule"], three["level"]) == ("three", "vip", "warning")


def test_secret_keys_are_redacted_however_often_clean_keys_were_seen() -> None:
    """Lines whose keys were all seen before take a short cut: it must never
    let a secret-named key, a nested dict or a new key through unredacted."""
    buf = io.BytesIO()
    logs.configure(fmt="json", level="info", stream=buf)
    log = logs.Logger("t")
    for _ in range(3):
        log.info("plain", call_session_id=1, rule="vip", note="x")
    log.info("plain", call_session_id=1, rule="vip", Access_Token="abc")
    log.info("plain", call_session_id=1, rule="vip", note={"Password": "pw", "ok": 1})
    log.info("plain", call_session_id=1, rule="vip", note={"deeper": {"token": "t"}})
    log.info("plain", call_session_id=1, rule="vip", token="", secret=None, password={})
    plain1, _, _, upper, nested, deeper, empty = lines(buf)
    assert plain1["note"] == "x"
    assert upper["Access_Token"] == "***"
    assert nested["note"] == {"Password": "***", "ok": 1}
    assert deeper["note"] == {"deeper": {"token": "***"}}
    # Empty values stay as they are, as before.
    assert (empty["token"], empty["secret"], empty["password"]) == ("", None, {})


def test_key_redaction_matches_the_full_walk() -> None:
    """`_keys_clean` gives the same dict with a warm cache of clean keys as
    with a cold one, and never caches a secret's name."""
    event: dict[Any, Any] = {
        "event": "e",
        "rule": "r",
        "TOKEN": "t",
        "fields": {"authorization": "a", "x": {"Secret": "s"}, "n": [1, {"password": "p"}]},
        7: "number key",
    }
    logs._CLEAN_KEYS.clear()
    cold = logs._keys_clean(event)
    warm = logs._keys_clean(event)
    assert (
        cold
        == warm
        == {
            "event": "e",
            "rule": "r",
            "TOKEN": "***",
            "fields": {"authorization": "***", "x": {"Secret": "***"}, "n": [1, {"password": "p"}]},
            7: "number key",
        }
    )
    assert not {k.casefold() for k in logs._CLEAN_KEYS} & logs._SECRET_KEYS
    assert logs._keys_clean({"event": "e", "rule": "r"}) == {"event": "e", "rule": "r"}
