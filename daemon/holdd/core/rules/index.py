"""Which rules could match a call, found without trying every rule (core).

Each rule is filed under one "gate": a `[rule.match]` key whose values can be
looked up - exact numbers, number prefixes (globs such as "7495*" and regexes
that start with literal digits), employee ids, exact texts. A call's own values
are looked up in those tables; the rules found, plus the rules with no gate,
are the candidates, returned in rule order (priority, then file order).

Why this keeps the semantics exactly: a rule that is not a candidate fails its
gate condition, and every condition of `[rule.match]` must hold for a rule to
act, so skipping it cannot change which rule is the first to match. The
candidates are still tested in full.
"""

from __future__ import annotations

from collections.abc import Sequence

from holdd.core.rules.model import (
    CallView,
    Condition,
    EmployeeCondition,
    NumberCondition,
    Rule,
    TextCondition,
)

#: Gate preference: the key most likely to single out few rules first.
GATE_ORDER = (
    "virtual_phone_number",
    "contact_phone_number",
    "employee_id",
    "scenario_name",
    "call_source",
    "direction",
)


def _gate_keys(condition: Condition) -> tuple[frozenset[object], frozenset[str]] | None:
    """(exact values, number prefixes) of an indexable condition, else None."""
    if isinstance(condition, NumberCondition):
        keys = condition.numbers.index_keys()
        if keys is None:
            return None
        exact, prefixes = keys
        return frozenset(exact), prefixes
    if isinstance(condition, EmployeeCondition):
        return frozenset(condition.ids), frozenset()
    if isinstance(condition, TextCondition) and not condition.texts.regexes:
        return frozenset(condition.texts.values), frozenset()
    return None


def _normalise(call: CallView, key: str, value: object) -> object:
    """A call's value in the form the tables hold."""
    if key in ("virtual_phone_number", "contact_phone_number"):
        return call.digits(key)
    if key == "employee_id":
        if isinstance(value, str) and value.strip().isdigit():
            return int(value)
        return value
    return str(value).casefold()


class RuleIndex:
    def __init__(self, rules: Sequence[Rule]) -> None:
        #: Positions of rules with no gate: candidates for every call.
        self.ungated: tuple[int, ...] = ()
        self._exact: dict[str, dict[object, list[int]]] = {}
        self._prefix: dict[str, dict[str, list[int]]] = {}
        self._prefix_lengths: dict[str, tuple[int, ...]] = {}
        ungated: list[int] = []
        #: The gate key of each rule, by position (None: no gate).
        self._gate_of: list[str | None] = []
        #: How many rules are filed under each gate key.
        self._gated_on: dict[str, int] = {}
        for position, rule in enumerate(rules):
            gate = self._choose(rule)
            self._gate_of.append(None if gate is None else gate[0])
            if gate is None:
                ungated.append(position)
                continue
            key, (exact, prefixes) = gate
            self._gated_on[key] = self._gated_on.get(key, 0) + 1
            for value in exact:
                self._exact.setdefault(key, {}).setdefault(value, []).append(position)
            for prefix in prefixes:
                self._prefix.setdefault(key, {}).setdefault(prefix, []).append(position)
        self.ungated = tuple(ungated)
        for key, table in self._prefix.items():
            self._prefix_lengths[key] = tuple(sorted({len(p) for p in table}))
        self.gated = len(rules) - len(ungated)

    @staticmethod
    def _choose(rule: Rule) -> tuple[str, tuple[frozenset[object], frozenset[str]]] | None:
        best: tuple[int, str, tuple[frozenset[object], frozenset[str]]] | None = None
        for condition in rule.conditions:
            if condition.key not in GATE_ORDER:
                continue
            keys = _gate_keys(condition)
            if keys is None:
                continue
            rank = GATE_ORDER.index(condition.key)
            if best is None or rank < best[0]:
                best = (rank, condition.key, keys)
        return None if best is None else (best[1], best[2])

    def candidates(self, call: CallView) -> Sequence[int]:
        """Positions of the rules that could match `call`, in order."""
        found: list[int] | None = None
        for key, table in self._exact.items():
            value = call.get(key)
            if value is None:
                continue
            hit = table.get(_normalise(call, key, value))
            if hit:
                found = [*(found or ()), *hit]
        for key, prefixes in self._prefix.items():
            number = call.digits(key)
            if number is None:
                continue
            for n in self._prefix_lengths[key]:
                if n > len(number):
                    break
                hit = prefixes.get(number[:n])
                if hit:
                    found = [*(found or ()), *hit]
        if found is None:
            return self.ungated
        return sorted({*found, *self.ungated})

    def exclusions(self, candidates: Sequence[int]) -> dict[str, int]:
        """How many rules the call's values ruled out, by gate key, given
        the call's `candidates`: a rule that is not a candidate fails its
        gate (its `[rule.match]` key does not list the call's value)."""
        found: dict[str, int] = {}
        gate_of = self._gate_of
        for position in candidates:
            key = gate_of[position]
            if key is not None:
                found[key] = found.get(key, 0) + 1
        return {
            key: count - found.get(key, 0)
            for key, count in self._gated_on.items()
            if count > found.get(key, 0)
        }
