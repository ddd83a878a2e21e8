"""`holdd simulate -c CONFIG EVENTS.jsonl`: recorded notifications through the
rules on a virtual clock, one JSON decision a line; never the API."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from holdd.cli.main import main

ROOT = Path(__file__).resolve().parents[2]

CONFIG = """
[callapi]
url = "https://callapi.uiscom.ru/v4.0"
access_token_file = "/nonexistent/token"   # never read: simulate calls no API

[notify]
url = "wss://notify.example.net/stream"
timezone = "Europe/Moscow"

[rules]
files = ["{rules}/*.toml"]
"""


def lines(*objects: object) -> str:
    return "\n".join(orjson.dumps(o).decode() for o in objects) + "\n"


def simulate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], events: str, *extra: str
) -> tuple[int, list[dict[str, object]], str]:
    config = tmp_path / "holdd.toml"
    config.write_text(CONFIG.format(rules=ROOT / "config" / "rules.d"), encoding="utf-8")
    path = tmp_path / "events.jsonl"
    path.write_text(events, encoding="utf-8")
    code = main(["simulate", "-c", str(config), str(path), *extra])
    out, err = capsys.readouterr()
    return code, [orjson.loads(line) for line in out.splitlines()], err


def test_a_recording_with_notification_times(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    billing = {
        "call_session_id": 7,
        "direction": "in",
        "virtual_phone_number": "74950000002",
        "contact_phone_number": "79031234567",
    }
    events = (
        lines(
            {
                **billing,
                "notification_name": "Начало разговора",
                "notification_time": "2026-11-26 10:00:00.000",
            },
            {
                **billing,
                "notification_name": "Завершение звонка",
                "notification_time": "2026-11-26 10:00:05.000",
            },
            {
                "call_session_id": 8,
                "notification_name": "Начало разговора",
                "direction": "out",
                "notification_time": "2026-11-26 10:00:06.000",
            },
        )
        + "not json\n"
    )
    code, out, err = simulate(tmp_path, capsys, events)
    assert code == 0
    assert [(o["event"], o["call_session_id"], o["offset"]) for o in out] == [
        ("hold_pending", 7, 0.0),
        ("hold", 7, 2.0),
        ("no_rule_matched", 8, 6.0),
    ]
    hold = out[1]
    assert hold["at"] == "2026-11-26T10:00:02.000+03:00"
    assert (hold["rule"], hold["type"], hold["value"], hold["mode"]) == (
        "billing-wait",
        "media",
        "2040",
        "live",
    )
    assert out[0]["due_at"] == "2026-11-26T10:00:02.000+03:00"
    assert {"rule": "vip-welcome", "matched": False, "failed": "direction", "actual": "out"} in (
        out[2]["trace"]  # type: ignore[operator]
    )
    assert "events.jsonl:4: notification dropped: not_json" in err
    assert "3 notification(s), 1 dropped" in err


def test_offsets_a_start_clock_and_timers_after_the_last_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    survey = {"call_session_id": 1, "direction": "in", "virtual_phone_number": "74950000001"}
    events = lines(
        {**survey, "at": "0s", "notification_name": "Начало разговора"},
        {
            "at": 50,
            "call_session_id": 2,
            "state": "talk",
            "direction": "in",
            "contact_phone_number": "79261112233",
        },
    )
    code, out, _err = simulate(tmp_path, capsys, events, "--start", "2026-11-26T10:00:00+03:00")
    assert code == 0
    assert [(o["event"], o["call_session_id"], o["offset"]) for o in out] == [
        ("hold_pending", 1, 0.0),
        ("hold", 1, 45.0),
        ("hold", 2, 50.0),
        ("unhold", 1, 60.0),
    ]


def test_a_bad_rule_set_is_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "r.toml").write_text('[[rule]]\nname = "a"\n[rule.hold]\nmedia = "x"\n')
    config = tmp_path / "holdd.toml"
    config.write_text(CONFIG.format(rules=rules))
    (tmp_path / "e.jsonl").write_text("")
    assert main(["simulate", "-c", str(config), str(tmp_path / "e.jsonl")]) == 1
    assert "r.toml:4: rule \"a\": media 'x' is not a media file id" in capsys.readouterr().err


def test_an_unknown_notification_name_is_reported(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    events = lines(
        {
            "call_session_id": 9,
            "direction": "in",
            "contact_phone_number": "79031234567",
            "notification_name": "holdd: разговор",
            "notification_time": "2026-11-26 10:00:00.000",
        }
    )
    code, decisions, err = simulate(tmp_path, capsys, events)
    assert code == 0
    assert decisions == []
    assert "events.jsonl:1: notification name 'holdd: разговор' maps to no event kind" in err
    assert "[notify] events" in err
    assert "1 with an unknown name" in err
