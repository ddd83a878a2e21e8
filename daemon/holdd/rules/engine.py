"""The rule engine (core): a call that entered Talk -> at most one decision,
with a trace of every rule tried.

Semantics (holdd-spec.md section 5): rules are tried by priority, then file
order; the first whose every condition matches acts; a rule that already acted
on the call is skipped (a rule fires at most once per call). The engine does
not remember anything itself: what fired lives on the call record and, durably,
in the ledger, so a reload that swaps the engine loses nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

from holdd.calls import Call
from holdd.rules.model import ContactMessage, Mode, Rule, RuleSet


@dataclass(frozen=True, slots=True)
class RuleTrace:
    """Why one rule did or did not act: the first condition that failed, and the
    value the call actually had."""

    rule: str
    matched: bool
    failed_key: str | None = None
    actual: object = None
    skipped: str | None = None

    def as_dict(self) -> dict[str, object]:
        out: dict[str, object] = {"rule": self.rule, "matched": self.matched}
        if self.skipped:
            out["skipped"] = self.skipped
        if self.failed_key:
            out["failed"] = self.failed_key
            out["actual"] = self.actual
        return out


@dataclass(frozen=True, slots=True)
class Decision:
    call_session_id: int
    episode: int
    rule: Rule
    message: ContactMessage

    @property
    def shadow(self) -> bool:
        return self.rule.mode is Mode.SHADOW


@dataclass(frozen=True, slots=True)
class Evaluation:
    call_session_id: int
    decision: Decision | None
    trace: tuple[RuleTrace, ...]
    #: Set when the matching rule cannot act (a TTS too long after substitution).
    error: str | None = None


class RuleEngine:
    def __init__(self, rules: RuleSet) -> None:
        self.rules = rules

    def evaluate(self, call: Call) -> Evaluation:
        trace: list[RuleTrace] = []
        for rule in self.rules.rules:
            if rule.name in call.fired:
                trace.append(RuleTrace(rule.name, False, skipped="fired_before"))
                continue
            failed = None
            for cond in rule.conditions:
                ok, actual = cond.test(call.fields)
                if not ok:
                    failed = RuleTrace(rule.name, False, cond.key, actual)
                    break
            if failed is not None:
                trace.append(failed)
                continue
            trace.append(RuleTrace(rule.name, True))
            message = rule.hold.render({**call.fields, "call_session_id": call.call_session_id})
            if message.type == "tts" and len(message.value) > self.rules.tts_max_length:
                error = (
                    f"tts text is {len(message.value)} characters after placeholders, "
                    f"over tts_max_length {self.rules.tts_max_length}"
                )
                return Evaluation(call.call_session_id, None, tuple(trace), error)
            decision = Decision(call.call_session_id, call.episode, rule, message)
            return Evaluation(call.call_session_id, decision, tuple(trace))
        return Evaluation(call.call_session_id, None, tuple(trace))
