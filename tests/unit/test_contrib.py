"""The operator kit in contrib/: the Prometheus alert rules pass `promtool
check rules` and fire on the series they watch (`promtool test rules`), and
the rules and the Grafana dashboard only use metrics holdd exports (and the
dashboard shows each of them)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from holdd.io.metrics import Metrics

CONTRIB = Path(__file__).resolve().parents[2] / "contrib"
RULES = CONTRIB / "prometheus-alerts.yml"
DASHBOARD = CONTRIB / "grafana-dashboard.json"
SERIES = re.compile(r"\b(holdd_[a-z_]+)")


def exported() -> set[str]:
    """Every series name holdd's registry can expose (with _total, _bucket, ...)."""
    m = Metrics()
    m.track_calls(dict)
    names = set()
    for family in text_string_to_metric_families(generate_latest(m.registry).decode()):
        names.add(family.name)
        suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count")}
        names.update(family.name + s for s in suffixes.get(family.type, ()))
        names.update(s.name for s in family.samples)
    return names


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.skip("promtool is not installed (Debian: apt-get install prometheus)")
    return found


def test_promtool_accepts_the_rules() -> None:
    done = subprocess.run(
        [promtool(), "check", "rules", str(RULES)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS: 9 rules found" in done.stdout


def test_the_alerts_fire_on_what_they_watch() -> None:
    """contrib/prometheus-alerts.test.yml: series in, the alerts (and their
    texts) expected out."""
    done = subprocess.run(
        [promtool(), "test", "rules", "prometheus-alerts.test.yml"],
        cwd=CONTRIB,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_rules_and_dashboard_use_only_exported_metrics() -> None:
    names = exported()
    for path in (RULES, DASHBOARD):
        used = set(SERIES.findall(path.read_text(encoding="utf-8")))
        assert used, path
        assert used <= names, (path.name, used - names)


def test_the_dashboard_shows_every_metric() -> None:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    exprs = " ".join(t["expr"] for p in dashboard["panels"] for t in p["targets"])
    m = Metrics()
    m.track_calls(dict)
    families = {
        f.name
        for f in text_string_to_metric_families(generate_latest(m.registry).decode())
        # holdd_build_info (the version) lists the instances; _created is
        # the client library's own series.
        if f.name not in ("holdd_build", "holdd_build_info") and not f.name.endswith("_created")
    }
    missing = {f for f in families if f not in exprs}
    assert not missing, missing
    assert "holdd_build_info" in json.dumps(dashboard["templating"])
    assert dashboard["templating"]["list"][0]["type"] == "datasource"
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])
