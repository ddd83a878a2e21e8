"""`holdd check` on arbitrary rule files never crashes: it loads them, or it
reports problems, each with the file (and line) it is about.

Rule files are generated as text from a grammar of the rule language's keys
and plausible values (durations, number patterns, schedules, TTS templates,
`@file:` lists), mixed with wrong types, unknown keys and random junk
lines, so that most examples get past the TOML parser and reach the
loader's own checks.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from holdd.cli.main import main
from holdd.config.rulefiles import load_rules
from holdd.config.settings import load_settings
from holdd.core.errors import ConfigError

CONFIG = """[callapi]
url = "https://callapi.uiscom.ru/v4.0"
access_token = "fuzz-token"
tts_max_length = 60

[notify]
url = "wss://notify.example.net/stream"

[rules]
files = ["rules.d/*.toml"]
"""

# -- values ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Toml:
    """A value already written as TOML text."""

    text: str


def _string(s: str) -> Toml:
    # A JSON string is a TOML basic string, except for what TOML forbids
    # (DEL, lone surrogates): those make a syntax error, which is fine too.
    return Toml(json.dumps(s, ensure_ascii=False))


junk_text = st.text(max_size=12)
durations = st.one_of(
    st.sampled_from(["0s", "500ms", "15s", "2m", "1h30m", "1d", "1.5s", "90", "-5s", "1h 30m", ""]),
    st.builds(
        lambda n, u: f"{n}{u}",
        st.integers(0, 10**6),
        st.sampled_from(["ms", "s", "m", "h", "d", "w", ""]),
    ),
    junk_text,
)
number_patterns = st.one_of(
    st.sampled_from(
        [
            "74993720692",
            "+7 (926) 000-00-00",
            "7495*",
            "7926???????",
            "*",
            "?",
            "re:^7916\\d{7}$",
            "re:\\d+99$",
            "re:(",
            "re:7{0}9",
            "re:",
            "@file:list.txt",
            "@file:missing.txt",
            "@file:",
            "abc",
            "",
        ]
    ),
    st.text(alphabet="0123456789*?+-() ", max_size=14),
    st.builds(lambda s: "re:" + s, st.text(alphabet="0123456789\\d{}()[]|^$*+?.", max_size=12)),
    junk_text,
)
texts = st.one_of(st.sampled_from(["in", "out", "IN", "va", "sip", "re:^S", "re:[", ""]), junk_text)
templates = st.one_of(
    st.sampled_from(
        [
            "Здравствуйте, {contact_full_name}!",
            "{call_session_id}",
            "{unknown_field}",
            "{0}",
            "{contact_full_name!r}",
            "{employee_id:>5}",
            "{",
            "}",
            "x" * 70,
            "",
        ]
    ),
    junk_text,
)
days = st.one_of(st.sampled_from(["mon-fri", "sat", "sun", "fri-mon", "xyz", ""]), junk_text)
hours = st.one_of(
    st.sampled_from(["09:00-13:00", "14:00-18:00", "18:00-09:00", "25:00-26:00", "9-5", ""]),
    junk_text,
)
dates = st.one_of(
    st.dates().map(lambda d: Toml(d.isoformat())),
    st.sampled_from(["2026-12-31", "2027-01-01..2027-01-08", "2027-13-01", "yesterday"]).map(
        _string
    ),
)
timezones = st.one_of(
    st.sampled_from(["Europe/Moscow", "UTC", "Asia/Yekaterinburg", "Mars/Olympus", "../etc"]),
    junk_text,
)

#: Values of the wrong type, for any key.
wrong = st.one_of(
    st.integers(-(2**70), 2**70).map(lambda i: Toml(str(i))),
    st.booleans().map(lambda b: Toml("true" if b else "false")),
    st.floats(allow_nan=False, allow_infinity=False).map(lambda f: Toml(repr(f))),
    junk_text.map(_string),
    st.just(Toml("[]")),
    st.just(Toml("{}")),
)


def one_or_list(values: st.SearchStrategy[Toml]) -> st.SearchStrategy[Toml]:
    return st.one_of(
        values,
        st.lists(values, max_size=3).map(
            lambda vs: Toml("[" + ", ".join(v.text for v in vs) + "]")
        ),
    )


def strings(values: st.SearchStrategy[str]) -> st.SearchStrategy[Toml]:
    return values.map(_string)


RULE_KEYS: dict[str, st.SearchStrategy[Toml]] = {
    "name": strings(st.one_of(st.sampled_from(["vip", "sales", "vip "]), junk_text)),
    "priority": st.integers(-(2**65), 2**65).map(lambda i: Toml(str(i))),
    "after": strings(durations),
    "mode": strings(st.sampled_from(["live", "shadow", "dry-run"])),
    "enabled": st.booleans().map(lambda b: Toml("true" if b else "false")),
}
MATCH_KEYS: dict[str, st.SearchStrategy[Toml]] = {
    "direction": one_or_list(strings(texts)),
    "virtual_phone_number": one_or_list(strings(number_patterns)),
    "contact_phone_number": one_or_list(strings(number_patterns)),
    "employee_id": one_or_list(st.integers(-5, 10**20).map(lambda i: Toml(str(i)))),
    "call_source": one_or_list(strings(texts)),
    "scenario_name": one_or_list(strings(texts)),
    "schedule": one_or_list(strings(st.sampled_from(["office", "night", "nowhere"]))),
}
SECTION_KEYS: dict[str, dict[str, st.SearchStrategy[Toml]]] = {
    "match": MATCH_KEYS,
    "unless": MATCH_KEYS,
    "hold": {
        "media": st.one_of(
            strings(st.sampled_from(["2034", ""])), st.integers(0, 9999).map(lambda i: Toml(str(i)))
        ),
        "tts": strings(templates),
    },
    "then": {"unhold_after": strings(durations)},
    "limit": {"cooldown": strings(durations)},
}
SCHEDULE_KEYS: dict[str, st.SearchStrategy[Toml]] = {
    "timezone": strings(timezones),
    "days": one_or_list(strings(days)),
    "hours": one_or_list(strings(hours)),
    "except": one_or_list(dates),
}
junk_keys = st.sampled_from(["contact_phone", "hold", "match", "typo", "ключ", "a.b", ""])


def _key(name: str) -> str:
    return name if re.fullmatch(r"[A-Za-z0-9_-]+", name) else json.dumps(name, ensure_ascii=False)


@st.composite
def key_lines(draw: st.DrawFn, keys: dict[str, st.SearchStrategy[Toml]], clean: bool) -> list[str]:
    """`key = value` lines: some of `keys` with plausible values; unless `clean`,
    now and then a value of the wrong type or an unknown key."""
    chosen = draw(st.lists(st.sampled_from(sorted(keys)), max_size=len(keys), unique=True))
    lines = []
    for key in chosen:
        value = draw(keys[key] if clean else st.one_of(keys[key], keys[key], keys[key], wrong))
        lines.append(f"{_key(key)} = {value.text}")
    if not clean and draw(st.integers(0, 5)) == 0:
        lines.append(f"{_key(draw(junk_keys))} = {draw(wrong).text}")
    return lines


@st.composite
def rule_block(draw: st.DrawFn, clean: bool) -> list[str]:
    lines = ["[[rule]]", *draw(key_lines(RULE_KEYS, clean))]
    for section in draw(st.lists(st.sampled_from(sorted(SECTION_KEYS)), max_size=4, unique=True)):
        lines.append(f"[rule.{section}]")
        lines.extend(draw(key_lines(SECTION_KEYS[section], clean)))
    return lines


@st.composite
def schedule_block(draw: st.DrawFn, clean: bool) -> list[str]:
    name = draw(st.sampled_from(["office", "night", "office"]))
    return [f"[schedule.{name}]", *draw(key_lines(SCHEDULE_KEYS, clean))]


@st.composite
def rule_file(draw: st.DrawFn) -> str:
    """Half the files hold only the rule language's own keys and value types
    (the values may still be wrong); the others also junk."""
    clean = draw(st.booleans())
    block = st.one_of(rule_block(clean), rule_block(clean), schedule_block(clean))
    if not clean:
        block = st.one_of(block, junk_text.map(lambda t: [t]))
    blocks = draw(st.lists(block, max_size=5))
    return "\n".join(line for b in blocks for line in b) + "\n"


list_files = st.one_of(
    st.none(),
    st.lists(st.one_of(number_patterns, st.just("# comment"), st.just("")), max_size=6).map(
        "\n".join
    ),
)

# -- the property -------------------------------------------------------------------


def check_files(rules: list[str], listed: str | None) -> None:
    with tempfile.TemporaryDirectory(prefix="holdd-fuzz-") as tmp:
        base = Path(tmp)
        config = base / "holdd.toml"
        config.write_text(CONFIG, encoding="utf-8")
        (base / "rules.d").mkdir()
        texts = {str(config): CONFIG}
        for i, text in enumerate(rules):
            path = base / "rules.d" / f"r{i}.toml"
            path.write_text(text, encoding="utf-8", errors="surrogatepass")
            texts[str(path)] = text
        if listed is not None:
            path = base / "rules.d" / "list.txt"
            path.write_text(listed, encoding="utf-8", errors="surrogatepass")
            texts[str(path)] = listed

        try:
            settings_ = load_settings(config, read_secrets=False)
            load_rules(settings_.rule_files, settings_.tts_max_length)
        except ConfigError as err:
            problems = err.problems
            assert problems
            for problem in err.problems:
                assert problem.path in texts, problem
                assert problem.what, problem
                if problem.line is not None:
                    # Files are read with universal newlines: a lone CR ends a line too.
                    lines = texts[problem.path].replace("\r\n", "\n").replace("\r", "\n")
                    assert 1 <= problem.line <= lines.count("\n") + 1, problem
                assert str(problem).startswith(problem.path + ":"), problem
            expected = 1
            syntax = any("TOML" in p.what for p in err.problems)
            event("problems: TOML syntax" if syntax else "problems: rule language")
        else:
            expected = 0
            event("loaded")

        out, err_out = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err_out):
            code = main(["check", "-c", str(config)])
        assert code == expected, err_out.getvalue()
        if code:
            # Exactly the problems, then how many there were.
            printed = "".join(f"{p}\n" for p in problems)
            assert err_out.getvalue() == f"{printed}{len(problems)} problem(s) found\n"


@settings(
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(st.lists(rule_file(), min_size=1, max_size=3), list_files)
def test_check_never_crashes_on_generated_rule_files(rules: list[str], listed: str | None) -> None:
    check_files(rules, listed)


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.text(max_size=200), min_size=1, max_size=2))
def test_check_never_crashes_on_arbitrary_text(rules: list[str]) -> None:
    check_files(rules, None)


def test_each_problem_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "holdd.toml"
    config.write_text(CONFIG, encoding="utf-8")
    (tmp_path / "rules.d").mkdir()
    rules = tmp_path / "rules.d" / "r.toml"
    rules.write_text(
        '[[rule]]\nname = "vip\\nrules.d/other.toml:1: fine"\ncontact_phone = "7926*"\n'
        '[rule.hold]\nmedia = "2034"\n',
        encoding="utf-8",
    )
    assert main(["check", "-c", str(config)]) == 1
    *lines, summary = capsys.readouterr().err.splitlines()
    assert summary == "1 problem(s) found"
    assert len(lines) == 1
    assert lines[0].startswith(f"{rules}:3:")
