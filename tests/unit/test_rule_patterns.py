"""Number and text patterns, @file: lists, and the prefixes the index relies on."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from holdd.core.rules.patterns import (
    NumberSet,
    PatternError,
    list_file_lines,
    number_pattern,
    text_set,
)


def test_exact_glob_and_regex() -> None:
    assert number_pattern("+7 (926) 111-22-33").exact == "79261112233"
    glob = number_pattern("7495*")
    assert (glob.prefix, glob.prefix_only) == ("7495", True)
    assert glob.matches("74950000000") and not glob.matches("7496")
    inner = number_pattern("7?26*")
    assert (inner.prefix, inner.prefix_only) == ("7", False)
    assert inner.matches("79260000000") and not inner.matches("79270000000")
    assert number_pattern("*").matches("1") and number_pattern("*").prefix == ""
    assert number_pattern(r"re:^7916\d{7}$").prefix == "7916"


@pytest.mark.parametrize(
    ("source", "prefix"),
    [
        (r"^7916\d{7}$", "7916"),
        (r"7916\d+", "7916"),
        ("7495?", "749"),
        ("7495*", "749"),
        ("7495+", "749"),
        ("7495{2}", "749"),
        (r"79(26|16)\d{7}", ""),
        (r"7926\d{7}|7916\d{7}", ""),
        (r"\d+0692", ""),
        ("(?:7495)", ""),
        ("[78]495", ""),
    ],
)
def test_regex_prefixes_are_conservative(source: str, prefix: str) -> None:
    assert number_pattern("re:" + source).prefix == prefix


REGEXES = [
    r"^7916\d{7}$",
    r"7495?\d{2}",
    r"7495*1",
    r"74+95",
    r"7812\d{0,3}",
    r"78(1|2)\d",
    r"7{2}8",
]


@pytest.mark.parametrize("source", REGEXES)
@given(data=st.data())
def test_every_number_a_regex_matches_starts_with_its_prefix(
    source: str, data: st.DataObject
) -> None:
    # The index finds a regex rule by this prefix: a match without it would
    # be a rule the index hides.
    number = data.draw(st.from_regex(re.compile(source), fullmatch=True))
    pattern = number_pattern("re:" + source)
    assert pattern.matches(number)
    assert number.startswith(pattern.prefix), (source, number, pattern.prefix)


@given(st.text(alphabet="0123456789", max_size=14), st.text(alphabet="0123456789*?", max_size=8))
def test_a_number_set_agrees_with_its_patterns_one_by_one(number: str, glob: str) -> None:
    texts = ["74950000001", "7812*", "7?26*", r"re:^7813\d{7}$", glob]
    patterns = []
    for t in texts:
        try:
            patterns.append(number_pattern(t))
        except PatternError:
            continue
    one_by_one = any(p.matches(number) for p in patterns)
    assert NumberSet(tuple(patterns)).matches(number) == one_by_one
    keys = NumberSet(tuple(patterns)).index_keys()
    if keys is not None and one_by_one:
        exact, prefixes = keys
        assert number in exact or any(number.startswith(p) for p in prefixes)


def test_bad_patterns_say_why() -> None:
    with pytest.raises(PatternError, match="has no digits"):
        number_pattern("vip")
    with pytest.raises(PatternError, match="does not compile"):
        number_pattern("re:((")
    with pytest.raises(PatternError, match="does not compile"):
        text_set(["re:(("])


def test_text_sets_ignore_case() -> None:
    texts = text_set(["In", "re:sales.*"])
    assert texts.matches("IN") and texts.matches("in")
    assert texts.matches("SALES line") and not texts.matches("presales")


def test_list_files_skip_comments_and_blanks() -> None:
    text = "# VIPs\n\n79261112233   # Иван\n  7926555*\nre:^7916\\d{3}#?0000$\n#7495\n"
    assert list_file_lines(text) == [
        (3, "79261112233"),
        (4, "7926555*"),
        (5, "re:^7916\\d{3}#?0000$"),
    ]
