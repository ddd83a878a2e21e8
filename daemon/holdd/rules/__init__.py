"""The rule language (core): model, patterns, loading with file:line errors,
and the engine that turns a call entering Talk into at most one decision."""

from holdd.rules.engine import Decision, Evaluation, RuleEngine, RuleTrace
from holdd.rules.load import load_rules
from holdd.rules.model import ContactMessage, Mode, Rule, RuleSet

__all__ = [
    "ContactMessage",
    "Decision",
    "Evaluation",
    "Mode",
    "Rule",
    "RuleEngine",
    "RuleSet",
    "RuleTrace",
    "load_rules",
]
