"""The runbook's steps, one module each, named after what they do.

Every step has the same three functions:

- ``plan(ctx)`` reads only and returns a DataFrame of what ``apply`` would do;
- ``apply(ctx)`` changes what the plan showed and returns a table of what it did; it is idempotent:
  run again, it adopts what is already right and refuses, changing nothing, what conflicts;
- ``verify(ctx)`` proves the result from the servers' own answers and returns a StepResult.

| step | module | seed step |
|---|---|---|
| 01_create_organization | organization | 1 |
| 02_create_workspaces | workspaces | 2 |
| 03_migrate_state | state_migration | 3.a-3.e |
| 04_disable_legacy_vcs | legacy_vcs | 4 |
| 05_commit_and_verify | commit_verify | 5 |
| 06_delete_legacy_environment | decommission | 6 |
"""

from __future__ import annotations

from typing import Any

import pandas as pd

PLAN_COLUMNS = ["object", "name", "action", "detail"]
#: What a plan row's detail says when apply would refuse until an earlier step has run (action "none").
WAITS_FOR_EARLIER_STEP = "apply refuses until then"


def plan_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """A step's plan table: what object, which, what apply would do (create/adopt/update/refuse/none), why."""
    return pd.DataFrame(rows, columns=PLAN_COLUMNS)


def plan_verdict(frame: pd.DataFrame) -> "StepResult":
    """The verdict of a step run in plan mode: PASS when apply would refuse nothing; nothing was changed."""
    from runbook_lib.context import StepResult

    refused = refusals(frame)
    counts = frame["action"].value_counts().to_dict() if len(frame) else {}
    summary = ", ".join(f"{n} {action}" for action, n in sorted(counts.items())) or "nothing to do"
    if refused:
        return StepResult(False, "apply would refuse: " + "; ".join(refused), {"plan": counts})
    # Rows that wait for an earlier step (a plan batch runs before anything is applied): apply would refuse
    # now, so the verdict says so, and passes, since the plan itself found nothing wrong.
    waiting = [f"{r['object']} {r['name']}: {r['detail']}" for r in frame.to_dict("records")
               if r["action"] == "none" and WAITS_FOR_EARLIER_STEP in str(r["detail"])]
    if waiting:
        return StepResult(True, "apply would refuse: " + "; ".join(waiting), {"plan": counts, "waits": waiting})
    return StepResult(True, f"plan: {summary}; nothing was changed (plan mode)", {"plan": counts})


def refusals(frame: pd.DataFrame) -> list[str]:
    """The details of the plan rows whose action is "refuse"."""
    return [f"{r['object']} {r['name']}: {r['detail']}" for r in frame.to_dict("records") if r["action"] == "refuse"]
