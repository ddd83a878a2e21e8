"""How `holdd explain` words one stored evaluation (cli/main.py `_describe`)."""

from __future__ import annotations

from holdd.cli.main import _describe


def test_a_match_names_the_rules_tried_and_counts_the_rest() -> None:
    payload = {
        "error": None,
        "rule": "vip",
        "trace": [
            {"rule": "night", "matched": False, "failed": "schedule", "actual": "sat 10:00"},
            {"rule": "vip", "matched": True},
        ],
        "ruled_out": 40,
    }
    assert _describe(payload) == (
        "rule vip chosen; tried night: schedule failed (actual 'sat 10:00'); vip: matched;"
        " 40 other rule(s) ruled out by the index"
    )


def test_no_match_says_by_which_key_and_value_the_untried_rules_were_ruled_out() -> None:
    payload = {
        "error": None,
        "rule": None,
        "trace": [{"rule": "again", "matched": False, "skipped": "fired_before"}],
        "ruled_out": 5,
        "ruled_out_by": {
            "virtual_phone_number": {"rules": 3, "actual": "74950000042"},
            "employee_id": {"rules": 2, "actual": None},
        },
    }
    assert _describe(payload) == (
        "no rule matched; tried again: skipped (fired_before); 5 other rule(s) ruled out by"
        " the index: 3 whose [rule.match] virtual_phone_number does not list '74950000042',"
        " 2 by [rule.match] employee_id (the call has no employee_id)"
    )


def test_a_trace_stored_by_an_earlier_holdd_still_reads() -> None:
    """Before, a call no rule matched stored every rule, without counts."""
    payload = {
        "error": None,
        "rule": None,
        "trace": [{"rule": "vip", "matched": False, "failed": "direction", "actual": "out"}],
    }
    assert _describe(payload) == "no rule matched; tried vip: direction failed (actual 'out')"
