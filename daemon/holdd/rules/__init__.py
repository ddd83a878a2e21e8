"""The rule language (core): model, patterns, schedules, loading with file:line
errors, the engine that picks at most one rule for a call in Talk, and the
driver that turns its decisions into effects over time (docs/rules.md)."""

from holdd.rules.cooldowns import CooldownLookup, Cooldowns, CooldownStore
from holdd.rules.driver import (
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
from holdd.rules.engine import Decision, Evaluation, RuleEngine, RuleTrace
from holdd.rules.load import load_rules
from holdd.rules.model import ContactMessage, Mode, Rule, RuleSet
from holdd.rules.schedule import Schedule

__all__ = [
    "Agenda",
    "Cancelled",
    "ContactMessage",
    "CooldownLookup",
    "CooldownStore",
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
    "load_rules",
]
