"""What the machine asks of the shell after each input (core: plain values).

`Commands` gathers, for one input or one loop turn: the store operations to
write in one transaction (`persist`), the requests to send (`sends`), the
timers to arm or disarm, the log records and metric increments, and the
rule driver's effects (what `holdd test` and `holdd simulate` render). The
shell carries them out in that order: nothing is sent before the
transaction that claims it is durable (docs/architecture.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import msgspec

from holdd.core.records import ClaimKey, StoreOp
from holdd.core.rules.driver import Effect, Timer
from holdd.core.rules.engine import Decision
from holdd.core.rules.model import ContactMessage


@dataclass(frozen=True, slots=True)
class SendHold:
    """Send `hold.call` for `decision` (its claim is in the same transaction)."""

    decision: Decision

    @property
    def key(self) -> ClaimKey:
        return (self.decision.call_session_id, self.decision.rule.name, "hold")


@dataclass(frozen=True, slots=True)
class SendUnhold:
    call_session_id: int
    rule: str
    episode: int

    @property
    def key(self) -> ClaimKey:
        return (self.call_session_id, self.rule, "unhold")


Send = SendHold | SendUnhold


@dataclass(frozen=True, slots=True)
class Arm:
    timer: Timer


@dataclass(frozen=True, slots=True)
class Disarm:
    timer: Timer


# Log records and metric increments are msgspec Structs (built in C, where a
# frozen dataclass calls object.__setattr__ once per field): the machine
# makes several for every notification.
class LogRecord(msgspec.Struct, frozen=True, gc=False):
    """One structured log line: `level` is debug, info, warning or error."""

    level: str
    event: str
    fields: dict[str, object]


class Metric(msgspec.Struct, frozen=True, gc=False):
    """One counter increment: `name` is a method of io/metrics.py's `Metrics`
    taking `labels` as positional arguments."""

    name: str
    labels: tuple[str, ...]


@dataclass(slots=True)
class Outcome:
    """What became of one hold decision (the demo's table, tests)."""

    call_session_id: int
    rule: str
    message: ContactMessage
    result: str
    mnemonic: str | None = None
    #: `hold.call` requests sent for it.
    attempts: int = 0
    #: How a hold whose own answer was lost was found to have taken.
    confirmed_by: str | None = None


@dataclass(slots=True)
class Commands:
    persist: list[StoreOp] = field(default_factory=list)
    sends: list[Send] = field(default_factory=list)
    timers: list[Arm | Disarm] = field(default_factory=list)
    logs: list[LogRecord] = field(default_factory=list)
    metrics: list[Metric] = field(default_factory=list)
    #: (moment, effect) of the rule driver, in order.
    effects: list[tuple[float, Effect]] = field(default_factory=list)

    def log(self, level: str, event: str, **fields: object) -> None:
        self.logs.append(LogRecord(level, event, fields))

    def count(self, name: str, *labels: str) -> None:
        self.metrics.append(Metric(name, labels))

    def extend(self, other: Commands) -> None:
        self.persist.extend(other.persist)
        self.sends.extend(other.sends)
        self.timers.extend(other.timers)
        self.logs.extend(other.logs)
        self.metrics.extend(other.metrics)
        self.effects.extend(other.effects)


__all__ = [
    "Arm",
    "Commands",
    "Disarm",
    "LogRecord",
    "Metric",
    "Outcome",
    "Send",
    "SendHold",
    "SendUnhold",
]
