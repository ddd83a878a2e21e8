"""`holdd check`: every problem of every rule file as `path:line: rule "name":
what (hint)`, exit 1 (through holdd.cli.main.main, as an operator runs it)."""

from __future__ import annotations

from pathlib import Path

import pytest

from holdd.cli.main import main

CONFIG = """
[callapi]
url = "https://callapi.uiscom.ru/v4.0"
access_token = "check-token"
tts_max_length = 80

[notify]
url = "wss://notify.example.net/stream"

[rules]
files = ["rules.d/*.toml"]
"""

GOOD = """
[[rule]]
name = "vip"
[rule.match]
direction = "in"
[rule.hold]
media = "2034"
"""


def setup(tmp_path: Path, rules: dict[str, str], lists: dict[str, str] | None = None) -> Path:
    config = tmp_path / "holdd.toml"
    config.write_text(CONFIG, encoding="utf-8")
    (tmp_path / "rules.d").mkdir()
    for name, text in rules.items():
        (tmp_path / "rules.d" / name).write_text(text, encoding="utf-8")
    for name, text in (lists or {}).items():
        (tmp_path / "rules.d" / name).write_text(text, encoding="utf-8")
    return config


def check(config: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str]]:
    code = main(["check", "-c", str(config)])
    err = capsys.readouterr().err
    return code, [line for line in err.splitlines() if line]


def line_of(text: str, needle: str) -> int:
    """1-based line of the first line containing `needle` (the tests name keys,
    not numbers, so a reformatted case cannot silently test the wrong line)."""
    for number, line in enumerate(text.splitlines(), start=1):
        if needle in line:
            return number
    raise AssertionError(f"{needle!r} not in the text")


# ACCEPTANCE 2: a misspelt key on line N of x.toml -> `x.toml:N:` and the key.
# (key, file text, the hint the operator gets)
MISSPELT = [
    ("priorty", '[[rule]]\nname = "a"\npriorty = 5\n[rule.hold]\nmedia = "1"\n', "'priority'"),
    (
        "contact_phone",
        '[[rule]]\nname = "a"\n[rule.match]\ndirection = "in"\ncontact_phone = "7926*"\n'
        '[rule.hold]\nmedia = "1"\n',
        "'contact_phone_number'",
    ),
    ("medai", '[[rule]]\nname = "a"\n[rule.hold]\nmedai = "2034"\n', "'media'"),
    ("enable", '[[rule]]\nname = "a"\nenable = false\n[rule.hold]\nmedia = "1"\n', "'enabled'"),
    (
        "unhold",
        '[[rule]]\nname = "a"\n[rule.hold]\nmedia = "1"\n[rule.then]\nunhold = "30s"\n',
        "'unhold_after'",
    ),
    (
        "cooldwon",
        '[[rule]]\nname = "a"\n[rule.hold]\nmedia = "1"\n[rule.limit]\ncooldwon = "1h"\n',
        "'cooldown'",
    ),
    (
        "scenario",
        '[[rule]]\nname = "a"\n[rule.unless]\nscenario = "Акция"\n[rule.hold]\nmedia = "1"\n',
        "'scenario_name'",
    ),
    (
        "hour",
        '[schedule.office]\ntimezone = "Europe/Moscow"\nhour = ["09:00-18:00"]\n\n'
        '[[rule]]\nname = "a"\n[rule.hold]\nmedia = "1"\n',
        "'hours'",
    ),
    # A key TOML put into the wrong table: `after` written below [rule.hold].
    (
        "after",
        '[[rule]]\nname = "a"\n[rule.match]\ndirection = "in"\n[rule.hold]\nmedia = "1"\n'
        'after = "5s"\n',
        "after belongs in [[rule]]",
    ),
    (
        "virtual_phone_numbr",
        '# comment\n\n[[rule]]\nname = "a"\n[rule.hold]\nmedia = "1"\n\n[[rule]]\nname = "b"\n'
        '[rule.match]\nvirtual_phone_numbr = [\n  "74993720692",\n]\n[rule.hold]\nmedia = "1"\n',
        "'virtual_phone_number'",
    ),
]


@pytest.mark.parametrize(("key", "text", "hint"), MISSPELT, ids=[m[0] for m in MISSPELT])
def test_a_misspelt_key_is_reported_at_its_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], key: str, text: str, hint: str
) -> None:
    config = setup(tmp_path, {"x.toml": text})
    code, lines = check(config, capsys)
    assert code == 1
    path = tmp_path / "rules.d" / "x.toml"
    line = line_of(text, f"{key} =")
    assert len(lines) == 2, lines  # the problem, then the count
    assert lines[0].startswith(f"{path}:{line}: "), lines[0]
    assert f"unknown key {key!r}" in lines[0] and hint in lines[0], lines[0]
    assert lines[-1] == "1 problem(s) found"


def test_a_misspelt_top_level_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = setup(tmp_path, {"x.toml": '\n[[rules]]\nname = "a"\n'})
    code, lines = check(config, capsys)
    assert code == 1
    assert lines[0].startswith(
        f"{tmp_path / 'rules.d' / 'x.toml'}:2: unknown top-level key 'rules'"
    )


# Every other kind of problem `holdd check` must catch, with the line it is on.
PROBLEMS = [
    (
        "tts that can never fit",
        '[[rule]]\nname = "a"\n[rule.hold]\ntts = "' + "слово " * 20 + '{contact_full_name}"\n',
        "tts =",
        "over tts_max_length 80",
    ),
    (
        "unknown schedule",
        '[[rule]]\nname = "a"\n[rule.match]\nschedule = "ofice"\n[rule.hold]\nmedia = "1"\n\n'
        '[schedule.office]\ntimezone = "Europe/Moscow"\n',
        "schedule = ",
        "unknown schedule 'ofice' (did you mean 'office'?)",
    ),
    (
        "bad day",
        '[schedule.office]\ntimezone = "Europe/Moscow"\ndays = ["mon-fry"]\n',
        "days =",
        "bad day 'fry' in 'mon-fry'",
    ),
    (
        "bad hours",
        '[schedule.office]\ntimezone = "Europe/Moscow"\nhours = [\n  "09:00-13:00",\n'
        '  "14:00-25:00",\n]\n',
        '"14:00-25:00"',
        "bad hours '14:00-25:00'",
    ),
    (
        "bad date",
        '[schedule.office]\ntimezone = "Europe/Moscow"\nexcept = ["2026-02-30"]\n',
        "except =",
        "bad date '2026-02-30'",
    ),
    (
        "bad date range",
        '[schedule.office]\ntimezone = "Europe/Moscow"\nexcept = ["2027-01-08..2027-01-01"]\n',
        "except =",
        "ends before it starts",
    ),
    (
        "unknown timezone",
        '[schedule.office]\ntimezone = "Europe/Mosow"\n',
        "timezone =",
        "unknown timezone 'Europe/Mosow' (did you mean 'Europe/Moscow'?)",
    ),
    (
        "unreadable @file",
        '[[rule]]\nname = "a"\n[rule.match]\ncontact_phone_number = "@file:lists/vip.txt"\n'
        '[rule.hold]\nmedia = "1"\n',
        "contact_phone_number",
        "cannot read @file:lists/vip.txt (",
    ),
    (
        "regex that does not compile",
        '[[rule]]\nname = "a"\n[rule.match]\nvirtual_phone_number = ["7495*", "re:7(81"]\n'
        '[rule.hold]\nmedia = "1"\n',
        "virtual_phone_number",
        "regular expression '7(81' does not compile",
    ),
    (
        "bad duration",
        '[[rule]]\nname = "a"\nafter = "2 minutes"\n[rule.hold]\nmedia = "1"\n',
        "after =",
        "after: bad duration '2 minutes'",
    ),
    (
        "bad unhold_after",
        '[[rule]]\nname = "a"\n[rule.hold]\nmedia = "1"\n[rule.then]\nunhold_after = "0s"\n',
        "unhold_after",
        "unhold_after must be longer than 0s",
    ),
    (
        "unknown placeholder",
        '[[rule]]\nname = "a"\n[rule.hold]\ntts = "Здравствуйте, {name}!"\n',
        "tts =",
        "unknown placeholder {name}",
    ),
    (
        "media not numeric",
        '[[rule]]\nname = "a"\n[rule.hold]\nmedia = "music.mp3"\n',
        "media =",
        "media 'music.mp3' is not a media file id",
    ),
    (
        "direction not in/out",
        '[[rule]]\nname = "a"\n[rule.match]\ndirection = "inbound"\n[rule.hold]\nmedia = "1"\n',
        "direction =",
        "direction 'inbound' is not in or out",
    ),
    (
        "hold with both",
        '[[rule]]\nname = "a"\n[rule.hold]\nmedia = "1"\ntts = "x"\n',
        "[rule.hold]",
        "exactly one of media and tts",
    ),
    (
        "hold with none",
        '[[rule]]\nname = "a"\n[rule.hold]\n',
        "[rule.hold]",
        "exactly one of media and tts",
    ),
    (
        "no hold at all",
        '[[rule]]\nname = "a"\n[rule.match]\ndirection = "in"\n',
        "[[rule]]",
        "missing key 'hold'",
    ),
    (
        "duplicate name",
        GOOD + '\n[[rule]] # again\nname = "vip"\n[rule.hold]\nmedia = "2"\n',
        "[[rule]] # again",
        'rule "vip": duplicate rule name (first defined in ',
    ),
    (
        "empty list",
        '[[rule]]\nname = "a"\n[rule.match]\nemployee_id = []\n[rule.hold]\nmedia = "1"\n',
        "employee_id",
        "empty list",
    ),
    (
        "wrong type",
        '[[rule]]\nname = "a"\n[rule.match]\nemployee_id = "25"\n[rule.hold]\nmedia = "1"\n',
        "employee_id",
        "employee_id: expected a whole number or a list, got text",
    ),
]


@pytest.mark.parametrize(
    ("label", "text", "needle", "words"), PROBLEMS, ids=[p[0] for p in PROBLEMS]
)
def test_each_kind_of_problem_has_its_line(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    label: str,
    text: str,
    needle: str,
    words: str,
) -> None:
    config = setup(tmp_path, {"x.toml": text})
    code, lines = check(config, capsys)
    assert code == 1
    path = tmp_path / "rules.d" / "x.toml"
    if "\n" in needle:
        # The second occurrence of a multi-line needle (a duplicate's header).
        first = text.index(needle)
        line = text[: text.index(needle, first + 1)].count("\n") + 1
    else:
        line = line_of(text, needle)
    assert lines[:-1] == [ln for ln in lines[:-1] if ln.startswith(f"{path}:")], lines
    assert any(ln.startswith(f"{path}:{line}: ") and words in ln for ln in lines), (line, lines)


def test_a_bad_line_of_an_at_file_list_names_the_list_and_its_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rules = (
        '[[rule]]\nname = "vip"\n[rule.match]\ncontact_phone_number = "@file:vip.txt"\n'
        '[rule.hold]\nmedia = "1"\n'
    )
    listing = "# VIPs\n79261112233\n\nre:79[16\n7926*  # a block\n"
    config = setup(tmp_path, {"x.toml": rules}, {"vip.txt": listing})
    code, lines = check(config, capsys)
    assert code == 1
    vip = tmp_path / "rules.d" / "vip.txt"
    assert lines[0].startswith(f"{vip}:4: rule \"vip\": regular expression '79[16'"), lines


def test_every_problem_of_every_file_at_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a = '[[rule]]\nname = "a"\npriorty = 1\nafter = "soon"\n[rule.hold]\nmedia = "x"\n'
    b = '[[rule]]\nname = "b"\n[rule.match]\ndirection = "up"\n[rule.hold]\ntts = "{nope}"\n'
    config = setup(tmp_path, {"a.toml": a, "b.toml": b, "c.toml": GOOD})
    code, lines = check(config, capsys)
    assert code == 1
    where = [ln.split(" ", 1)[0] for ln in lines[:-1]]
    pa, pb = tmp_path / "rules.d" / "a.toml", tmp_path / "rules.d" / "b.toml"
    assert where == [f"{pa}:3:", f"{pa}:4:", f"{pa}:6:", f"{pb}:4:", f"{pb}:6:"], lines
    assert lines[-1] == "5 problem(s) found"


def test_a_good_rule_set_passes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = setup(tmp_path, {"a.toml": GOOD})
    assert main(["check", "-c", str(config)]) == 0
    assert "ok, 1 rule(s) in 1 file(s)" in capsys.readouterr().out


def test_the_shipped_example_rules_pass_check(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shipped = Path(__file__).resolve().parents[2] / "config" / "rules.d"
    config = tmp_path / "holdd.toml"
    config.write_text(CONFIG.replace("rules.d/*.toml", f"{shipped}/*.toml"), encoding="utf-8")
    assert main(["check", "-c", str(config)]) == 0, capsys.readouterr().err
