"""Coverage-guided fuzzing of the notification parser, `holdd.core.events.decode`.

    python fuzz/fuzz_events.py -atheris_runs=100000

With atheris installed (`pip install atheris`; wheels exist for CPython 3.11
on Linux x86_64) this is a libFuzzer target: any libFuzzer flag works, and
corpus directories may follow the flags (new inputs are written to the
first one). Without a corpus directory it starts from the seeds in
fuzz/corpus/events. The token dictionary fuzz/events.dict (big numbers,
template placeholders, notification keys) is used unless `-dict=` is given.

Without atheris it falls back to a plain loop that mutates the same seeds
at random (no coverage guidance), reading `-atheris_runs=N` and `-seed=S`
the same way.

Every input is decoded as bytes and as text. The invariants, beyond "never
raises": each notification has a positive call_session_id below 2**63 and
only text, null or 64-bit whole-number fields; each rejection has a reason
and a detail; an input yields nothing only if it is an empty JSON array;
decoding a notification's own fields again gives the same notification; and
wherever the parser's short way (`plain_notification`) answers, its long way
(`normalised_notification`) answers the same.

A failing input is written to `crash-<sha1>` in the current directory
(libFuzzer does the same), then the exception is raised.
"""

from __future__ import annotations

import contextlib
import hashlib
import random
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SEEDS = HERE / "corpus" / "events"
DICTIONARY = HERE / "events.dict"
# Run from a checkout without installing: the package lives in daemon/.
sys.path.insert(0, str(HERE.parent / "daemon"))

try:
    import atheris  # type: ignore[import-untyped, import-not-found, unused-ignore]
except ImportError:
    atheris = None

# Under atheris the decoder's modules are instrumented for coverage feedback.
with atheris.instrument_imports() if atheris is not None else contextlib.nullcontext():
    import orjson

    from holdd.core.events import (
        DEFAULT_EVENT_NAMES,
        Decoded,
        EventKind,
        Notification,
        decode,
        load_json,
        normalised_notification,
        plain_notification,
        repair_template,
    )
    from holdd.core.states import CallState


class InvariantBroken(AssertionError):
    """The parser returned something it must never return."""


def _check(condition: bool, what: str, raw: object) -> None:
    if not condition:
        raise InvariantBroken(f"{what}: input {raw!r}"[:2000])


def _is_empty_array(raw: str | bytes) -> bool:
    for text in (raw, repair_template(raw)):
        if text is None:
            continue
        try:
            if orjson.loads(text) == []:
                return True
        except orjson.JSONDecodeError:
            continue
    return False


def _again(n: Notification) -> Notification:
    """The notification decoded from its own fields."""
    payload: dict[str, Any] = {**n.fields, "call_session_id": n.call_session_id}
    if n.state is not None:
        payload["state"] = n.state.value
    decoded = decode(orjson.dumps(payload))
    _check(len(decoded.notifications) == 1, "its own fields do not decode", payload)
    return decoded.notifications[0]


def _short_way_agrees(raw: str | bytes) -> None:
    """Every object of the message read the short way and the long way."""
    try:
        doc = load_json(raw)
    except orjson.JSONDecodeError:
        return
    for item in doc if isinstance(doc, list) else [doc]:
        if not isinstance(item, dict):
            continue
        short = plain_notification(item, DEFAULT_EVENT_NAMES)
        if short is not None:
            long = normalised_notification(item, DEFAULT_EVENT_NAMES)
            _check(
                short == long
                and isinstance(long, Notification)
                and list(short.fields.items()) == list(long.fields.items()),
                "the short way answers otherwise than the long way",
                raw,
            )


def check(raw: str | bytes) -> Decoded:
    decoded = decode(raw)
    for n in decoded.notifications:
        _check(isinstance(n, Notification), "not a Notification", raw)
        _check(
            type(n.call_session_id) is int and n.call_session_id > 0,
            "call_session_id is not a positive integer",
            raw,
        )
        # Beyond 64 bits neither SQLite (the state database) nor orjson (logs,
        # the Call API request) can take it.
        _check(n.call_session_id < 2**63, "call_session_id beyond 64 bits", raw)
        _check(isinstance(n.kind, EventKind), "kind is not an EventKind", raw)
        _check(n.state is None or isinstance(n.state, CallState), "state is not a CallState", raw)
        for key, value in n.fields.items():
            _check(isinstance(key, str), "a field name is not text", raw)
            _check(
                value is None or isinstance(value, str) or type(value) is int,
                f"field {key!r} is {type(value).__name__}",
                raw,
            )
            if type(value) is int:
                _check(-(2**63) <= value < 2**63, f"field {key!r} beyond 64 bits", raw)
        _check(_again(n) == n, "decoding its own fields gives another notification", raw)
    for r in decoded.rejections:
        _check(bool(r.reason.value) and bool(r.detail), "a rejection without reason or detail", raw)
    _check(
        bool(decoded.notifications or decoded.rejections) or _is_empty_array(raw),
        "neither a notification nor a rejection",
        raw,
    )
    _short_way_agrees(raw)
    return decoded


def test_one_input(data: bytes) -> None:
    try:
        check(data)
        check(data.decode("utf-8", errors="replace"))
    except BaseException:
        name = Path(f"crash-{hashlib.sha1(data).hexdigest()}")  # noqa: S324 - a file name
        name.write_bytes(data)
        print(f"failing input written to {name}", file=sys.stderr)
        raise


# -- without atheris: random mutation of the seeds -------------------------------------

_TOKENS = [
    b"{",
    b"}",
    b"[",
    b"]",
    b'"',
    b":",
    b",",
    b"null",
    b"{{x}}",
    b'""',
    b"\\u0000",
    b'"call_session_id"',
    b'"state"',
    b'"params"',
    b"1e400",
    b"-1",
    b"18446744073709551616",
    "Начало разговора".encode(),
    b"\xff",
    b"\x00",
]


def _mutate(rng: random.Random, data: bytes, seeds: Sequence[bytes]) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randint(1, 6)):
        op = rng.randrange(6)
        at = rng.randint(0, len(buf))
        if op == 0 and buf:  # flip a byte
            i = rng.randrange(len(buf))
            buf[i] = rng.randrange(256)
        elif op == 1 and buf:  # delete a run
            del buf[at : at + rng.randint(1, 8)]
        elif op == 2:  # insert a JSON-ish token
            buf[at:at] = rng.choice(_TOKENS)
        elif op == 3:  # insert random bytes
            buf[at:at] = rng.randbytes(rng.randint(1, 8))
        elif op == 4 and seeds:  # splice another seed in
            other = rng.choice(seeds)
            start = rng.randint(0, len(other))
            buf[at:at] = other[start : start + rng.randint(1, 40)]
        elif buf:  # duplicate a run
            chunk = buf[at : at + rng.randint(1, 16)]
            buf[at:at] = chunk
    return bytes(buf)


def _flag(argv: Sequence[str], name: str, default: int) -> int:
    for arg in argv:
        if arg.startswith(f"-{name}="):
            return int(arg.split("=", 1)[1])
    return default


def fallback(argv: Sequence[str], one_input: Callable[[bytes], None] = test_one_input) -> int:
    runs = _flag(argv, "atheris_runs", _flag(argv, "runs", 100_000))
    seed = _flag(argv, "seed", int(time.time()))
    # Fuzzing, not cryptography: a seeded PRNG makes a run repeatable.
    rng = random.Random(seed)  # noqa: S311
    seeds = [p.read_bytes() for p in sorted(SEEDS.iterdir()) if p.is_file()]
    print(f"atheris is not installed: {runs} random mutations of {len(seeds)} seeds, seed={seed}")
    started = time.perf_counter()
    for i in range(runs):
        if seeds and rng.random() < 0.9:
            data = _mutate(rng, rng.choice(seeds), seeds)
        else:
            data = rng.randbytes(rng.randint(0, 64))
        one_input(data)
        if i and i % 20_000 == 0:
            print(f"#{i} inputs, {i / (time.perf_counter() - started):,.0f}/s")
    print(f"done: {runs} inputs in {time.perf_counter() - started:.1f} s, no failure")
    return 0


def main(argv: list[str]) -> int:
    if atheris is None:
        return fallback(argv)
    args = list(argv)
    corpus_given = any(not a.startswith("-") for a in args[1:])
    if not corpus_given and not any(a.startswith("-seed_inputs=") for a in args):
        args.append("-seed_inputs=" + ",".join(str(p) for p in sorted(SEEDS.iterdir())))
    if not any(a.startswith("-dict=") for a in args):
        args.append(f"-dict={DICTIONARY}")
    atheris.Setup(args, test_one_input)
    atheris.Fuzz()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
