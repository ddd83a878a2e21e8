"""The retry delays (holdd.core.backoff): full jitter under a doubling cap."""

from __future__ import annotations

import itertools
import random

from holdd.core.backoff import full_jitter


def test_the_cap_doubles_from_base_up_to_cap() -> None:
    # rng pinned to 1: every delay is its cap.
    delays = full_jitter(0.5, 60.0, rng=lambda: 1.0)
    assert list(itertools.islice(delays, 9)) == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0]


def test_each_delay_is_the_random_fraction_of_its_cap() -> None:
    draws = random.Random(3)
    fractions = [draws.random() for _ in range(12)]
    delays = full_jitter(0.5, 60.0, rng=iter(fractions).__next__)
    caps = [min(60.0, 0.5 * 2.0**n) for n in range(12)]
    assert list(itertools.islice(delays, 12)) == [
        f * c for f, c in zip(fractions, caps, strict=True)
    ]


def test_the_exponent_stops_growing_long_before_a_float_overflows() -> None:
    delays = full_jitter(0.5, 60.0, rng=lambda: 1.0)
    assert next(itertools.islice(delays, 5000, None)) == 60.0
