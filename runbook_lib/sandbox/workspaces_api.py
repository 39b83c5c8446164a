"""Handlers of the new API for workspaces, their locks and their variables."""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from runbook_lib.sandbox import documents, errors, vcs
from runbook_lib.sandbox.states_api import workspace_outputs
from runbook_lib.sandbox.tfe_api import EXECUTION_MODES, _ALL_PERMISSIONS, _rel, _user, _ws
from runbook_lib.sandbox.wire import (Request, Response, includes, check_bool, check_str, jsonapi_response, paginate,
                                     parse_resource, relationship_id)


# --- workspaces ------------------------------------------------------------------------------------------

@documents.renders("workspaces")
def workspace_doc(req: Request, ws: dict[str, Any]) -> dict[str, Any]:
    store = req.store
    settings = store.workspace_settings(ws["id"])
    current = store.current_state_version(ws["id"])
    runs = store.list_runs(ws["id"])
    latest_run = runs[0] if runs else None
    current_run = store.current_run(ws["id"])
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
    # `locked-by` names whoever holds a lock: a run or a user (go-tfe `workspace.go` LockedBy is
    # polymorphic: run, user or team; workspaces.mdx include `locked_by`). Unlocked: null.
    locked_by = None
    if ws["locked"]:
        locked_by = ({"id": ws["locked_by_run"], "type": "runs"} if ws["locked_by_run"]
                     else _lock_holder(store, ws["locked_by_user"]) if ws["locked_by_user"] else None)
    org = ws["org"]
    mode = store.effective_execution_mode(ws)
    attributes = {
        "name": ws["name"], "description": ws["description"], "environment": "default",
        "execution-mode": mode, "operations": mode == "remote",
        "auto-apply": bool(ws["auto_apply"]), "auto-apply-run-trigger": False, "auto-destroy-at": settings["auto-destroy-at"],
        "allow-destroy-plan": settings["allow-destroy-plan"], "terraform-version": ws["terraform_version"],
        "working-directory": ws["working_directory"] or "", "locked": bool(ws["locked"]),
        "locked-reason": ws["lock_reason"] if ws["locked"] else "",
        "queue-all-runs": bool(ws["queue_all_runs"]), "speculative-enabled": bool(ws["speculative_enabled"]),
        "file-triggers-enabled": bool(ws["file_triggers_enabled"]),
        "trigger-prefixes": json.loads(ws["trigger_prefixes"]), "trigger-patterns": settings["trigger-patterns"],
        "source": "tfe-api", "source-name": ws["source_name"], "source-url": ws["source_url"],
        "migration-environment": ws["migration_environment"],
        "vcs-repo": vcs, "vcs-repo-identifier": ws["vcs_identifier"],
        "created-at": ws["created_at"], "updated-at": ws["updated_at"], "latest-change-at": ws["updated_at"],
        # every run of the organization may read every workspace's state (params.py refuses false: remote state
        # consumers are not modelled)
        "resource-count": store.managed_resources(ws["id"]), "global-remote-state": True,
        "structured-run-output-enabled": settings["structured-run-output-enabled"],
        "assessments-enabled": settings["assessments-enabled"], "tag-names": settings["tag-names"], "apply-duration-average": None,
        "plan-duration-average": None, "policy-check-failures": None, "run-failures": None,
        "workspace-kpis-runs-count": len(runs),
        "actions": {"is-destroyable": True},
        # what the caller may do here (go-tfe `workspace.go` WorkspacePermissions; a team token's access)
        "permissions": store.workspace_grant(req.user, ws["id"]).can() if req.user else {n: True for n in _ALL_PERMISSIONS},
        "setting-overwrites": store.setting_overwrites(ws["id"]),
    }
    return {"id": ws["id"], "type": "workspaces", "attributes": attributes, "relationships": {
        "organization": _rel("organizations", org),
        "current-state-version": _rel("state-versions", current["id"] if current else None),
        "current-run": _rel("runs", current_run["id"] if current_run else None),
        "project": _rel("projects", store.workspace_project_id(ws)),
        "current-configuration-version": _rel("configuration-versions", _current_cv_id(store, ws["id"])),
        # the pool its runs use (workspaces.mdx `agent-pool-id`; go-tfe `workspace.go` AgentPool)
        "agent-pool": _rel("agent-pools", store.workspace_agent_pool(ws)),
        "latest-run": _rel("runs", latest_run["id"] if latest_run else None),
        "locked-by": {"data": locked_by},
        "outputs": {"data": [{"id": o["id"], "type": o["type"]} for o in workspace_outputs(req, ws)]},
        "remote-state-consumers": {
            "links": {"related": f"/api/v2/workspaces/{ws['id']}/relationships/remote-state-consumers"}},
        # the workspace's variables as a to-many relationship (go-tfe `workspace.go` Variables, read by
        # `variable_integration_test.go` after a create)
        "vars": {"data": [{"id": v["id"], "type": "vars"} for v in store.list_vars(ws["id"])],
                 "links": {"related": f"/api/v2/workspaces/{ws['id']}/vars"}}},
        "links": {"self": f"/api/v2/organizations/{org}/workspaces/{ws['name']}",
                  "self-html": f"/app/{org}/workspaces/{ws['name']}"}}


def _lock_holder(store: Any, user_id: str) -> dict[str, str]:
    """A user's lock, or its team's when the user is a team token's account (`locked-by` is a run, a user
    or a team: go-tfe `workspace.go` LockedBy)."""
    holder = store.find_user_by_id(user_id)
    team = store.token_team(holder) if holder else None
    return {"id": team["id"], "type": "teams"} if team else {"id": user_id, "type": "users"}


def _current_cv_id(store: Any, ws_id: str) -> str | None:
    cv = store.current_configuration_version(ws_id)
    return cv["id"] if cv else None


_ISO_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})")
_ONE_VERSION = r"\s*(?:[<>=!~]=?|~>)?\s*v?\d+(?:\.\d+){0,2}(?:-[0-9A-Za-z.-]+)?\s*"
_VERSION = re.compile(rf"{_ONE_VERSION}(?:,{_ONE_VERSION})*")


def _workspace_attrs(attrs: dict[str, Any]) -> dict[str, Any]:
    """Validate the types of workspace attributes (values are checked by the store)."""
    for name in ("name", "description", "terraform-version", "working-directory", "source-name", "source-url",
                 "migration-environment", "agent-pool-id"):
        check_str(attrs, name)
    for name in ("auto-apply", "queue-all-runs", "speculative-enabled", "file-triggers-enabled"):
        check_bool(attrs, name)
    version = attrs.get("terraform-version")
    if version and version != "latest" and not _VERSION.fullmatch(version):
        # "an exact version or a version constraint such as `~> 1.0.0`" (workspaces.mdx, terraform-version);
        # anything else is refused (go-tfe `workspace_integration_test.go` UpdateByID "nonexisting").
        raise errors.UnprocessableError(f"Terraform version {version!r} is not a version or a version constraint",
                                        pointer="/data/attributes/terraform-version")
    if "execution-mode" in attrs and attrs["execution-mode"] not in EXECUTION_MODES:
        raise errors.UnprocessableError("Execution mode must be one of: remote, local, agent",
                                        pointer="/data/attributes/execution-mode")
    if "operations" in attrs and "execution-mode" not in attrs:
        # Older clients send `operations` instead of `execution-mode`.
        check_bool(attrs, "operations")
        attrs["execution-mode"] = "remote" if attrs["operations"] else "local"
    for name in ("allow-destroy-plan", "assessments-enabled", "structured-run-output-enabled"):
        check_bool(attrs, name)
    overwrites = attrs.get("setting-overwrites")
    if overwrites is not None and not (isinstance(overwrites, dict)
                                       and set(overwrites) <= {"execution-mode", "agent-pool"}
                                       and all(isinstance(v, bool) for v in overwrites.values())):
        # an object of booleans keyed by settings with organization defaults (workspaces.mdx `setting-overwrites`)
        raise errors.UnprocessableError("setting-overwrites must map execution-mode and agent-pool to booleans",
                                        pointer="/data/attributes/setting-overwrites")
    check_str(attrs, "auto-destroy-at")
    if attrs.get("auto-destroy-at") and not _ISO_TIME.fullmatch(attrs["auto-destroy-at"]):
        raise errors.UnprocessableError("auto-destroy-at must be an ISO 8601 time like 2030-01-01T00:00:00Z",
                                        pointer="/data/attributes/auto-destroy-at")
    patterns = attrs.get("trigger-patterns")
    if patterns is not None and not (isinstance(patterns, list) and all(isinstance(p, str) for p in patterns)):
        raise errors.UnprocessableError("trigger-patterns must be a list of strings",
                                        pointer="/data/attributes/trigger-patterns")
    prefixes = attrs.get("trigger-prefixes")
    if prefixes is not None and not (isinstance(prefixes, list) and all(isinstance(p, str) for p in prefixes)):
        raise errors.UnprocessableError("trigger-prefixes must be a list of strings",
                                        pointer="/data/attributes/trigger-prefixes")
    if patterns and prefixes:
        # one or the other (go-tfe `workspace_integration_test.go` "both non-empty trigger-patterns and
        # trigger-paths error is returned"; workspaces.mdx `trigger-patterns`)
        raise errors.UnprocessableError("trigger-patterns and trigger-prefixes cannot both be set",
                                        pointer="/data/attributes/trigger-patterns")
    vcs = attrs.get("vcs-repo")
    if vcs is not None:
        if not isinstance(vcs, dict):
            raise errors.UnprocessableError("vcs-repo must be an object", pointer="/data/attributes/vcs-repo")
        for name in ("identifier", "oauth-token-id", "branch"):
            if name in vcs and vcs[name] is not None and not isinstance(vcs[name], str):
                raise errors.UnprocessableError(f"{name} must be a string",
                                                pointer=f"/data/attributes/vcs-repo/{name}")
    return attrs


def _with_tags(attrs: dict[str, Any], rels: dict[str, Any]) -> dict[str, Any]:
    """Tags sent as the `tags` relationship (go-tfe `WorkspaceCreateOptions.Tags`) become `tag-names`."""
    data = (rels.get("tags") or {}).get("data") if isinstance(rels.get("tags"), dict) else None
    if isinstance(data, list):
        names = [(t.get("attributes") or {}).get("name") for t in data if isinstance(t, dict)]
        attrs = {**attrs, "tag-names": [n for n in names if isinstance(n, str) and n]}
    return attrs


def _with_project(req: Request, org: str, attrs: dict[str, Any], rels: dict[str, Any]) -> dict[str, Any]:
    """The `project` relationship (a project of the workspace's organization; workspaces.mdx
    `relationships.project`) as the `project` attribute the store keeps; another organization's or an
    unknown project is 404, as for any object the caller cannot see."""
    project_id = relationship_id(rels, "project", "projects")
    if project_id is None:
        return attrs
    project = req.store.find_project(project_id)
    if project is None or project["org"] != org:
        raise errors.NotFoundError()
    return {**attrs, "project": project["id"]}


def create_workspace(req: Request, org: str) -> Response:
    """`POST /api/v2/organizations/:org/workspaces`: 201, or 422 for a blank/invalid/taken name."""
    req.store.get_organization(org, _user(req))
    req.store.require_org_workspace_creation(org, _user(req))
    attrs, rels = parse_resource(req, "workspaces")
    attrs = _with_project(req, org, _workspace_attrs(_with_tags(attrs, rels)), rels)
    ws = req.store.create_workspace(org, attrs, _user(req))
    _queue_on_link(req, ws)
    return jsonapi_response({"data": workspace_doc(req, ws)}, 201)


def _queue_on_link(req: Request, ws: dict[str, Any]) -> None:
    """Linking a repository with `queue-all-runs` queues a run of its branch head (vcs.queue_on_link)."""
    data_dir = getattr(req.app, "data_dir", None)
    if data_dir is not None:
        vcs.queue_on_link(req.store, data_dir, ws)


def _include_state(req: Request, ws: dict[str, Any]) -> list[dict[str, Any]]:
    current = req.store.current_state_version(ws["id"])
    return [documents.render(req, "state-versions", current)] if current else []


def _include_org(req: Request, ws: dict[str, Any]) -> list[dict[str, Any]]:
    return [documents.render(req, "organizations", req.store.get_organization(ws["org"], _user(req)))]


def _include_current_run(req: Request, ws: dict[str, Any]) -> list[dict[str, Any]]:
    current = req.store.current_run(ws["id"])
    return [documents.render(req, "runs", current)] if current else []


def _include_current_run_plan(req: Request, ws: dict[str, Any]) -> list[dict[str, Any]]:
    current = req.store.current_run(ws["id"])
    plan = req.store.plan_for_run(current["id"]) if current else None
    return _include_current_run(req, ws) + ([documents.render(req, "plans", plan)] if plan is not None else [])


def _include_current_run_cv(req: Request, ws: dict[str, Any], *, ingress: bool = False) -> list[dict[str, Any]]:
    """The current run and its configuration version (and that version's ingress attributes): a
    multi-part include returns the resources along the path too (JSON:API "Inclusion of Related
    Resources"), so one workspace read names the commit its current run plans."""
    current = req.store.current_run(ws["id"])
    if not current or not current["configuration_version_id"]:
        return _include_current_run(req, ws)
    cv = req.store.get_configuration_version(current["configuration_version_id"], _user(req))
    return (_include_current_run(req, ws) + [documents.render(req, "configuration-versions", cv)]
            + ([documents.render(req, "ingress-attributes", cv)] if ingress and cv["ingress"] else []))


def _include_locked_by(req: Request, ws: dict[str, Any]) -> list[dict[str, Any]]:
    if not ws["locked"] or ws["locked_by_run"] or not ws["locked_by_user"]:
        return []
    user = req.store.find_user_by_id(ws["locked_by_user"])
    team = req.store.token_team(user) if user else None
    if team is not None:
        return [{"id": team["id"], "type": "teams", "attributes": {"name": team["name"]}}]
    return [{"id": user["id"], "type": "users", "attributes": {"username": user["username"]}}] if user else []


def _include_nothing(req: Request, ws: dict[str, Any]) -> list[dict[str, Any]]:
    return []


def _include_current_cv(req: Request, ws: dict[str, Any], *, ingress: bool = False) -> list[dict[str, Any]]:
    """The workspace's current configuration version (and its commit)."""
    cv = req.store.current_configuration_version(ws["id"])
    if cv is None:
        return []
    return [documents.render(req, "configuration-versions", cv)] + (
        [documents.render(req, "ingress-attributes", cv)] if ingress and cv["ingress"] else [])


def _include_project(req: Request, ws: dict[str, Any]) -> list[dict[str, Any]]:
    project = req.store.find_project(req.store.workspace_project_id(ws) or "")
    return [documents.render(req, "projects", project)] if project else []


#: `?include=` values the sandbox serves on a workspace (workspaces.mdx "Available Related Resources";
#: the state version's spelling `current-state-version` is go-tfe's `WSCurrentStateVer`, tested against
#: the real API in `workspace_integration_test.go`). `outputs` are the current state version's outputs
#: (sensitive values null); `effective_tag_bindings` is empty: the sandbox keeps none. The `current_run.*` paths are go-tfe's `WSCurrentRunPlan`,
#: `WSCurrentRunConfigVer` and `WSCurrentrunConfigVerIngress` (`workspace.go` `WSIncludeOpt`). Any other
#: value is a 400, as the real API answers an invalid include (`readme` among them: the sandbox keeps no
#: configuration's README).
WORKSPACE_INCLUDES = {"current-state-version": _include_state, "organization": _include_org,
                      "current_run": _include_current_run, "current_run.plan": _include_current_run_plan,
                      "current_run.configuration_version": _include_current_run_cv,
                      "current_run.configuration_version.ingress_attributes":
                          lambda req, ws: _include_current_run_cv(req, ws, ingress=True),
                      "locked_by": _include_locked_by,
                      "outputs": workspace_outputs, "effective_tag_bindings": _include_nothing,
                      "current_configuration_version": _include_current_cv,
                      "current_configuration_version.ingress_attributes":
                          lambda req, ws: _include_current_cv(req, ws, ingress=True),
                      "project": _include_project}


def _includes(req: Request) -> list[str]:
    return includes(req, WORKSPACE_INCLUDES, f"the sandbox serves {', '.join(WORKSPACE_INCLUDES)}")


def _included(req: Request, rows: list[dict[str, Any]], includes: list[str]) -> list[dict[str, Any]]:
    seen: dict[tuple[str, str], dict[str, Any]] = {}
    for ws in rows:
        for name in includes:
            for doc in WORKSPACE_INCLUDES[name](req, ws):
                seen.setdefault((doc["type"], doc["id"]), doc)
    return list(seen.values())


def _wildcard_match(pattern: str, name: str) -> bool:
    """`search[wildcard-name]`: `*` on the prefix, the suffix or both (workspaces.mdx "List workspaces");
    without a `*` the name must match exactly."""
    core = pattern.strip("*")
    if pattern.startswith("*") and pattern.endswith("*") and len(pattern) > 1:
        return core in name
    if pattern.startswith("*"):
        return name.endswith(core)
    if pattern.endswith("*"):
        return name.startswith(core)
    return name == pattern


def _tag_list(value: str | None) -> set[str]:
    return {t.strip() for t in (value or "").split(",") if t.strip()}


def _filter_tags(req: Request, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`search[tags]`: workspaces holding all the given tags; `search[exclude-tags]`: workspaces holding
    none of them (comma-separated names; workspaces.mdx "List workspaces" query parameters; go-tfe
    `workspace.go` WorkspaceListOptions Tags, ExcludeTags)."""
    wanted, unwanted = _tag_list(req.query.get("search[tags]")), _tag_list(req.query.get("search[exclude-tags]"))
    if not wanted and not unwanted:
        return rows
    kept = []
    for ws in rows:
        tags = set(req.store.workspace_settings(ws["id"])["tag-names"])
        if wanted <= tags and not unwanted & tags:
            kept.append(ws)
    return kept


#: `sort` values of the workspace list: "name" (the default) and "current-run.created-at", a leading
#: hyphen reverses (go-tfe `workspace.go` WorkspaceListOptions.Sort); `latest-change-at` too (workspaces.mdx
#: "List workspaces"). Workspaces without a current run sort after the others ascending and before them
#: descending, the order of a SQL `ORDER BY` on a null column in PostgreSQL, the real host's database.
WORKSPACE_SORTS = ("name", "current-run.created-at", "latest-change-at")


def _sorted(req: Request, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    sort = req.query.get("sort") or "name"
    key = sort[1:] if sort.startswith("-") else sort
    if key not in WORKSPACE_SORTS:
        raise errors.BadRequestError(f"Invalid sort parameter {sort!r}: sort on "
                                     f"{', '.join(WORKSPACE_SORTS)}, with a leading '-' to reverse")
    reverse = sort.startswith("-")
    if key == "name":
        return sorted(rows, key=lambda w: w["name"], reverse=reverse)
    if key == "latest-change-at":
        return sorted(rows, key=lambda w: (w["updated_at"], w["name"]), reverse=reverse)
    stamps = {w["id"]: (run["created_at"] if (run := req.store.current_run(w["id"])) else None) for w in rows}
    with_run = sorted((w for w in rows if stamps[w["id"]]), key=lambda w: (stamps[w["id"]], w["name"]),
                      reverse=reverse)
    without = [w for w in rows if not stamps[w["id"]]]
    return without + with_run if reverse else with_run + without


def list_workspaces(req: Request, org: str) -> Response:
    """`GET /api/v2/organizations/:org/workspaces` (paged; `search[name]` substring filter, wildcard and
    tag filters; `sort`; `include`)."""
    includes = _includes(req)
    req.store.get_organization(org, _user(req))
    rows = req.store.visible_to(_user(req), req.store.list_workspaces(org, req.query.get("search[name]")))
    wildcard = req.query.get("search[wildcard-name]")
    if wildcard:
        rows = [w for w in rows if _wildcard_match(wildcard, w["name"])]
    project_id = req.query.get("filter[project][id]")
    if project_id:
        # workspaces of one project (go-tfe `workspace.go` WorkspaceListOptions.ProjectID)
        rows = [w for w in rows if req.store.workspace_project_id(w) == project_id]
    run_status = req.query.get("filter[current-run][status]")
    if run_status:
        # workspaces whose current run has this status (go-tfe WorkspaceListOptions.CurrentRunStatus)
        rows = [w for w in rows if (run := req.store.current_run(w["id"])) and run["status"] == run_status]
    rows = _sorted(req, _filter_tags(req, rows))
    rows, meta, links = paginate(req, rows)
    meta["status-counts"] = {"total": meta["pagination"]["total-count"]}
    doc: dict[str, Any] = {"data": [workspace_doc(req, w) for w in rows], "links": links, "meta": meta}
    if includes:
        doc["included"] = _included(req, rows, includes)
    return jsonapi_response(doc)


def show_workspace(req: Request, org: str | None = None, name: str | None = None,
                   ws_id: str | None = None) -> Response:
    """`GET /api/v2/organizations/:org/workspaces/:name` and `GET /api/v2/workspaces/:id`.

    `?include=current-state-version` adds the current state version to `included` (as the real API does).
    """
    includes = _includes(req)
    ws = _ws(req, org, name, ws_id)
    doc: dict[str, Any] = {"data": workspace_doc(req, ws)}
    if includes:
        doc["included"] = _included(req, [ws], includes)
    return jsonapi_response(doc)


def update_workspace(req: Request, org: str | None = None, name: str | None = None,
                     ws_id: str | None = None) -> Response:
    """`PATCH` a workspace by name or id (admin access: permissions.mdx "Workspace Admins")."""
    ws = _ws(req, org, name, ws_id, need="update")
    attrs, rels = parse_resource(req, "workspaces")
    attrs = _with_project(req, ws["org"], _workspace_attrs(_with_tags(attrs, rels)), rels)
    updated = req.store.update_workspace(ws, attrs, _user(req))
    if (updated["vcs_identifier"], updated["vcs_branch"]) != (ws["vcs_identifier"], ws["vcs_branch"]):
        _queue_on_link(req, updated)  # a new link queues the branch head (turning queue-all-runs on does not)
    return jsonapi_response({"data": workspace_doc(req, updated)})


def delete_workspace(req: Request, org: str | None = None, name: str | None = None,
                     ws_id: str | None = None, *, safe: bool = False) -> Response:
    """`DELETE` a workspace by name or id: 204, a force delete whatever the workspace manages
    (workspaces.mdx "Force Delete a workspace"). With `safe` (the route `POST .../actions/safe-delete`):
    204, or 409 while the workspace manages resources (workspaces.mdx "Safe Delete a workspace")."""
    ws = _ws(req, org, name, ws_id, need="delete" if safe else "force-delete")
    if not safe and req.store.managed_resources(ws["id"]) and not req.store.is_owner(ws["org"], _user(req)["id"]) \
            and not req.store.org_allows_force_delete(req.store.get_organization(ws["org"], _user(req))):
        # organizations.mdx `allow-force-delete-workspaces`: "If false, only organization owners may delete these
        # workspaces" (those with resources under management)
        raise errors.ForbiddenError("Only organization owners may force delete a workspace managing resources "
                                    "(the organization's allow-force-delete-workspaces is false)")
    (req.store.safe_delete_workspace if safe else req.store.delete_workspace)(ws["id"])
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
        unknown = sorted(set(doc) - {"reason"})
        if unknown:  # workspaces.mdx "Lock a workspace": the body takes a reason only
            raise errors.UnprocessableError(f"{unknown[0]} is not a parameter of a lock (it takes reason)",
                                            pointer=f"/{unknown[0]}")
        reason = doc.get("reason", "")
    if reason is not None and not isinstance(reason, str):
        raise errors.UnprocessableError("reason must be a string", pointer="/data/attributes/reason")
    return reason or ""


def lock_workspace(req: Request, ws_id: str) -> Response:
    """`POST /api/v2/workspaces/:id/actions/lock`: 200, or 409 when already locked."""
    ws = _ws(req, ws_id=ws_id, need="lock")
    reason = _lock_reason(req)
    return jsonapi_response({"data": workspace_doc(req, req.store.lock_workspace(ws, _user(req), reason))})


def unlock_workspace(req: Request, ws_id: str) -> Response:
    """`POST /api/v2/workspaces/:id/actions/unlock`: 200, or 409 (not locked / locked by another)."""
    ws = _ws(req, ws_id=ws_id, need="lock")
    return jsonapi_response({"data": workspace_doc(req, req.store.unlock_workspace(ws, _user(req)))})


def force_unlock_workspace(req: Request, ws_id: str) -> Response:
    """`POST /api/v2/workspaces/:id/actions/force-unlock`: 200, or 409 when not locked."""
    ws = _ws(req, ws_id=ws_id, need="force-unlock")
    return jsonapi_response({"data": workspace_doc(req, req.store.unlock_workspace(ws, _user(req), force=True))})


# --- tags -------------------------------------------------------------------------------------------------

def _tag_id(org: str, name: str) -> str:
    """A tag's id, stable for its name within the organization (the sandbox keeps tags as names)."""
    return "tag-" + hashlib.sha256(f"{org}/{name}".encode()).hexdigest()[:16]


def _tag_names(req: Request, ws: dict[str, Any]) -> list[str]:
    """The tags of a tags request (`data`: a list of `tags`, each by `attributes.name` or by `id`;
    workspaces.mdx "Add tags to a workspace"). A tag named by an id the organization does not use is 404."""
    doc = req.json()
    data = doc.get("data") if isinstance(doc, dict) else None
    if not isinstance(data, list) or not data:
        raise errors.UnprocessableError("data must be a non-empty list of tags", pointer="/data")
    org_tags = {_tag_id(ws["org"], n): n for w in req.store.list_workspaces(ws["org"])
                for n in req.store.workspace_settings(w["id"])["tag-names"]}
    names = []
    for index, item in enumerate(data):
        extra = sorted((set(item) - {"type", "id", "attributes"}) | {f"attributes.{k}" for k in (
            item.get("attributes") or {}) if k != "name"}) if isinstance(item, dict) else []
        if extra:  # workspaces.mdx: a tag is given by `id` or `attributes.name`
            raise errors.UnprocessableError(f"{extra[0]} is not a key of a tag (it takes id or attributes.name)",
                                            pointer=f"/data/{index}")
        name = (item.get("attributes") or {}).get("name") if isinstance(item, dict) else None
        if isinstance(item, dict) and item.get("type") not in (None, "tags"):
            raise errors.ConflictError(f"the resource type {item.get('type')!r} does not match this endpoint "
                                       "(expected 'tags')")
        if not name and isinstance(item, dict) and item.get("id"):
            if item["id"] not in org_tags:
                raise errors.NotFoundError()
            name = org_tags[item["id"]]
        if not isinstance(name, str) or not name.strip():
            raise errors.UnprocessableError("each tag needs a name or the id of an existing tag",
                                            pointer=f"/data/{index}")
        names.append(name.strip())
    return names


def list_workspace_tags(req: Request, ws_id: str) -> Response:
    """`GET /api/v2/workspaces/:id/relationships/tags`: the workspace's tags (paged)."""
    ws = _ws(req, ws_id=ws_id)
    tags = [{"id": _tag_id(ws["org"], n), "type": "tags", "attributes": {"name": n}}
            for n in req.store.workspace_settings(ws["id"])["tag-names"]]
    page, meta, links = paginate(req, tags)
    return jsonapi_response({"data": page, "links": links, "meta": meta})


def add_workspace_tags(req: Request, ws_id: str) -> Response:
    """`POST /api/v2/workspaces/:id/relationships/tags`: 204 (workspaces.mdx "Add tags to a workspace")."""
    ws = _ws(req, ws_id=ws_id, need="manage-tags")
    req.store.change_workspace_tags(ws, _tag_names(req, ws), add=True)
    return Response(204)


def remove_workspace_tags(req: Request, ws_id: str) -> Response:
    """`DELETE /api/v2/workspaces/:id/relationships/tags`: 204 (workspaces.mdx "Remove tags from
    workspace")."""
    ws = _ws(req, ws_id=ws_id, need="manage-tags")
    req.store.change_workspace_tags(ws, _tag_names(req, ws), add=False)
    return Response(204)


# --- variables --------------------------------------------------------------------------------------------

def _var_doc(req: Request, var: dict[str, Any]) -> dict[str, Any]:
    return {"id": var["id"], "type": "vars", "attributes": {
        "key": var["key"], "value": None if var["sensitive"] else var["value"],
        "description": var["description"], "sensitive": bool(var["sensitive"]), "category": var["category"],
        "hcl": bool(var["hcl"]), "version-id": req.store.var_version(var)},
        "relationships": {"configurable": {"data": {"id": var["workspace_id"], "type": "workspaces"},
                                           "links": {"related": f"/api/v2/workspaces/{var['workspace_id']}"}}},
        "links": {"self": f"/api/v2/workspaces/{var['workspace_id']}/vars/{var['id']}"}}


#: A variable's description is at most 512 characters: a longer one is refused (go-tfe
#: `variable_integration_test.go` "when options has a too-long description" expects an error).
VAR_DESCRIPTION_MAX = 512


def _var_attrs(attrs: dict[str, Any]) -> dict[str, Any]:
    for name in ("key", "description", "category"):
        check_str(attrs, name)
    if len(attrs.get("description") or "") > VAR_DESCRIPTION_MAX:
        raise errors.UnprocessableError(f"Description is too long (maximum is {VAR_DESCRIPTION_MAX} characters)",
                                        pointer="/data/attributes/description")
    for name in ("hcl", "sensitive"):
        check_bool(attrs, name)
    if "value" in attrs and attrs["value"] is not None and not isinstance(attrs["value"], (str, int, float)):
        raise errors.UnprocessableError("value must be a string", pointer="/data/attributes/value")
    return attrs


def list_vars(req: Request, ws_id: str) -> Response:
    """`GET /api/v2/workspaces/:id/vars`: all variables (not paged, as in TFE); sensitive values null."""
    ws = _ws(req, ws_id=ws_id, need="read-variables")
    return jsonapi_response({"data": [_var_doc(req, v) for v in req.store.list_vars(ws["id"])]})


def create_var(req: Request, ws_id: str) -> Response:
    """`POST /api/v2/workspaces/:id/vars`: 201; 422 for a blank/taken key or a bad category."""
    ws = _ws(req, ws_id=ws_id, need="write-variables")
    attrs, _ = parse_resource(req, "vars")
    return jsonapi_response({"data": _var_doc(req, req.store.create_var(ws["id"], _var_attrs(attrs)))}, 201)


def show_var(req: Request, ws_id: str, var_id: str) -> Response:
    """`GET /api/v2/workspaces/:id/vars/:var_id`."""
    ws = _ws(req, ws_id=ws_id, need="read-variables")
    return jsonapi_response({"data": _var_doc(req, req.store.get_var(ws["id"], var_id))})


def update_var(req: Request, ws_id: str, var_id: str) -> Response:
    """`PATCH /api/v2/workspaces/:id/vars/:var_id`."""
    ws = _ws(req, ws_id=ws_id, need="write-variables")
    var = req.store.get_var(ws["id"], var_id)
    attrs, _ = parse_resource(req, "vars")
    return jsonapi_response({"data": _var_doc(req, req.store.update_var(var, _var_attrs(attrs)))})


def delete_var(req: Request, ws_id: str, var_id: str) -> Response:
    """`DELETE /api/v2/workspaces/:id/vars/:var_id`: 204."""
    ws = _ws(req, ws_id=ws_id, need="write-variables")
    var = req.store.get_var(ws["id"], var_id)
    req.store.delete_var(var["id"])
    return Response(204)


