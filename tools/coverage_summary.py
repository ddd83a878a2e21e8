"""Print coverage per package of holdd and in total (make test; never fails on a figure).

Reads the combined data of `coverage run` (pytest and every `holdd run` / `holdd`
subprocess it started, pyproject.toml [tool.coverage.run]). Statements and
branches count together, as `coverage report` does. Per file:
`.venv/bin/coverage report` or `.venv/bin/coverage html`.
"""

from __future__ import annotations

import json
import tempfile
from collections import defaultdict
from pathlib import Path

import coverage


def package_of(path: str) -> str:
    parts = Path(path).parts
    below = parts[parts.index("holdd") + 1 :]
    return "holdd" if len(below) == 1 else f"holdd.{below[0]}"


def main() -> int:
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "coverage.json"
        data = coverage.Coverage()
        data.load()
        data.json_report(outfile=str(out))
        files = json.loads(out.read_text(encoding="utf-8"))["files"]
    # package -> [covered statements+branches, all statements+branches]
    totals: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for path, data in files.items():
        s = data["summary"]
        covered = s["covered_lines"] + s.get("covered_branches", 0)
        possible = s["num_statements"] + s.get("num_branches", 0)
        for key in (package_of(path), "TOTAL"):
            totals[key][0] += covered
            totals[key][1] += possible
    print("coverage (statements + branches, subprocesses included):")
    for key in sorted(totals, key=lambda k: (k == "TOTAL", k)):
        covered, possible = totals[key]
        share = 100.0 * covered / possible if possible else 100.0
        print(f"  {key:<14} {share:5.1f}%  ({covered}/{possible})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
