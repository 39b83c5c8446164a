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

from runbook_lib.results import (PLAN_COLUMNS, WAITS_FOR_EARLIER_STEP, plan_frame, plan_verdict,  # noqa: F401
                                 refusals)
