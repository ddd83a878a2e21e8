"""The daemon's inputs: everything that goes into its one queue (shell)."""

from __future__ import annotations

from dataclasses import dataclass

from holdd.callapi import ActiveCall
from holdd.core.hold_policy import Verdict
from holdd.core.records import Adopted
from holdd.core.rules import RuleSet
from holdd.core.rules.driver import Timer
from holdd.core.rules.engine import Decision


@dataclass(frozen=True, slots=True)
class Frame:
    """A transport message: raw text/bytes (websocket) or parsed JSON (webhook)."""

    payload: object
    source: str


@dataclass(frozen=True, slots=True)
class Snapshot:
    active: list[ActiveCall]
    taken_at: float


@dataclass(frozen=True, slots=True)
class TimerDue:
    timer: Timer


@dataclass(frozen=True, slots=True)
class HoldDone:
    decision: Decision
    verdict: Verdict


@dataclass(frozen=True, slots=True)
class UnholdDone:
    call_session_id: int
    rule: str
    verdict: Verdict


@dataclass(frozen=True, slots=True)
class Reload:
    rules: RuleSet


@dataclass(frozen=True, slots=True)
class Adopt:
    """Work a shared store took over from instances whose lease expired."""

    adopted: Adopted


Input = Frame | Snapshot | TimerDue | HoldDone | UnholdDone | Reload | Adopt


__all__ = [
    "Adopt",
    "Frame",
    "HoldDone",
    "Input",
    "Reload",
    "Snapshot",
    "TimerDue",
    "UnholdDone",
]
