"""Cooldown records of `[rule.limit] cooldown` (core).

A rule with a cooldown acts at most once per contact number per cooldown
period. The records ("rule R last acted for contact C at T") are data kept
outside the engine: the engine only reads them through `CooldownLookup`, the
caller records them when an action is committed. `Cooldowns` keeps them in
memory (`holdd test`, `holdd simulate`); the daemon's state database offers the
same two methods, so records survive a reload (the rule set is swapped, the
store is not) and a restart.

The key is the rule name and the contact number as digits; a call without a
contact number uses "" (anonymous callers share one record per rule).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol


class CooldownLookup(Protocol):
    def last_fired(self, rule: str, contact: str) -> float | None:
        """When `rule` last acted for `contact` (digits), or None."""
        ...


class Cooldowns:
    """In-memory cooldown records."""

    def __init__(self) -> None:
        self._last: dict[tuple[str, str], float] = {}

    def __len__(self) -> int:
        return len(self._last)

    def __iter__(self) -> Iterator[tuple[str, str, float]]:
        """(rule, contact, fired_at) of every record, to persist them."""
        return ((rule, contact, at) for (rule, contact), at in self._last.items())

    def last_fired(self, rule: str, contact: str) -> float | None:
        return self._last.get((rule, contact))

    def record_cooldown(self, rule: str, contact: str, fired_at: float) -> None:
        key = (rule, contact)
        self._last[key] = max(fired_at, self._last.get(key, fired_at))

    def prune(self, before: float) -> int:
        """Forget records older than `before` (the machine's sweep passes
        `now - RuleSet.longest_cooldown`), so memory stays bounded."""
        old = [key for key, at in self._last.items() if at < before]
        for key in old:
            del self._last[key]
        return len(old)
