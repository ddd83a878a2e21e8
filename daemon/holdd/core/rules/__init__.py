"""The rule language (core): model, patterns, schedules,
the engine that picks at most one rule for a call in Talk, and the
driver that turns its decisions into effects over time (docs/rules.md)."""

from holdd.core.rules.cooldowns import CooldownLookup, Cooldowns
from holdd.core.rules.driver import (
    Agenda,
    Cancelled,
    Effect,
    Hold,
    NoHold,
    Pending,
    RuleDriver,
    Timer,
    TimerKind,
    Unhold,
)
from holdd.core.rules.engine import Decision, Evaluation, RuleEngine, RuleTrace
from holdd.core.rules.model import ContactMessage, Mode, Rule, RuleSet
from holdd.core.rules.schedule import Schedule

__all__ = [
    "Agenda",
    "Cancelled",
    "ContactMessage",
    "CooldownLookup",
    "Cooldowns",
    "Decision",
    "Effect",
    "Evaluation",
    "Hold",
    "Mode",
    "NoHold",
    "Pending",
    "Rule",
    "RuleDriver",
    "RuleEngine",
    "RuleSet",
    "RuleTrace",
    "Schedule",
    "Timer",
    "TimerKind",
    "Unhold",
]
