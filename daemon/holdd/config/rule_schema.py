"""The rule file language as msgspec structs: which keys each table takes and
of what type, and where each key lives, for "belongs in" hints (core: no I/O).

The tables are documented in docs/rules.md; the values are checked further by
config/conditions.py (match, unless, hold) and config/rulefiles.py (the rest).
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from holdd.config.report import Duration, keys_of

StrOrList = str | list[str]


class MatchSpec(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    direction: StrOrList | None = None
    virtual_phone_number: StrOrList | None = None
    contact_phone_number: StrOrList | None = None
    employee_id: int | list[int] | None = None
    call_source: StrOrList | None = None
    scenario_name: StrOrList | None = None
    schedule: StrOrList | None = None


class HoldSpec(msgspec.Struct, forbid_unknown_fields=True):
    media: str | int | None = None
    tts: str | None = None


class ThenSpec(msgspec.Struct, forbid_unknown_fields=True):
    unhold_after: Duration | None = None


class LimitSpec(msgspec.Struct, forbid_unknown_fields=True):
    cooldown: Duration | None = None


class RuleSpec(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    hold: dict[str, Any]
    priority: int = 0
    after: Duration = "0s"
    mode: Literal["live", "shadow"] = "live"
    enabled: bool = True
    match: dict[str, Any] = msgspec.field(default_factory=dict)
    unless: dict[str, Any] = msgspec.field(default_factory=dict)
    then: dict[str, Any] = msgspec.field(default_factory=dict)
    limit: dict[str, Any] = msgspec.field(default_factory=dict)


class ScheduleSpec(msgspec.Struct, forbid_unknown_fields=True):
    timezone: str
    days: StrOrList = msgspec.field(default_factory=list)
    hours: StrOrList = msgspec.field(default_factory=list)
    # A string or a list of strings and TOML dates: checked by build_schedule.
    except_: Any = msgspec.field(default_factory=list, name="except")


def _table_of_keys() -> dict[str, str]:
    """Where each key of the rule language lives, for "belongs in" hints."""
    homes: dict[str, str] = {}
    for struct, table in (
        (RuleSpec, "[[rule]]"),
        (MatchSpec, "[rule.match] or [rule.unless]"),
        (HoldSpec, "[rule.hold]"),
        (ThenSpec, "[rule.then]"),
        (LimitSpec, "[rule.limit]"),
        (ScheduleSpec, "[schedule.NAME]"),
    ):
        for key in keys_of(struct):
            homes.setdefault(key, table)
    return homes


HOMES = _table_of_keys()
MATCH_KEYS = keys_of(MatchSpec)


def as_list(value: object) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]
