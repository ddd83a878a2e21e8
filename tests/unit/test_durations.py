"""Duration strings ("500ms", "15s", "1h30m"): parse_duration only ever raises
ValueError, reads what it is given exactly, and format_duration's output
reads back to the same value."""

from __future__ import annotations

import datetime as dt
import time
from fractions import Fraction

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from holdd.core.durations import MAX_SECONDS, format_duration, parse_duration

UNITS = {
    "ms": Fraction(1, 1000),
    "s": Fraction(1),
    "m": Fraction(60),
    "h": Fraction(3600),
    "d": Fraction(86400),
}

duration_alphabet = st.text(alphabet="0123456789.msdhw -+e", max_size=16)


@settings(deadline=None)
@given(st.one_of(st.text(max_size=30), duration_alphabet))
def test_parse_raises_only_value_error(text: str) -> None:
    try:
        seconds = parse_duration(text)
    except ValueError as exc:
        assert str(exc)  # says what is wrong and how to write it
        return
    assert seconds >= 0


@st.composite
def written(draw: st.DrawFn) -> tuple[str, Fraction]:
    """A valid duration as an operator might write it, and its exact value."""
    parts = draw(
        st.lists(
            st.tuples(st.integers(0, 10**6), st.sampled_from(sorted(UNITS))), min_size=1, max_size=4
        )
    )
    text, total = "", Fraction(0)
    for number, unit in parts:
        if draw(st.booleans()):
            fraction = draw(st.integers(0, 999))
            literal = f"{number}.{fraction:03d}"
            value = Fraction(literal)
        else:
            literal, value = str(number), Fraction(number)
        text += literal + unit + draw(st.sampled_from(["", "", " "]))
        total += value * UNITS[unit]
    return draw(st.sampled_from(["", " "])) + text, total


@settings(deadline=None)
@given(written())
def test_parse_reads_valid_durations_exactly(case: tuple[str, Fraction]) -> None:
    text, exact = case
    if exact > MAX_SECONDS:
        with pytest.raises(ValueError, match="longer than ten years"):
            parse_duration(text)
        return
    assert parse_duration(text) == pytest.approx(float(exact), rel=1e-12, abs=1e-9)


@settings(deadline=None)
@given(st.integers(0, int(MAX_SECONDS) * 1000))
@example(0)
@example(1)
@example(999)
@example(1000)
@example(1500)
@example(90_000)
@example(86_400_000 + 1)
def test_format_reads_back_to_the_same_milliseconds(ms: int) -> None:
    text = format_duration(ms / 1000)
    assert round(parse_duration(text) * 1000) == ms, text


@settings(deadline=None)
@given(st.integers(0, 10**9))
def test_a_number_without_a_unit_is_refused(n: int) -> None:
    with pytest.raises(ValueError, match=r"write e\.g\."):
        parse_duration(str(n))


@pytest.mark.parametrize("text", ["9" * 400 + "s", "999999999999d"], ids=["infinite", "past-9999"])
def test_an_accepted_duration_can_be_printed_and_dated(text: str) -> None:
    try:
        seconds = parse_duration(text)
    except ValueError:
        return  # refused, with a message: fine
    format_duration(seconds)
    dt.datetime.fromtimestamp(time.time() + seconds, dt.UTC)
