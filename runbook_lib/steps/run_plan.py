"""Reading a workspace run's plan: what step 5's verify proves the cut-over with.

Terraform 0.11 workspaces (generation 0) are read from the plan log, 0.12 and later from the JSON plan
(`GET /plans/:id/json-output`, docs: api-docs/plans.mdx). The plan's own `has-changes` flag is checked
against the parsed content.
"""

from __future__ import annotations

import json
import re

from runbook_lib import terraform
from runbook_lib.context import StepContext
from runbook_lib.errors import ApiError, PlanError
from runbook_lib.jsonapi import Resource
from runbook_lib.plans import Plan, parse_plan_json, parse_plan_text

PLAN_LINES_KEPT = 40  # the tail of terraform's plan log kept as evidence (resource lines and the summary)


def read_plan(ctx: StepContext, run: Resource, terraform_version: str) -> tuple[Plan, Resource, list[str] | None]:
    """The run's plan as a `Plan`: 0.11 workspaces from the plan log, 1.x from the JSON plan.

    Returns:
        (parsed plan, the plan resource, terraform's own plan lines when the log was read, else None).

    Raises:
        PlanError: no plan, an unreadable plan, or one whose has-changes flag disagrees with its content.
    """
    plan_id = run.rel("plan")
    if not plan_id:
        raise PlanError(f"run {run.id} has no plan.")
    plan_res = ctx.tfe.get_plan(plan_id)
    if terraform.generation(terraform_version) == 0:
        log = ctx.tfe.plan_log(plan_res)
        parsed = parse_plan_text(log)
        # terraform's own plan lines, kept as evidence (the log is already here: no extra request)
        lines = [line.rstrip() for line in re.sub(r"\x1b\[[0-9;]*m", "", log).splitlines() if line.strip()]
        lines = lines[-PLAN_LINES_KEPT:]
    else:
        lines = None
        doc = ctx.tfe.plan_json(plan_id)
        if doc is None:
            raise PlanError(f"plan {plan_id} has no JSON output yet (status {plan_res.get('status')!r}).")
        parsed = parse_plan_json(json.dumps(doc))
    flag = plan_res.get("has-changes")
    # Terraform 1.x counts root output changes as changes (the run then waits to save them), while the
    # plans model does not: the infrastructure is unchanged. Only that one disagreement is explained.
    output_only = bool(flag) and not parsed.has_changes and bool(parsed.output_changes)
    if flag is not None and bool(flag) != parsed.has_changes and not output_only:
        raise PlanError(f"plan {plan_id} says has-changes={flag} but its content shows "
                        f"{'changes' if parsed.has_changes else 'none'}; treat the plan as not proven.")
    return parsed, plan_res, lines


def log_tail(ctx: StepContext, run: Resource) -> str:
    """The last error line of a run's plan log, for the FAIL line (the whole log is in the workspace)."""
    try:
        log = ctx.tfe.plan_log(ctx.tfe.get_plan(run.rel("plan"))) if run.rel("plan") else ""
    except ApiError as exc:
        return f"its plan log cannot be read: {exc}"
    lines = [line.strip() for line in log.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("Error")]
    return (errors or lines or ["no plan log"])[-1][:300]
