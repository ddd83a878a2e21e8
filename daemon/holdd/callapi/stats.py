"""What the Call API client counts (shell); io/metrics.py exports every
counter at scrape time as `holdd_callapi_*` (docs/operations.md)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass(slots=True)
class ClientStats:
    """The client's counters; `Metrics.track_callapi` exports them."""

    #: Requests sent, by method.
    requests: Counter[str] = field(default_factory=Counter)
    #: Answers by (method, "ok" or the error mnemonic).
    answers: Counter[tuple[str, str]] = field(default_factory=Counter)
    #: Exchanges with an unknown outcome, by (method, reason).
    unknown_outcomes: Counter[tuple[str, str]] = field(default_factory=Counter)
    #: Requests that never went out, by (method, reason).
    not_sent: Counter[tuple[str, str]] = field(default_factory=Counter)
    #: Error mnemonics the reference does not list, by (code, mnemonic).
    unknown_mnemonics: Counter[tuple[int, str]] = field(default_factory=Counter)
    #: `login.user` calls, by reason ("first", "expiring", "rejected").
    logins: Counter[str] = field(default_factory=Counter)
    #: `limit_exceeded` answers, by limit type.
    rate_limited: Counter[str] = field(default_factory=Counter)
    #: `list.calls` entries without a usable call_session_id.
    bad_list_entries: int = 0
    #: Numbers outside the signed 64-bit range in answers, by (method, field).
    out_of_range: Counter[tuple[str, str]] = field(default_factory=Counter)
