"""The one error hierarchy of holdd (core).

    HolddError
    ├── ConfigError            a config or rule file cannot be used (carries every Problem)
    ├── StoreError             the state store cannot be opened, read or written
    │   └── StateDbError       ... the SQLite file (io/store/sqlite.py)
    │       ├── StateDbReplaced  deleted or replaced under the running daemon
    │       └── StateDbCorrupt   its content damaged (malformed, not a database)
    └── CallApiFailure         a Call API request did not succeed (callapi/failures.py)
        ├── CallApiError       the API answered with a JSON-RPC error; one subclass
        │                      per policy (ServerFault, RequestRefused, TokenRejected,
        │                      LimitExceeded, CallGone, InvalidState)
        └── OutcomeUnknown     no answer: the request may or may not have been applied
            ├── RequestNotSent (RateLimitWait)   never sent: nothing happened
            └── ProtocolError  an answer that is not JSON-RPC

Errors are raised where they are found and logged once, at the task boundary.
"""

from __future__ import annotations

from dataclasses import dataclass


class HolddError(Exception):
    """Base of every error holdd raises on purpose."""


class StoreError(HolddError):
    """The state store cannot be opened, read or written (io/store/)."""


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong in a file, printed as `path:line: rule "name": what (hint)`."""

    path: str
    line: int | None
    what: str
    rule: str | None = None
    hint: str | None = None

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}:" if self.line else f"{self.path}:"
        rule = f' rule "{self.rule}":' if self.rule else ""
        hint = f" ({self.hint})" if self.hint else ""
        # One problem, one line: control characters from a file are shown
        # escaped, so a rule name cannot split or forge a line.
        return _printable(f"{where}{rule} {self.what}{hint}")


def _printable(text: str) -> str:
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


class ConfigError(HolddError):
    """Raised with every problem found, never just the first."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))
