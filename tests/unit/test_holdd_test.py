"""`holdd test FILE...` through holdd.cli.main.main: the shipped rule tests pass, a
wrong expectation fails with a diff, a broken test file names its line."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from holdd.cli.main import main

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = sorted((ROOT / "config" / "tests").glob("*.toml"))
RULES_GLOB = str(ROOT / "config" / "rules.d" / "*.toml")


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(["test", *args])
    return code, capsys.readouterr().out


def test_the_shipped_rule_tests_pass(capsys: pytest.CaptureFixture[str]) -> None:
    assert len(SHIPPED) >= 5
    code, out = run(capsys, *map(str, SHIPPED))
    assert code == 0, out
    summary = out.strip().splitlines()[-1]
    m = re.fullmatch(r"(\d+) passed, 0 failed", summary)
    assert m and int(m.group(1)) >= 35, summary


def test_a_wrong_expectation_fails_with_a_diff(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # billing-wait has after = "2s": expecting the hold at once is wrong.
    test = tmp_path / "wrong.toml"
    test.write_text(
        f"rules = [{RULES_GLOB!r}]\n"
        'clock = "2026-11-26T10:00:00+03:00"\n\n'
        "[[test]]\n"
        'name = "billing holds at once"\n'
        'call = { call_session_id = 9, direction = "in", virtual_phone_number = "74950000002" }\n'
        'events = [{ at = "0s", notification_name = "Начало разговора" }]\n'
        'expect = [{ at = "0s", action = "hold", rule = "billing-wait", type = "media", '
        'value = "2040" }]\n\n'
        "[[test]]\n"
        'name = "a right one"\n'
        'call = { call_session_id = 8, direction = "in", virtual_phone_number = "74950000002" }\n'
        'events = [{ at = "0s", notification_name = "Начало разговора" }]\n'
        'expect = [{ at = "2s", action = "hold", rule = "billing-wait" }]\n',
        encoding="utf-8",
    )
    code, out = run(capsys, str(test))
    assert code == 1
    lines = out.splitlines()
    assert lines[0] == f"FAIL {test}:4: test 'billing holds at once'"
    assert lines[1:5] == [
        "  --- expected",
        "  +++ got",
        '  -at=0s hold call=9 rule=billing-wait media="2040"',
        '  +at=2s hold call=9 rule=billing-wait media="2040"',
    ]
    # The timeline says why: the rule matched at 0s and was due at 2s.
    assert any("rule billing-wait matched; acts at 2s" in ln for ln in lines), out
    assert lines[-1] == "1 passed, 1 failed"


def test_expecting_nothing_when_something_fires(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    test = tmp_path / "nothing.toml"
    test.write_text(
        f"rules = [{RULES_GLOB!r}]\n"
        'clock = "2026-11-26T10:00:00+03:00"\n'
        "[[test]]\n"
        'name = "VIP, expecting nothing"\n'
        "expect = []\n"
        "[[test.events]]\n"
        'at = "0s"\n'
        "call_session_id = 5\n"
        'notification_name = "Начало разговора"\n'
        'direction = "in"\n'
        'contact_phone_number = "79261112233"\n',
        encoding="utf-8",
    )
    code, out = run(capsys, str(test))
    assert code == 1
    assert '  +at=0s hold call=5 rule=vip-welcome media="2034"' in out.splitlines()
    assert out.splitlines()[-1] == "0 passed, 1 failed"


def test_a_missing_rule_explains_what_each_rule_saw(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    test = tmp_path / "why.toml"
    test.write_text(
        f"rules = [{RULES_GLOB!r}]\n"
        'clock = "2026-11-26T13:30:00+03:00"\n'
        "[[test]]\n"
        'name = "sales at lunch"\n'
        'call = { call_session_id = 3, direction = "in", virtual_phone_number = "74993720692", '
        'contact_phone_number = "74951234567" }\n'
        'events = [{ at = "0s", notification_name = "Начало разговора" }]\n'
        'expect = [{ at = "0s", action = "hold", rule = "sales-greeting" }]\n',
        encoding="utf-8",
    )
    code, out = run(capsys, str(test))
    assert code == 1
    why = "- sales-greeting: outside schedule office (at thu 2026-11-26 13:30 Europe/Moscow)"
    assert why in out, out


BROKEN = [
    ("no expect", "[[test]]\nname = 't'\nevents = [{ at = '0s', call_session_id = 1 }]\n", 1),
    (
        "expect written after [[test.events]]",
        "[[test]]\nname = 't'\n[[test.events]]\nat = '0s'\ncall_session_id = 1\nexpect = []\n",
        6,
    ),
    (
        "misspelt key",
        "[[test]]\nname = 't'\nevents = [{ at = '0s', call_session_id = 1 }]\nexpect = []\n"
        "clok = '2026-11-26T10:00:00+03:00'\n",
        5,
    ),
    (
        "bad action",
        "[[test]]\nname = 't'\nevents = [{ at = '0s', call_session_id = 1 }]\n"
        "expect = [\n  { at = '0s', action = 'held', rule = 'x' },\n]\n",
        5,
    ),
    (
        "an event the daemon would drop",
        "[[test]]\nname = 't'\nevents = [\n  { at = '0s', call_session_id = 1 },\n"
        "  { at = '1s', call_session_id = 'abc' },\n]\nexpect = []\n",
        5,
    ),
    (
        "a clock without zone",
        "[[test]]\nname = 't'\nclock = '2026-11-26T10:00:00'\n"
        "events = [{ at = '0s', call_session_id = 1 }]\nexpect = []\n",
        3,
    ),
]


@pytest.mark.parametrize(("label", "body", "line"), BROKEN, ids=[b[0] for b in BROKEN])
def test_a_broken_test_file_names_the_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], label: str, body: str, line: int
) -> None:
    test = tmp_path / "broken.toml"
    head = f"rules = [{RULES_GLOB!r}]\nclock = '2026-11-26T10:00:00+03:00'\n"
    test.write_text(head + body, encoding="utf-8")
    code, out = run(capsys, str(test))
    assert code == 1
    first = out.splitlines()[0]
    assert first.startswith(f"{test}:{line + 2}: test 't': "), out
    assert out.splitlines()[-1] == "0 passed, 0 failed, 1 file(s) could not be run"


def test_broken_rules_are_reported_and_the_file_not_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "r.toml").write_text('[[rule]]\nname = "a"\n[rule.hold]\nmeda = "1"\n')
    test = tmp_path / "t.toml"
    test.write_text(
        'rules = ["r.toml"]\nclock = "2026-11-26T10:00:00+03:00"\n[[test]]\nname = "t"\n'
        'events = [{ at = "0s", call_session_id = 1 }]\nexpect = []\n'
    )
    code, out = run(capsys, str(test))
    assert code == 1
    assert out.splitlines()[0].startswith(f'{tmp_path / "r.toml"}:4: rule "a": unknown key')


def test_an_unknown_notification_name_is_an_error_not_a_silent_pass(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # "Мой разговор" maps to no event kind: the daemon would not move the call
    # to Talk, so `expect = []` would pass for the wrong reason.
    body = (
        "[[test]]\n"
        'name = "custom name"\n'
        'call = { call_session_id = 9, direction = "in", virtual_phone_number = "74950000002" }\n'
        'events = [{ at = "0s", notification_name = "Мой разговор" }]\n'
        "expect = []\n"
    )
    test = tmp_path / "names.toml"
    test.write_text(
        f'rules = [{RULES_GLOB!r}]\nclock = "2026-11-26T10:00:00+03:00"\n\n{body}',
        encoding="utf-8",
    )
    code, out = run(capsys, str(test))
    assert code == 1
    assert out.splitlines()[0] == (
        f"{test}:7: test 'custom name': event 1: notification name 'Мой разговор' maps to no"
        ' event kind (use a name holdd knows (e.g. "Начало разговора") or map it in [notify]'
        ' events of the config (config = "..." instead of rules = [...]))'
    )
    # Mapped in the config's [notify] events, the same test runs (and fails
    # honestly: the billing rule holds after 2s).
    (tmp_path / "holdd.toml").write_text(
        '[callapi]\nurl = "https://callapi.uiscom.ru/v4.0"\n\n'
        f"[rules]\nfiles = [{RULES_GLOB!r}]\n\n"
        '[notify.events]\n"Мой разговор" = "talk_started"\n\n'
        '[webhook]\nsecret_file = "not-read-by-holdd-test"\n',
        encoding="utf-8",
    )
    test.write_text(
        f'config = "holdd.toml"\nclock = "2026-11-26T10:00:00+03:00"\n\n{body}', encoding="utf-8"
    )
    code, out = run(capsys, str(test))
    assert code == 1 and out.splitlines()[0] == f"FAIL {test}:4: test 'custom name'", out
    assert "+at=2s hold call=9 rule=billing-wait" in out
