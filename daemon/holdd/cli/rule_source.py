"""Where the rules of `holdd test` and `holdd simulate` come from: rule file
globs, or the rule-related parts of a daemon config (shell: reads files).

Tests and simulations never call the API, so only `[rules] files`,
`[callapi] tts_max_length` and `[notify] events` / `timezone` are read; they
work on a machine without the credentials (`holdd check` checks the rest).
"""

from __future__ import annotations

import glob
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from holdd.config.config_file import read_config
from holdd.config.report import Reporter
from holdd.config.rulefiles import load_rules
from holdd.config.toml import Path as KeyPath
from holdd.core.errors import ConfigError
from holdd.core.events import DEFAULT_EVENT_NAMES, EventKind, event_names
from holdd.core.rules import RuleSet


@dataclass(frozen=True, slots=True)
class RuleSource:
    """What a test or a simulation needs of the daemon config."""

    files: tuple[Path, ...]
    tts_max_length: int = 500
    names: Mapping[str, EventKind] = field(default_factory=lambda: dict(DEFAULT_EVENT_NAMES))
    timezone: str = "Europe/Moscow"

    def load(self) -> RuleSet:
        return load_rules(self.files, self.tts_max_length)


def read_rule_config(path: Path) -> RuleSource:
    """The rule-related parts of a daemon config; raise ConfigError.

    Only `[rules] files`, `[callapi] tts_max_length` and `[notify] events` /
    `timezone` are read: tests and simulations never call the API, so they
    work on a machine without the credentials (`holdd check` checks the rest).
    """
    raw, report = read_config(path)
    if raw is None:
        raise ConfigError(report.problems)
    files = globs(raw.rules.files, path.parent, report, ("rules", "files"))
    tts = raw.callapi.tts_max_length if raw.callapi is not None else 500
    if tts < 1:
        report.add(("callapi", "tts_max_length"), "tts_max_length must be at least 1")
    notify = raw.notify_options
    names: dict[str, EventKind] = dict(DEFAULT_EVENT_NAMES)
    try:
        names = event_names(notify.events)
    except ValueError as exc:
        report.add(("notify", "events"), f"bad [notify] events: {exc}")
    if report.problems:
        raise ConfigError(report.problems)
    return RuleSource(tuple(files), tts, names, notify.timezone)


def globs(patterns: object, base: Path, report: Reporter, where: KeyPath) -> list[Path]:
    """The files `patterns` match relative to `base`; a problem for each that matches none."""
    if not isinstance(patterns, list) or not all(isinstance(p, str) for p in patterns):
        report.add(where, "expected a list of file globs")
        return []
    files: list[Path] = []
    for i, pattern in enumerate(patterns):
        matched = sorted(glob.glob(str(base / pattern)))
        if not matched:
            report.add((*where, i), f"no rule file matches {pattern!r}", hint=f"relative to {base}")
        files.extend(Path(p) for p in matched)
    return files
