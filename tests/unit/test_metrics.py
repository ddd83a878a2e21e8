"""Metrics: one registry per `Metrics` object, names prefixed `holdd_`, and
each recording helper moving the series an operator would graph."""

from __future__ import annotations

from pathlib import Path

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from holdd import __version__
from holdd.core.records import Claim, FinishClaim, PutClaim
from holdd.core.states import CallState
from holdd.io.metrics import UNKNOWN_NAME_LABELS, Metrics
from holdd.io.store.sqlite import StateDb


def value(m: Metrics, name: str, **labels: str) -> float | None:
    return m.registry.get_sample_value(name, labels)


def test_every_metric_is_prefixed_and_documented() -> None:
    m = Metrics()
    m.track_calls(dict)
    families = list(text_string_to_metric_families(generate_latest(m.registry).decode()))
    names = {f.name for f in families}
    assert names >= {
        "holdd_build_info",
        "holdd_notifications",
        "holdd_notifications_dropped",
        "holdd_notifications_unknown_name",
        "holdd_notify_connected",
        "holdd_notify_reconnects",
        "holdd_notify_gap_seconds",
        "holdd_calls",
        "holdd_rule_matches",
        "holdd_actions",
        "holdd_api_budget_remaining",
        "holdd_api_budget_limit",
        "holdd_rules_loaded",
        "holdd_rules_last_reload_successful",
        "holdd_rules_last_reload_success_timestamp_seconds",
        "holdd_rules_reloads",
        "holdd_ledger_write_seconds",
    }
    assert all(n.startswith("holdd_") for n in names)
    assert all(f.documentation for f in families)
    assert value(m, "holdd_build_info", version=__version__) == 1


def test_registries_are_independent() -> None:
    a, b = Metrics(), Metrics()
    a.rule_matched("vip")
    assert value(a, "holdd_rule_matches_total", rule="vip") == 1
    assert value(b, "holdd_rule_matches_total", rule="vip") is None


def test_notifications_and_drops() -> None:
    m = Metrics()
    m.notification("talk_started")
    m.notification("talk_started")
    m.notification("other", dropped_reason="no_call_session_id")
    assert value(m, "holdd_notifications_total", kind="talk_started", outcome="accepted") == 2
    assert value(m, "holdd_notifications_total", kind="other", outcome="dropped") == 1
    assert value(m, "holdd_notifications_dropped_total", reason="no_call_session_id") == 1


def test_unknown_names_by_name_and_bounded() -> None:
    m = Metrics()

    def count(name: str) -> float | None:
        return m.registry.get_sample_value("holdd_notifications_unknown_name_total", {"name": name})

    m.unknown_name("Мой разговор")
    m.unknown_name("Мой разговор")
    assert count("Мой разговор") == 2
    for i in range(UNKNOWN_NAME_LABELS + 5):
        m.unknown_name(f"name-{i}")
    # One label per name up to the bound, the rest counted together.
    assert count("(other)") == 6
    m.unknown_name("x" * 200)
    assert count("(other)") == 7


def test_stream_state_reconnects_and_gaps() -> None:
    m = Metrics()
    m.stream_up()
    assert value(m, "holdd_notify_connected") == 1
    m.stream_down()
    assert value(m, "holdd_notify_connected") == 0
    m.reconnected("closed_1006", 2.0)
    m.reconnected("closed_1006", 40.0)
    assert value(m, "holdd_notify_reconnects_total", reason="closed_1006") == 2
    assert value(m, "holdd_notify_gap_seconds_count") == 2
    assert value(m, "holdd_notify_gap_seconds_sum") == 42.0
    assert value(m, "holdd_notify_gap_seconds_bucket", le="2.5") == 1


def test_actions_by_result_and_mnemonic() -> None:
    m = Metrics()
    m.action("hold", "held")
    m.action("hold", "failed", "media_file_not_found")
    m.action("would_hold", "would_hold")
    assert value(m, "holdd_actions_total", action="hold", result="held", mnemonic="") == 1
    assert (
        value(
            m,
            "holdd_actions_total",
            action="hold",
            result="failed",
            mnemonic="media_file_not_found",
        )
        == 1
    )
    assert (
        value(m, "holdd_actions_total", action="would_hold", result="would_hold", mnemonic="") == 1
    )


def test_api_budget_keeps_what_an_answer_did_not_say() -> None:
    m = Metrics()
    m.api_budget(minute_remaining=118, day_remaining=9_000, minute_limit=120, day_limit=10_000)
    m.api_budget(minute_remaining=117)
    assert value(m, "holdd_api_budget_remaining", window="minute") == 117
    assert value(m, "holdd_api_budget_remaining", window="day") == 9_000
    assert value(m, "holdd_api_budget_limit", window="minute") == 120


def test_a_failed_reload_keeps_the_last_success_timestamp() -> None:
    m = Metrics()
    m.rules_reloaded(True, 1000.0, rules=5)
    m.rules_reloaded(False, 2000.0, rules=0)
    assert value(m, "holdd_rules_last_reload_successful") == 0
    assert value(m, "holdd_rules_last_reload_success_timestamp_seconds") == 1000.0
    assert value(m, "holdd_rules_loaded") == 5
    assert value(m, "holdd_rules_reloads_total", result="ok") == 1
    assert value(m, "holdd_rules_reloads_total", result="failed") == 1
    m.rules_reloaded(True, 3000.0, rules=6)
    assert value(m, "holdd_rules_last_reload_successful") == 1
    assert value(m, "holdd_rules_last_reload_success_timestamp_seconds") == 3000.0


def test_calls_by_state_are_read_at_scrape_time() -> None:
    m = Metrics()
    counts = {CallState.TALK: 2}
    m.track_calls(lambda: counts)
    assert value(m, "holdd_calls", state="TALK") == 2
    assert value(m, "holdd_calls", state="HOLD") == 0  # every state, zeros included
    counts[CallState.HOLD] = 1
    counts[CallState.TALK] = 1
    assert value(m, "holdd_calls", state="HOLD") == 1
    assert value(m, "holdd_calls", state="TALK") == 1


def test_the_state_database_feeds_the_write_histogram(tmp_path: Path) -> None:
    m = Metrics()
    with StateDb.open(tmp_path / "state.db", on_write=m.ledger_written) as db:
        db.commit([PutClaim(Claim(1, "vip", "hold", 0.0))])
        # One transaction, one observation, however many operations it holds.
        db.commit(
            [FinishClaim((1, "vip", "hold"), "held", 0.0), PutClaim(Claim(2, "vip", "hold", 0.0))]
        )
        db.prune(-1.0)
    assert value(m, "holdd_ledger_write_seconds_count", op="commit") == 2
    assert value(m, "holdd_ledger_write_seconds_count", op="prune") == 1
