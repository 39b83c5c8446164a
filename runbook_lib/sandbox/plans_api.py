"""Handlers of the new API for plans: the plan resource, its log and its JSON output. plans.mdx; go-tfe
`plan.go`."""

from __future__ import annotations

import json
import re
from typing import Any

from runbook_lib.sandbox import documents, errors
from runbook_lib.sandbox.tfe_api import _archivist, _user
from runbook_lib.sandbox.wire import Request, Response, jsonapi_response


@documents.renders("plans")
def plan_doc(req: Request, plan: dict[str, Any]) -> dict[str, Any]:
    return {"id": plan["id"], "type": "plans", "attributes": {
        "has-changes": bool(plan["has_changes"]), "resource-additions": plan["additions"],
        "resource-changes": plan["changes"], "resource-destructions": plan["destructions"],
        "resource-imports": plan["imports"], "status": plan["status"],
        "status-timestamps": json.loads(plan["status_timestamps"]),
        "log-read-url": _archivist(req, plan["log_token"]), "execution-details": {"mode": "remote"},
        "generated-configuration": False},
        "relationships": {"state-versions": {"data": []}, "exports": {"data": []}},
        "links": {"self": f"/api/v2/plans/{plan['id']}", "json-output": f"/api/v2/plans/{plan['id']}/json-output"}}


def show_plan(req: Request, plan_id: str) -> Response:
    """`GET /api/v2/plans/:id`: counts, `has-changes`, status, log URL."""
    return jsonapi_response({"data": plan_doc(req, req.store.get_plan(plan_id, _user(req)))})


def show_run_plan(req: Request, run_id: str) -> Response:
    """`GET /api/v2/runs/:id/plan`."""
    run = req.store.get_run(run_id, _user(req))
    plan = req.store.plan_for_run(run["id"])
    if plan is None:
        raise errors.NotFoundError()
    return jsonapi_response({"data": plan_doc(req, plan)})


def plan_json_output(req: Request, plan_id: str | None = None, run_id: str | None = None) -> Response:
    """`GET /api/v2/plans/:id/json-output` (or via the run): 307 to a short-lived URL; 204 until finished."""
    if run_id is not None:
        run = req.store.get_run(run_id, _user(req))
        plan = req.store.plan_for_run(run["id"])
        if plan is None:
            raise errors.NotFoundError()
    else:
        plan = req.store.get_plan(plan_id or "", _user(req))
    run = req.store.run_by_id(plan["run_id"])
    version = run_terraform_version(req, run) if run else None
    if version and _before_0_12(version):
        # plans.mdx "Retrieve the JSON execution plan": plans made by Terraform before 0.12 have none (422).
        raise errors.UnprocessableError(f"JSON plans are only available for plans made by Terraform 0.12 or "
                                        f"later; this plan was made by Terraform {version}")
    if plan["status"] != "finished" or plan["json_output"] is None:
        return Response(204)
    return Response(307, b"", {"Location": _archivist(req, plan["json_download_token"]) or ""})


def run_terraform_version(req: Request, run: dict[str, Any]) -> str | None:
    """The Terraform version a run plans with: its own (plan-only runs may set one), else its workspace's
    (a run started by a push has no options of its own)."""
    version = json.loads(run["options"] or "{}").get("terraform-version")
    if version:
        return version
    ws = req.store.workspace_by_id(run["workspace_id"])
    return ws["terraform_version"] if ws else None


def _before_0_12(version: str) -> bool:
    """True for a version like `0.11.14`; "latest" and other non-numeric versions are recent."""
    found = re.match(r"v?(\d+)\.(\d+)", version)
    return bool(found) and (int(found.group(1)), int(found.group(2))) < (0, 12)


def plan_json_output_redacted(req: Request, plan_id: str) -> Response:
    """`GET /api/v2/plans/:id/json-output-redacted`: the plan's changes with provider schemas, which the cloud
    backend renders a structured-run-output plan from (Terraform `internal/cloud/backend_common.go`
    readRedactedPlan, `backend_plan.go` renderPlanLogs); 204 until the plan finished. Only plans of a
    workspace with `structured-run-output-enabled` made by Terraform 1.x have one: 404 otherwise."""
    plan = req.store.get_plan(plan_id, _user(req))
    if plan["status"] != "finished":
        return Response(204)
    body = req.store.redacted_plan(plan["id"])
    if body is None:
        raise errors.NotFoundError()
    return Response(200, body, {"Content-Type": "application/json"})


# --- applies (applies.mdx) ---------------------------------------------------------------------------------

@documents.renders("applies")
def apply_doc(req: Request, apply: dict[str, Any]) -> dict[str, Any]:
    """An `applies` resource (applies.mdx "Show an apply"; go-tfe `apply.go` Apply). Its status follows the
    run (store/runs.py); the state versions it wrote are its run's."""
    versions = [sv for sv in req.store.list_state_versions_of_run(apply["run_id"])]
    return {"id": apply["id"], "type": "applies", "attributes": {
        "execution-details": {"mode": "remote"}, "status": apply["status"],
        "status-timestamps": json.loads(apply["status_timestamps"]),
        "log-read-url": _archivist(req, apply["log_token"]),
        "resource-additions": apply["additions"], "resource-changes": apply["changes"],
        "resource-destructions": apply["destructions"], "resource-imports": apply["imports"]},
        "relationships": {"state-versions": {"data": [{"id": sv["id"], "type": "state-versions"}
                                                      for sv in versions]}},
        "links": {"self": f"/api/v2/applies/{apply['id']}"}}


def show_apply(req: Request, apply_id: str) -> Response:
    """`GET /api/v2/applies/:id` (applies.mdx "Show an apply")."""
    return jsonapi_response({"data": apply_doc(req, req.store.get_apply(apply_id, _user(req)))})


def show_run_apply(req: Request, run_id: str) -> Response:
    """`GET /api/v2/runs/:id/apply` (go-tfe has no call for it; run.mdx relates `apply`): the run's apply."""
    run = req.store.get_run(run_id, _user(req))
    apply = req.store.apply_for_run(run["id"])
    if apply is None:
        raise errors.NotFoundError()
    return jsonapi_response({"data": apply_doc(req, apply)})
