"""Logs: JSON lines with timestamp, level, event; contextvars; secrets redacted;
stdlib loggers (aiohttp, websockets) in the same shape."""

from __future__ import annotations

import io
import logging

import orjson
import structlog

from holdd import logs

SECRET = "2fRN4g217ca0b4224a67988aff3e584f"


def lines(buf: io.BytesIO) -> list[dict[str, object]]:
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
