"""Handlers of the new API for workspaces, their locks and their variables."""

from __future__ import annotations

import json
from typing import Any

from runbook_lib.sandbox import errors
from runbook_lib.sandbox.states_api import _state_version_doc
from runbook_lib.sandbox.tfe_api import EXECUTION_MODES, _ALL_PERMISSIONS, _rel, _user, _ws
from runbook_lib.sandbox.wire import Request, Response, check_bool, check_str, jsonapi_response, paginate, parse_resource


# --- workspaces ------------------------------------------------------------------------------------------

def _workspace_doc(req: Request, ws: dict[str, Any]) -> dict[str, Any]:
    store = req.store
    current = store.current_state_version(ws["id"])
    runs = store.list_runs(ws["id"])
    latest_run = runs[0] if runs else None
    active = next((r for r in runs if r["status"] not in ("planned_and_finished", "applied", "errored",
                                                          "discarded", "canceled", "force_canceled")), None)
    vcs = None
    if ws["vcs_identifier"]:
        vcs = {"branch": ws["vcs_branch"] or "", "identifier": ws["vcs_identifier"],
               "display-identifier": ws["vcs_identifier"], "ingress-submodules": bool(ws["vcs_ingress_submodules"]),
               "oauth-token-id": ws["vcs_oauth_token_id"], "repository-http-url": None,
               "service-provider": None, "tags-regex": None, "webhook-url": f"{req.base_url}/webhooks/vcs/{ws['id']}"}
        if ws["vcs_oauth_token_id"]:
            token = store.oauth_token_client(ws["vcs_oauth_token_id"])
            if token:
                vcs["service-provider"] = token["service_provider"]
                vcs["repository-http-url"] = f"{(token['http_url'] or '').rstrip('/')}/{ws['vcs_identifier']}"
    locked_by = None
    if ws["locked"]:
        locked_by = ({"id": ws["locked_by_run"], "type": "runs"} if ws["locked_by_run"]
                     else {"id": ws["locked_by_user"], "type": "users"})
    org = ws["org"]
    attributes = {
        "name": ws["name"], "description": ws["description"], "environment": "default",
        "execution-mode": ws["execution_mode"], "operations": ws["execution_mode"] == "remote",
        "auto-apply": bool(ws["auto_apply"]), "auto-apply-run-trigger": False, "auto-destroy-at": None,
        "allow-destroy-plan": True, "terraform-version": ws["terraform_version"],
        "working-directory": ws["working_directory"] or "", "locked": bool(ws["locked"]),
        "locked-reason": ws["lock_reason"] if ws["locked"] else "",
        "queue-all-runs": bool(ws["queue_all_runs"]), "speculative-enabled": bool(ws["speculative_enabled"]),
        "file-triggers-enabled": bool(ws["file_triggers_enabled"]),
        "trigger-prefixes": json.loads(ws["trigger_prefixes"]), "trigger-patterns": [],
        "source": "tfe-api", "source-name": ws["source_name"], "source-url": ws["source_url"],
        "migration-environment": ws["migration_environment"],
        "vcs-repo": vcs, "vcs-repo-identifier": ws["vcs_identifier"],
        "created-at": ws["created_at"], "updated-at": ws["updated_at"], "latest-change-at": ws["updated_at"],
        "resource-count": 0, "global-remote-state": False, "structured-run-output-enabled": True,
        "assessments-enabled": False, "tag-names": [], "apply-duration-average": None,
        "plan-duration-average": None, "policy-check-failures": None, "run-failures": None,
        "workspace-kpis-runs-count": len(runs), "unarchived-workspace-change-requests-count": 0,
        "actions": {"is-destroyable": True},
        "permissions": {name: True for name in _ALL_PERMISSIONS},
        "setting-overwrites": {"execution-mode": False, "agent-pool": False},
    }
    return {"id": ws["id"], "type": "workspaces", "attributes": attributes, "relationships": {
        "organization": _rel("organizations", org),
        "current-state-version": _rel("state-versions", current["id"] if current else None),
        "current-run": _rel("runs", active["id"] if active else None),
        "current-configuration-version": _rel("configuration-versions", _current_cv_id(store, ws["id"])),
        "latest-run": _rel("runs", latest_run["id"] if latest_run else None),
        "locked-by": {"data": locked_by},
        "outputs": {"data": []}, "remote-state-consumers": {
            "links": {"related": f"/api/v2/workspaces/{ws['id']}/relationships/remote-state-consumers"}},
        "vars": {"links": {"related": f"/api/v2/workspaces/{ws['id']}/vars"}}},
        "links": {"self": f"/api/v2/organizations/{org}/workspaces/{ws['name']}",
                  "self-html": f"/app/{org}/workspaces/{ws['name']}"}}


def _current_cv_id(store: Any, ws_id: str) -> str | None:
    cv = store.current_configuration_version(ws_id)
    return cv["id"] if cv else None


def _workspace_attrs(attrs: dict[str, Any]) -> dict[str, Any]:
    """Validate the types of workspace attributes (values are checked by the store)."""
    for name in ("name", "description", "terraform-version", "working-directory", "source-name", "source-url",
                 "migration-environment"):
        check_str(attrs, name)
    for name in ("auto-apply", "queue-all-runs", "speculative-enabled", "file-triggers-enabled"):
        check_bool(attrs, name)
    if "execution-mode" in attrs and attrs["execution-mode"] not in EXECUTION_MODES:
        raise errors.UnprocessableError("Execution mode must be one of: remote, local, agent",
                                        pointer="/data/attributes/execution-mode")
    if "operations" in attrs and "execution-mode" not in attrs:
        # Older clients send `operations` instead of `execution-mode`.
        check_bool(attrs, "operations")
        attrs["execution-mode"] = "remote" if attrs["operations"] else "local"
    prefixes = attrs.get("trigger-prefixes")
    if prefixes is not None and not (isinstance(prefixes, list) and all(isinstance(p, str) for p in prefixes)):
        raise errors.UnprocessableError("trigger-prefixes must be a list of strings",
                                        pointer="/data/attributes/trigger-prefixes")
    vcs = attrs.get("vcs-repo")
    if vcs is not None:
        if not isinstance(vcs, dict):
            raise errors.UnprocessableError("vcs-repo must be an object", pointer="/data/attributes/vcs-repo")
        for name in ("identifier", "oauth-token-id", "branch"):
            if name in vcs and vcs[name] is not None and not isinstance(vcs[name], str):
                raise errors.UnprocessableError(f"{name} must be a string",
                                                pointer=f"/data/attributes/vcs-repo/{name}")
    return attrs


def create_workspace(req: Request, org: str) -> Response:
    """`POST /api/v2/organizations/:org/workspaces`: 201, or 422 for a blank/invalid/taken name."""
    req.store.get_organization(org, _user(req))
    attrs, _ = parse_resource(req, "workspaces")
    ws = req.store.create_workspace(org, _workspace_attrs(attrs), _user(req))
    return jsonapi_response({"data": _workspace_doc(req, ws)}, 201)


def list_workspaces(req: Request, org: str) -> Response:
    """`GET /api/v2/organizations/:org/workspaces` (paged; `search[name]` substring filter)."""
    req.store.get_organization(org, _user(req))
    rows = req.store.list_workspaces(org, req.query.get("search[name]"))
    rows, meta, links = paginate(req, rows)
    meta["status-counts"] = {"total": meta["pagination"]["total-count"]}
    return jsonapi_response({"data": [_workspace_doc(req, w) for w in rows], "links": links, "meta": meta})


#: `?include=` values the sandbox serves on a workspace (the real API accepts more; asking for one the
#: sandbox lacks is a 400 rather than a silent omission).
WORKSPACE_INCLUDES = ("current_state_version",)


def show_workspace(req: Request, org: str | None = None, name: str | None = None,
                   ws_id: str | None = None) -> Response:
    """`GET /api/v2/organizations/:org/workspaces/:name` and `GET /api/v2/workspaces/:id`.

    `?include=current_state_version` adds the current state version to `included` (as the real API does).
    """
    includes = [i for i in (req.query.get("include") or "").split(",") if i]
    unknown = [i for i in includes if i not in WORKSPACE_INCLUDES]
    if unknown:
        raise errors.BadRequestError(f"Invalid include parameter: {', '.join(unknown)} (the sandbox serves "
                                     f"{', '.join(WORKSPACE_INCLUDES)})")
    ws = _ws(req, org, name, ws_id)
    doc: dict[str, Any] = {"data": _workspace_doc(req, ws)}
    if includes:
        current = req.store.current_state_version(ws["id"])
        doc["included"] = [_state_version_doc(req, current)] if current else []
    return jsonapi_response(doc)


def update_workspace(req: Request, org: str | None = None, name: str | None = None,
                     ws_id: str | None = None) -> Response:
    """`PATCH` a workspace by name or id."""
    ws = _ws(req, org, name, ws_id)
    attrs, _ = parse_resource(req, "workspaces")
    updated = req.store.update_workspace(ws, _workspace_attrs(attrs), _user(req))
    return jsonapi_response({"data": _workspace_doc(req, updated)})


def delete_workspace(req: Request, org: str | None = None, name: str | None = None,
                     ws_id: str | None = None) -> Response:
    """`DELETE` a workspace by name or id: 204."""
    ws = _ws(req, org, name, ws_id)
    req.store.delete_workspace(ws["id"])
    return Response(204)


def _lock_reason(req: Request) -> str:
    if not req.body.strip():
        return ""
    doc = req.json()
    if not isinstance(doc, dict):
        raise errors.UnprocessableError("the lock body must be an object", pointer="/data")
    if isinstance(doc.get("data"), dict):
        attrs, _ = parse_resource(req, None, require_type=False)
        reason = attrs.get("reason", "")
    else:
        reason = doc.get("reason", "")
    if reason is not None and not isinstance(reason, str):
        raise errors.UnprocessableError("reason must be a string", pointer="/data/attributes/reason")
    return reason or ""


def lock_workspace(req: Request, ws_id: str) -> Response:
    """`POST /api/v2/workspaces/:id/actions/lock`: 200, or 409 when already locked."""
    ws = _ws(req, ws_id=ws_id)
    reason = _lock_reason(req)
    return jsonapi_response({"data": _workspace_doc(req, req.store.lock_workspace(ws, _user(req), reason))})


def unlock_workspace(req: Request, ws_id: str) -> Response:
    """`POST /api/v2/workspaces/:id/actions/unlock`: 200, or 409 (not locked / locked by another)."""
    ws = _ws(req, ws_id=ws_id)
    return jsonapi_response({"data": _workspace_doc(req, req.store.unlock_workspace(ws, _user(req)))})


def force_unlock_workspace(req: Request, ws_id: str) -> Response:
    """`POST /api/v2/workspaces/:id/actions/force-unlock`: 200, or 409 when not locked."""
    ws = _ws(req, ws_id=ws_id)
    return jsonapi_response({"data": _workspace_doc(req, req.store.unlock_workspace(ws, _user(req), force=True))})


# --- variables --------------------------------------------------------------------------------------------

def _var_doc(var: dict[str, Any]) -> dict[str, Any]:
    return {"id": var["id"], "type": "vars", "attributes": {
        "key": var["key"], "value": None if var["sensitive"] else var["value"],
        "description": var["description"], "sensitive": bool(var["sensitive"]), "category": var["category"],
        "hcl": bool(var["hcl"]), "created-at": var["created_at"], "version-id": var["id"] + "-v1"},
        "relationships": {"configurable": {"data": {"id": var["workspace_id"], "type": "workspaces"},
                                           "links": {"related": f"/api/v2/workspaces/{var['workspace_id']}"}}},
        "links": {"self": f"/api/v2/workspaces/{var['workspace_id']}/vars/{var['id']}"}}


def _var_attrs(attrs: dict[str, Any]) -> dict[str, Any]:
    for name in ("key", "description", "category"):
        check_str(attrs, name)
    for name in ("hcl", "sensitive"):
        check_bool(attrs, name)
    if "value" in attrs and attrs["value"] is not None and not isinstance(attrs["value"], (str, int, float)):
        raise errors.UnprocessableError("value must be a string", pointer="/data/attributes/value")
    return attrs


def list_vars(req: Request, ws_id: str) -> Response:
    """`GET /api/v2/workspaces/:id/vars`: all variables (not paged, as in TFE); sensitive values null."""
    ws = _ws(req, ws_id=ws_id)
    return jsonapi_response({"data": [_var_doc(v) for v in req.store.list_vars(ws["id"])]})


def create_var(req: Request, ws_id: str) -> Response:
    """`POST /api/v2/workspaces/:id/vars`: 201; 422 for a blank/taken key or a bad category."""
    ws = _ws(req, ws_id=ws_id)
    attrs, _ = parse_resource(req, "vars")
    return jsonapi_response({"data": _var_doc(req.store.create_var(ws["id"], _var_attrs(attrs)))}, 201)


def show_var(req: Request, ws_id: str, var_id: str) -> Response:
    """`GET /api/v2/workspaces/:id/vars/:var_id`."""
    ws = _ws(req, ws_id=ws_id)
    return jsonapi_response({"data": _var_doc(req.store.get_var(ws["id"], var_id))})


def update_var(req: Request, ws_id: str, var_id: str) -> Response:
    """`PATCH /api/v2/workspaces/:id/vars/:var_id`."""
    ws = _ws(req, ws_id=ws_id)
    var = req.store.get_var(ws["id"], var_id)
    attrs, _ = parse_resource(req, "vars")
    return jsonapi_response({"data": _var_doc(req.store.update_var(var, _var_attrs(attrs)))})


def delete_var(req: Request, ws_id: str, var_id: str) -> Response:
    """`DELETE /api/v2/workspaces/:id/vars/:var_id`: 204."""
    ws = _ws(req, ws_id=ws_id)
    var = req.store.get_var(ws["id"], var_id)
    req.store.delete_var(var["id"])
    return Response(204)


