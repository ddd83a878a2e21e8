"""Every event name the code logs is in docs/operations.md's event table, so
an operator (or an alert) can look it up. The names are found in the source:
the first argument of each structlog call (`log.info("name", ...)`, a level
picked into a variable, `log.info(TABLE[key])` over a module-level dict)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LEVELS = {"debug", "info", "warning", "error", "exception", "critical", "msg"}
EVENT = re.compile(r"[a-z][a-z0-9_]*")


def _mentions_a_level(node: ast.AST) -> bool:
    return any(isinstance(n, ast.Attribute) and n.attr in LEVELS for n in ast.walk(node))


def emitted(source: str) -> set[str]:
    tree = ast.parse(source)
    # Names bound to a log method (`level = log.warning if ... else log.error`)
    # and module-level dicts of names (`_EVENTS = {KIND: "call_ended"}`).
    level_vars = {
        t.id
        for node in ast.walk(tree)
        if isinstance(node, ast.Assign) and _mentions_a_level(node.value)
        for t in node.targets
        if isinstance(t, ast.Name)
    }
    tables = {
        t.id: [v.value for v in node.value.values if isinstance(v, ast.Constant)]
        for node in tree.body
        if isinstance(node, ast.Assign | ast.AnnAssign) and isinstance(node.value, ast.Dict)
        for t in (node.targets if isinstance(node, ast.Assign) else [node.target])
        if isinstance(t, ast.Name)
    }
    names: set[str] = set()
    for node in ast.walk(tree):
        # The machine's records: `out.log("info", "name", ...)` and
        # ("info", "name", {...}) lines (core/commands.py, core/verdicts.py).
        pair = node.args[:2] if isinstance(node, ast.Call) else None
        if isinstance(node, ast.Tuple):
            pair = node.elts[:2]
        if (
            pair is not None
            and len(pair) == 2
            and all(isinstance(p, ast.Constant) and isinstance(p.value, str) for p in pair)
            and pair[0].value in LEVELS  # type: ignore[attr-defined]
            and pair[1].value not in LEVELS  # type: ignore[attr-defined]
        ):
            names.add(pair[1].value)  # type: ignore[attr-defined]
        if not isinstance(node, ast.Call) or not node.args:
            continue
        func = node.func
        is_log = (isinstance(func, ast.Attribute) and func.attr in LEVELS) or (
            isinstance(func, ast.Name) and func.id in level_vars
        )
        if not is_log:
            continue
        first = node.args[0]
        if isinstance(first, ast.Constant) and isinstance(first.value, str):
            names.add(first.value)
        elif isinstance(first, ast.Subscript) and isinstance(first.value, ast.Name):
            names.update(str(v) for v in tables.get(first.value.id, []))
    return {n for n in names if EVENT.fullmatch(n)}


def documented() -> set[str]:
    text = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    table = text.split("### Event names", 1)[1].split("\n## ", 1)[0]
    names: set[str] = set()
    for line in table.splitlines():
        if line.startswith("| `"):
            names.update(re.findall(r"`([a-z0-9_]+)`", line.split("|")[1]))
    return names


def test_the_scanner_finds_each_way_of_logging() -> None:
    source = (
        "_EVENTS = {1: 'call_ended'}\n"
        "def f(log, bad):\n"
        "    log.info('plain_one', x=1)\n"
        "    level = log.warning if bad else log.error\n"
        "    level('picked_level')\n"
        "    log.info(_EVENTS[1])\n"
        "    print('not_an_event')\n"
        "    out.log('warning', 'machine_record', x=1)\n"
        "    return 'info', 'verdict_line', {}\n"
    )
    assert emitted(source) == {
        "plain_one",
        "picked_level",
        "call_ended",
        "machine_record",
        "verdict_line",
    }


def test_every_event_the_code_emits_is_documented() -> None:
    found: dict[str, str] = {}
    for path in sorted((ROOT / "daemon" / "holdd").rglob("*.py")):
        for name in emitted(path.read_text(encoding="utf-8")):
            found.setdefault(name, str(path.relative_to(ROOT)))
    assert len(found) > 40  # the scanner still sees the daemon's events
    missing = {name: where for name, where in found.items() if name not in documented()}
    assert not missing, f"add these to docs/operations.md's event table: {missing}"
