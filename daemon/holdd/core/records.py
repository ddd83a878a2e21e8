"""What the machine asks the store to keep, and what the store gives back at
start (core: plain values, no I/O).

The store (io/store/) is the only place that writes them. One input to the
machine yields one list of `StoreOp`s, written in one transaction; a
`PutClaim` is durable before the request it guards is sent (docs/architecture.md).

A claim is the fired-once ledger's row for (call, rule, action): made before
the first request, finished with the result after the last. A second claim
of the same key is refused by the store, so a duplicate notification, a
reconnect, a reload or a restart never sends an action twice. A claim left
without a result by a crash is settled at the next start with `list.calls`
(held, or released and sent again).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import msgspec

from holdd.core.rules.driver import Timer, TimerKind
from holdd.core.states import CallState

#: A claim's key: (call_session_id, rule, action).
ClaimKey = tuple[int, str, str]


@dataclass(slots=True)
class Claim:
    call_session_id: int
    rule: str
    #: "hold", "unhold", "would_hold" or "would_unhold".
    action: str
    claimed_at: float
    result: str | None = None
    finished_at: float | None = None
    #: The instance that made (or adopted) the claim: a shared store's only.
    owner: str | None = None

    @property
    def key(self) -> ClaimKey:
        return (self.call_session_id, self.rule, self.action)


class TraceKind(StrEnum):
    EVENT = "event"
    EVALUATION = "evaluation"
    ACTION = "action"


@dataclass(frozen=True, slots=True)
class CallRecord:
    """What must survive a restart about one call."""

    call_session_id: int
    episode: int
    talk_started_at: float | None
    state: CallState
    updated_at: float
    #: The notification variables seen for the call (rules match on them).
    fields: Mapping[str, str | int | None] = field(default_factory=dict)
    #: Rules that acted on the call (a rule fires at most once per call).
    fired: tuple[str, ...] = ()
    #: The Talk episode in which a rule acted, if one did.
    acted_episode: int | None = None
    #: The Talk episode the rules were evaluated for (None: unknown, a
    #: schema 1 row).
    decided_episode: int | None = None


# The trace entries and the store operations are msgspec Structs, as
# events.py's `Notification` is: several are made for every notification,
# and a Struct is built in C where a frozen dataclass calls
# object.__setattr__ once per field (~5 times as long). (`CallRecord` stays
# a dataclass: `dataclasses.replace` is used on it.) They are values that
# never refer back to anything that refers to them, so none can be part of
# a reference cycle: `gc=False` keeps them out of the garbage collector's
# books (the dicts they hold are still tracked), and fewer tracked objects
# per notification means fewer collections (about 10% of the ingest path).
# The other Structs of the core path (commands.py, events.py, calls.py,
# rules/engine.py) are made the same way, for the same reason.
class TraceEntry(msgspec.Struct, frozen=True, gc=False):
    call_session_id: int
    at: float
    kind: TraceKind
    payload: Mapping[str, Any]
    #: The instance that wrote it: a shared store's only.
    instance: str | None = None


# -- store operations (one input's list is one transaction) ---------------------


class SaveCall(msgspec.Struct, frozen=True, gc=False):
    record: CallRecord


class DeleteCall(msgspec.Struct, frozen=True, gc=False):
    call_session_id: int


class PutClaim(msgspec.Struct, frozen=True, gc=False):
    """Insert the claim; the store reports it refused when the key exists."""

    claim: Claim


class FinishClaim(msgspec.Struct, frozen=True, gc=False):
    key: ClaimKey
    result: str
    at: float


class ReleaseClaim(msgspec.Struct, frozen=True, gc=False):
    """Drop a claim without a result: its request provably took no effect."""

    key: ClaimKey


class PutTimer(msgspec.Struct, frozen=True, gc=False):
    timer: Timer


class DropTimer(msgspec.Struct, frozen=True, gc=False):
    kind: TimerKind
    call_session_id: int


class AddTrace(msgspec.Struct, frozen=True, gc=False):
    entry: TraceEntry


class RecordCooldown(msgspec.Struct, frozen=True, gc=False):
    rule: str
    #: The contact number as digits.
    contact: str
    at: float


StoreOp = (
    SaveCall
    | DeleteCall
    | PutClaim
    | FinishClaim
    | ReleaseClaim
    | PutTimer
    | DropTimer
    | AddTrace
    | RecordCooldown
)


@dataclass(slots=True)
class Restored:
    """Everything the machine needs back after a restart (Store.load)."""

    calls: list[CallRecord] = field(default_factory=list)
    timers: list[Timer] = field(default_factory=list)
    #: Claims of the restored calls, finished or not.
    claims: list[Claim] = field(default_factory=list)
    #: (rule, contact digits, last fired at) of cooldowns still running.
    cooldowns: list[tuple[str, str, float]] = field(default_factory=list)


@dataclass(slots=True)
class Adopted:
    """What a shared store hands to a survivor from instances whose lease
    expired (`Machine.adopt`): their open claims, settled like a restart's
    once `settle_at` has passed (by then no request of theirs can still be
    on its way), their timers, and the calls both belong to."""

    calls: list[CallRecord] = field(default_factory=list)
    claims: list[Claim] = field(default_factory=list)
    timers: list[Timer] = field(default_factory=list)
    #: The instances whose lease expired.
    instances: list[str] = field(default_factory=list)
    #: Seconds from now until the adopted claims may be settled.
    settle_in: float = 0.0


__all__ = [
    "AddTrace",
    "Adopted",
    "CallRecord",
    "Claim",
    "ClaimKey",
    "DeleteCall",
    "DropTimer",
    "FinishClaim",
    "PutClaim",
    "PutTimer",
    "RecordCooldown",
    "ReleaseClaim",
    "Restored",
    "SaveCall",
    "StoreOp",
    "TraceEntry",
    "TraceKind",
]
