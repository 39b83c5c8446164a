"""Handlers of the new API for configuration versions, runs and plans."""

from __future__ import annotations

import json
from typing import Any

from runbook_lib.sandbox import errors
from runbook_lib.sandbox.tfe_api import _archivist, _rel, _user, _ws
from runbook_lib.sandbox.wire import Request, Response, check_bool, check_str, jsonapi_response, paginate, parse_resource, relationship_id


# --- configuration versions -------------------------------------------------------------------------------

def _cv_doc(req: Request, cv: dict[str, Any]) -> dict[str, Any]:
    return {"id": cv["id"], "type": "configuration-versions", "attributes": {
        "auto-queue-runs": bool(cv["auto_queue_runs"]), "error": None, "error-message": None,
        "source": cv["source"], "speculative": bool(cv["speculative"]), "status": cv["status"],
        "status-timestamps": {}, "provisional": False,
        "upload-url": _archivist(req, cv["upload_token"]) if cv["status"] == "pending" else None},
        "relationships": {"ingress-attributes": {
            "data": {"id": "ia-" + cv["id"].removeprefix("cv-"), "type": "ingress-attributes"} if cv["ingress"] else None,
            "links": {"related": f"/api/v2/configuration-versions/{cv['id']}/ingress-attributes"}}},
        "links": {"self": f"/api/v2/configuration-versions/{cv['id']}",
                  "download": f"/api/v2/configuration-versions/{cv['id']}/download"}}


def create_configuration_version(req: Request, ws_id: str) -> Response:
    """`POST /api/v2/workspaces/:id/configuration-versions`: 201 with an `upload-url`."""
    ws = _ws(req, ws_id=ws_id)
    attrs: dict[str, Any] = {}
    if req.body.strip():
        attrs, _ = parse_resource(req, "configuration-versions")
    check_bool(attrs, "auto-queue-runs")
    check_bool(attrs, "speculative")
    cv = req.store.create_configuration_version(ws["id"], auto_queue_runs=attrs.get("auto-queue-runs", True),
                                                speculative=attrs.get("speculative", False))
    return jsonapi_response({"data": _cv_doc(req, cv)}, 201)


def list_configuration_versions(req: Request, ws_id: str) -> Response:
    """`GET /api/v2/workspaces/:id/configuration-versions` (paged)."""
    ws = _ws(req, ws_id=ws_id)
    rows, meta, links = paginate(req, req.store.list_configuration_versions(ws["id"]))
    return jsonapi_response({"data": [_cv_doc(req, c) for c in rows], "links": links, "meta": meta})


def show_configuration_version(req: Request, cv_id: str) -> Response:
    """`GET /api/v2/configuration-versions/:id`."""
    return jsonapi_response({"data": _cv_doc(req, req.store.get_configuration_version(cv_id, _user(req)))})


# --- runs and plans ---------------------------------------------------------------------------------------

_FINAL = ("planned_and_finished", "applied", "errored", "discarded", "canceled", "force_canceled")


def _run_doc(req: Request, run: dict[str, Any]) -> dict[str, Any]:
    plan = req.store.plan_for_run(run["id"])
    status = run["status"]
    return {"id": run["id"], "type": "runs", "attributes": {
        "actions": {"is-cancelable": status in ("pending", "planning", "applying"),
                    "is-confirmable": status == "planned", "is-discardable": status in ("pending", "planned"),
                    "is-force-cancelable": False},
        "auto-apply": bool(run["auto_apply"]), "allow-empty-apply": False, "canceled-at": None,
        "created-at": run["created_at"], "has-changes": bool(run["has_changes"]),
        "is-destroy": bool(run["is_destroy"]), "message": run["message"], "plan-only": bool(run["plan_only"]),
        "refresh": True, "refresh-only": False, "replace-addrs": [], "save-plan": False, "source": run["source"],
        "status": status, "status-timestamps": json.loads(run["status_timestamps"]), "target-addrs": None,
        "trigger-reason": "manual", "terraform-version": None, "variables": [],
        "permissions": {"can-apply": True, "can-cancel": True, "can-comment": True, "can-discard": True,
                        "can-force-execute": True, "can-force-cancel": True, "can-override-policy-check": True}},
        "relationships": {"workspace": _rel("workspaces", run["workspace_id"]),
                          "configuration-version": _rel("configuration-versions", run["configuration_version_id"]),
                          "plan": _rel("plans", plan["id"] if plan else None), "apply": {"data": None},
                          "created-by": _rel("users", run["created_by"])},
        "links": {"self": f"/api/v2/runs/{run['id']}"}}


def list_runs(req: Request, ws_id: str) -> Response:
    """`GET /api/v2/workspaces/:id/runs` (paged; `filter[status]` comma list)."""
    ws = _ws(req, ws_id=ws_id)
    statuses = [s for s in (req.query.get("filter[status]") or "").split(",") if s]
    rows, meta, links = paginate(req, req.store.list_runs(ws["id"], statuses or None))
    return jsonapi_response({"data": [_run_doc(req, r) for r in rows], "links": links, "meta": meta})


def show_run(req: Request, run_id: str) -> Response:
    """`GET /api/v2/runs/:id`."""
    return jsonapi_response({"data": _run_doc(req, req.store.get_run(run_id, _user(req)))})


def create_run(req: Request) -> Response:
    """`POST /api/v2/runs`: 201 with a `pending` run (a run worker picks it up; a locked workspace queues it)."""
    attrs, rels = parse_resource(req, "runs")
    ws_id = relationship_id(rels, "workspace", "workspaces")
    if not ws_id:
        raise errors.UnprocessableError("Workspace is required", pointer="/data/relationships/workspace")
    ws = _ws(req, ws_id=ws_id)
    cv_id = relationship_id(rels, "configuration-version", "configuration-versions")
    if cv_id:
        cv = req.store.get_configuration_version(cv_id, _user(req))
        if cv["workspace_id"] != ws["id"]:
            raise errors.UnprocessableError("Configuration version belongs to another workspace",
                                            pointer="/data/relationships/configuration-version")
    else:
        latest = req.store.list_configuration_versions(ws["id"])
        cv_id = latest[0]["id"] if latest else None
    for name in ("is-destroy", "plan-only", "auto-apply", "refresh"):
        check_bool(attrs, name)
    check_str(attrs, "message")
    run = req.store.create_run(ws, _user(req), cv_id=cv_id, message=attrs.get("message") or "Queued manually via the Terraform Enterprise API",
                               is_destroy=attrs.get("is-destroy", False), plan_only=attrs.get("plan-only", False),
                               auto_apply=attrs.get("auto-apply"))
    return jsonapi_response({"data": _run_doc(req, run)}, 201)


def _plan_doc(req: Request, plan: dict[str, Any]) -> dict[str, Any]:
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
    return jsonapi_response({"data": _plan_doc(req, req.store.get_plan(plan_id, _user(req)))})


def show_run_plan(req: Request, run_id: str) -> Response:
    """`GET /api/v2/runs/:id/plan`."""
    run = req.store.get_run(run_id, _user(req))
    plan = req.store.plan_for_run(run["id"])
    if plan is None:
        raise errors.NotFoundError()
    return jsonapi_response({"data": _plan_doc(req, plan)})


def plan_json_output(req: Request, plan_id: str | None = None, run_id: str | None = None) -> Response:
    """`GET /api/v2/plans/:id/json-output` (or via the run): 307 to a short-lived URL; 204 until finished."""
    if run_id is not None:
        run = req.store.get_run(run_id, _user(req))
        plan = req.store.plan_for_run(run["id"])
        if plan is None:
            raise errors.NotFoundError()
    else:
        plan = req.store.get_plan(plan_id or "", _user(req))
    if plan["status"] != "finished" or plan["json_output"] is None:
        return Response(204)
    return Response(307, b"", {"Location": _archivist(req, plan["json_download_token"]) or ""})
