"""The run worker counts a plan's changes from terraform's own output (real plans in tests/fixtures/plans).

The sandbox judges the runbook's plan parser, so it reads terraform itself; both must agree on these
plans, made by the real binaries.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from runbook_lib.plans import parse_plan_json, parse_plan_text
from runbook_lib.sandbox.run_exec import _counts_011, _counts_json

PLANS = Path(__file__).resolve().parents[1] / "fixtures" / "plans"


@pytest.mark.parametrize("name", ["create", "delete", "noop", "replace", "tainted"])
def test_counts_of_0_11_plans_agree_with_the_runbook(name: str):
    text = (PLANS / f"v011_{name}.txt").read_text()
    parsed = parse_plan_text(text)
    assert _counts_011(text) == (parsed.additions, parsed.changes_count, parsed.destructions)


@pytest.mark.parametrize("name", ["create", "delete", "noop", "replace", "replace_requested", "update"])
def test_counts_of_json_plans_agree_with_the_runbook(name: str):
    text = (PLANS / f"v1_{name}.json").read_text()
    parsed = parse_plan_json(text)
    assert _counts_json(text) == (parsed.additions, parsed.changes_count, parsed.destructions)


def test_a_0_11_plan_without_a_summary_is_not_guessed():
    assert _counts_011("No changes. Infrastructure is up-to-date.") == (0, 0, 0)
    assert _counts_011("Error: something went wrong") is None
    assert _counts_011("Plan: 2 to add, 1 to change, 3 to destroy.") == (2, 1, 3)
