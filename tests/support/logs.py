"""The structlog JSON lines of one test, and the fixture that captures them."""

from __future__ import annotations

import io
from collections import Counter
from typing import Any

import orjson
import pytest

from holdd.io import logs


class LogCapture:
    """The structlog JSON lines of one test."""

    def __init__(self) -> None:
        self.buffer = io.BytesIO()

    @property
    def raw(self) -> bytes:
        return self.buffer.getvalue()

    def events(self, name: str | None = None) -> list[dict[str, Any]]:
        out = [orjson.loads(line) for line in self.raw.splitlines() if line.strip()]
        return [e for e in out if name is None or e["event"] == name]


class EventCounts(io.BytesIO):
    """A log stream that keeps only how often each event was logged: for a
    test that measures memory and must not hold every line it causes."""

    def __init__(self) -> None:
        super().__init__()
        self.counts: Counter[str] = Counter()

    def write(self, data: Any, /) -> int:
        for line in bytes(data).splitlines():
            if line.strip():
                self.counts[str(orjson.loads(line)["event"])] += 1
        return len(data)


@pytest.fixture
def captured() -> LogCapture:
    """Every test's log, as an operator would read it. No secrets are given to
    the redactor: what must not be logged is never logged in the first place."""
    capture = LogCapture()
    logs.configure(fmt="json", level="debug", secrets=(), stream=capture.buffer)
    return capture
