"""The rule engine (core): a call in Talk -> at most one decision, with a trace
of every rule tried.

Semantics (docs/rules.md section 2): rules are tried by priority, then file
order; the first that can act is the decision. A rule can act when it has not
fired on this call before, every `[rule.match]` key holds, no `[rule.unless]`
key holds, and its cooldown for the caller has run out. Conditions on time
(`schedule`, the cooldown) are judged at the moment the rule would act:
`max(now, talk_started_at + after)`. A decision whose `due_at` is still ahead
is pending: the caller sets a timer and evaluates again at `due_at`, when the
same rule, if it still matches, is ready (see driver.py).

The engine remembers nothing: what fired lives on the call record, cooldowns
in the store passed in, pending timers with the caller. A reload that swaps
the engine therefore loses nothing.

Speed: a `RuleIndex` finds the rules that could match a call from its numbers,
employee and texts; only those are tried (`Evaluation.tried`). The full trace,
every rule in order with the first condition that failed, is computed on
demand (`Evaluation.trace`) from a snapshot of the call, and reads exactly as
if every rule had been tried.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import msgspec

from holdd.core.calls import Call
from holdd.core.rules.cooldowns import CooldownLookup
from holdd.core.rules.index import RuleIndex
from holdd.core.rules.model import CallView, ContactMessage, Mode, Rule, RuleSet, ScheduleCondition

# Enum members read for every decision, bound once (see core/calls.py).
_SHADOW = Mode.SHADOW


class RuleTrace(msgspec.Struct, frozen=True, gc=False):
    """Why one rule did or did not act: the first condition that failed, and the
    value the call actually had. (A Struct rather than a dataclass: one is
    made for every rule tried, and Structs are several times cheaper to make.)"""

    rule: str
    matched: bool
    failed_key: str | None = None
    actual: object = None
    skipped: str | None = None
    #: Words for what `failed_key` alone does not say: "outside schedule
    #: office", "unless matched: contact_phone_number", "cooldown until ...".
    reason: str | None = None

    def as_dict(self) -> dict[str, object]:
        out: dict[str, object] = {"rule": self.rule, "matched": self.matched}
        if self.skipped:
            out["skipped"] = self.skipped
        if self.failed_key:
            out["failed"] = self.failed_key
            out["actual"] = self.actual
        if self.reason:
            out["reason"] = self.reason
        return out

    def describe(self) -> str:
        """One line for people: "vip: direction is 'out'"."""
        if self.matched:
            return f"{self.rule}: matched"
        if self.skipped:
            return f"{self.rule}: {self.skipped}"
        if self.reason:
            label = {"schedule": "at", "cooldown": "contact"}.get(self.failed_key or "", "call has")
            shown = self.actual if isinstance(self.actual, str) else repr(self.actual)
            return f"{self.rule}: {self.reason} ({label} {shown})"
        if self.actual is None:
            return f"{self.rule}: {self.failed_key} not given"
        return f"{self.rule}: {self.failed_key} is {self.actual!r}"


@dataclass(frozen=True, slots=True)
class Decision:
    """The rule that acts on a call, and when."""

    call_session_id: int
    episode: int
    rule: Rule
    message: ContactMessage
    #: When the rule acts: the call entered TALK at talk_started_at, plus `after`.
    due_at: float = 0.0
    #: `[rule.then] unhold_after` in seconds, when the rule has one.
    unhold_after: float | None = None
    #: The cooldown key's contact part: the caller's number as digits ("" if none).
    contact: str = ""

    @property
    def shadow(self) -> bool:
        return self.rule.mode is _SHADOW

    def ready(self, now: float) -> bool:
        """True when the rule acts now; False while `after` is still running."""
        return self.due_at <= now

    def as_dict(self) -> dict[str, object]:
        out: dict[str, object] = {
            "call_session_id": self.call_session_id,
            "episode": self.episode,
            "rule": self.rule.name,
            "mode": self.rule.mode.value,
            "type": self.message.type,
            "value": self.message.value,
            "due_at": self.due_at,
        }
        if self.unhold_after is not None:
            out["unhold_after"] = self.unhold_after
        return out


@dataclass(frozen=True, slots=True)
class Evaluation:
    call_session_id: int
    decision: Decision | None
    #: The rules actually tried, in order: the index's candidates up to the
    #: first that matched. Cheap; what the store keeps for `holdd explain`.
    tried: tuple[RuleTrace, ...]
    #: Set when the matching rule cannot act (a TTS too long after substitution).
    error: str | None = None
    #: The moment the rules were evaluated at.
    at: float = 0.0
    #: How many rules the index ruled out without trying them.
    excluded: int = 0
    #: How `trace` is computed (None: the engine kept no snapshot for it,
    #: and `trace` is `tried`).
    _full: Callable[[], tuple[RuleTrace, ...]] | None = field(
        default=None, repr=False, compare=False
    )
    #: When no rule matched: those rules by the `[rule.match]` key that ruled
    #: them out, with the call's value for it (key, rules, value).
    excluded_by: tuple[tuple[str, int, object], ...] = ()

    @property
    def trace(self) -> tuple[RuleTrace, ...]:
        """Every rule in order up to the one that matched, each with the first
        condition that failed: what `holdd test`, `holdd simulate` and the
        tests show (computed on demand, off the daemon's hot path)."""
        return self._full() if self._full is not None else self.tried

    @property
    def rule(self) -> str | None:
        """The rule that matched (also when it could not act), if any."""
        last = self.tried[-1] if self.tried else None
        return last.rule if last is not None and last.matched else None


class RuleEngine:
    def __init__(self, rules: RuleSet, *, full_traces: bool = True) -> None:
        self.rules = rules
        self.index = RuleIndex(rules.rules)
        #: Keep what `Evaluation.trace` needs (a snapshot of the call's
        #: variables and fired rules). The daemon does not: it stores the
        #: rules tried (`Evaluation.tried`), and the snapshot is a copy of
        #: the variables for every call in Talk.
        self.full_traces = full_traces

    def evaluate(
        self,
        call: Call,
        now: float | None = None,
        cooldowns: CooldownLookup | None = None,
    ) -> Evaluation:
        """The first rule that can act on `call`, judged at `now`.

        `now` defaults to the call's last update (the moment it entered TALK
        when called on a `talk_entered` change); `cooldowns` defaults to none.
        """
        at = call.updated_at if now is None else now
        started = call.talk_started_at if call.talk_started_at is not None else at
        fields = call.fields
        view = CallView(fields)
        fired = call.fired
        rules = self.rules.rules
        candidates = self.index.candidates(view)
        tried: list[RuleTrace] = []
        matched: Rule | None = None
        for position in candidates:
            rule = rules[position]
            trace = _try(rule, view, fired, at, started, cooldowns)
            tried.append(trace)
            if trace.matched:
                matched = rule
                break
        excluded = len(rules) - len(candidates)
        full = None
        if self.full_traces:
            snapshot = CallView(dict(fields))
            full = _full_trace(
                self.rules, snapshot, frozenset(fired), at, started, cooldowns, candidates, tried
            )
        csid = call.call_session_id
        if matched is None:
            # Why nothing matched, compactly: the rules tried are traced,
            # the rest counted by the key that ruled them out.
            by: tuple[tuple[str, int, object], ...] = ()
            if excluded:
                exclusions = self.index.exclusions(candidates).items()
                by = tuple((key, n, view.get(key)) for key, n in exclusions)
            return Evaluation(csid, None, tuple(tried), None, at, excluded, full, by)
        decision = self.decision(call, matched, started, view)
        message = decision.message
        error = None
        if message.type == "tts":
            if len(message.value) > self.rules.tts_max_length:
                error = (
                    f"tts text is {len(message.value)} characters after placeholders, "
                    f"over tts_max_length {self.rules.tts_max_length}"
                )
            elif not message.value.strip():
                error = "tts text is empty after placeholders"
        if error is not None:
            return Evaluation(csid, None, tuple(tried), error, at, excluded, full)
        return Evaluation(csid, decision, tuple(tried), None, at, excluded, full)

    @staticmethod
    def decision(call: Call, rule: Rule, started: float, view: CallView | None = None) -> Decision:
        """What `rule` does to `call` in Talk since `started`: its message
        rendered from the call's variables, when it acts, what follows."""
        view = view if view is not None else CallView(call.fields)
        csid = call.call_session_id
        return Decision(
            call_session_id=csid,
            episode=call.episode,
            rule=rule,
            message=rule.hold.render({**call.fields, "call_session_id": csid}),
            due_at=started + rule.after,
            unhold_after=rule.unhold_after,
            contact=view.digits("contact_phone_number") or "",
        )


def _try(
    rule: Rule,
    call: CallView,
    fired: tuple[str, ...] | frozenset[str],
    now: float,
    started: float,
    cooldowns: CooldownLookup | None,
) -> RuleTrace:
    """Test one rule in full; the checks run in the order a trace reports them."""
    if rule.name in fired:
        return RuleTrace(rule.name, False, skipped="fired_before")
    # Time conditions are judged when the rule would act, not before.
    at = max(now, started + rule.after)
    for cond in rule.conditions:
        if not cond.test(call, at):
            if isinstance(cond, ScheduleCondition):
                return RuleTrace(
                    rule.name,
                    False,
                    "schedule",
                    cond.actual(call, at),
                    reason=f"outside schedule {cond.names}",
                )
            return RuleTrace(rule.name, False, cond.key, cond.actual(call, at))
    for cond in rule.exclusions:
        if cond.test(call, at):
            return RuleTrace(
                rule.name,
                False,
                f"unless.{cond.key}",
                cond.actual(call, at),
                reason=f"unless matched: {cond.key}",
            )
    if rule.cooldown is not None and cooldowns is not None:
        value = call.get("contact_phone_number")
        contact = call.digits("contact_phone_number") or ""
        last = cooldowns.last_fired(rule.name, contact)
        if last is not None and at < last + rule.cooldown:
            until = dt.datetime.fromtimestamp(last + rule.cooldown, dt.UTC)
            return RuleTrace(
                rule.name,
                False,
                "cooldown",
                value,
                reason=f"cooldown until {until:%Y-%m-%dT%H:%M:%SZ}",
            )
    return RuleTrace(rule.name, True)


def _full_trace(
    ruleset: RuleSet,
    call: CallView,
    fired: frozenset[str],
    now: float,
    started: float,
    cooldowns: CooldownLookup | None,
    candidates: Sequence[int],
    traces: Sequence[RuleTrace],
) -> Callable[[], tuple[RuleTrace, ...]]:
    """A function computing the trace as if every rule had been tried.

    Rules that were tried keep their trace; the others are tried now on
    snapshots of the call's fields and fired rules, so the trace tells what
    was true at evaluation time even when asked later. (A rule the index
    excluded fails on a `[rule.match]` key before any cooldown is read.)
    """

    def compute() -> tuple[RuleTrace, ...]:
        tried = dict(zip(candidates, traces, strict=False))
        out = []
        for position, rule in enumerate(ruleset.rules):
            trace = tried.get(position)
            if trace is None:
                trace = _try(rule, call, fired, now, started, cooldowns)
            out.append(trace)
            if trace.matched:
                break
        return tuple(out)

    return compute
