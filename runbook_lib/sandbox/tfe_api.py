"""Handlers of the new TFE API (`/api/v2`, JSON:API, bearer tokens) and the service-discovery document.

Each handler parses the request, calls the store, and serialises the reply in the shapes real TFE
and go-tfe use (`data.type` exact, dasherised attributes, relationships, links). Rules live in the
store; errors are raised as `SandboxError`s and rendered by the server.

Wire choices where the public documentation is silent (documented here so tests can rely on them):
- malformed JSON -> 400; a body without a `data` object -> 422 `param is missing or the value is
  empty: data`; a `data.type` that is not the endpoint's -> 409 (JSON:API's rule).
- lock accepts an empty body, `{"reason": ...}` (pytfe) and the JSON:API form Terraform sends with
  `"type": ""`.
- a state version with the same serial and md5 as the current one is answered 200 with the existing
  version (an idempotent retry), not a second version.
- hosted upload/download URLs are archivist-style capability URLs under `/_archivist/v1/object/`.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from runbook_lib.sandbox import errors
from runbook_lib.sandbox.wire import (Request, Response, check_bool, check_str, jsonapi_response, paginate,
                                      parse_resource, relationship_id)

API_VERSION = "2.5"
APP_NAME = "Terraform Enterprise"
TFE_VERSION = "v202401-1"
EXECUTION_MODES = ("remote", "local", "agent")
OAUTH_PROVIDERS = ("github", "github_enterprise", "gitlab_hosted", "gitlab_community_edition",
                   "gitlab_enterprise_edition", "ado_server", "ado_services", "bitbucket_hosted",
                   "bitbucket_server", "bitbucket_server_legacy", "bitbucket_data_center")
_ALL_PERMISSIONS = ("can-update", "can-destroy", "can-queue-run", "can-read-variable", "can-update-variable",
                    "can-read-state-versions", "can-read-state-outputs", "can-create-state-versions",
                    "can-queue-apply", "can-lock", "can-unlock", "can-force-unlock", "can-read-settings",
                    "can-manage-tags", "can-manage-run-tasks", "can-force-delete", "can-manage-assessments",
                    "can-read-assessments", "can-queue-destroy", "can-read-run-state-versions")


def _user(req: Request) -> dict[str, Any]:
    assert req.user is not None  # routes marked "bearer" are authenticated by the server
    return req.user


def _rel(kind: str, ident: str | None) -> dict[str, Any]:
    return {"data": {"id": ident, "type": kind} if ident else None}


def _archivist(req: Request, token: str | None) -> str | None:
    return f"{req.base_url}/_archivist/v1/object/{token}" if token else None


# --- discovery, ping, account ------------------------------------------------------------------------

def discovery(req: Request) -> Response:
    """`GET /.well-known/terraform.json`: where the CLI finds the API (relative URLs, as allowed)."""
    return Response(200, json.dumps({
        "tfe.v2": "/api/v2/", "tfe.v2.1": "/api/v2/", "tfe.v2.2": "/api/v2/", "state.v2": "/api/v2/",
        "modules.v1": "/api/registry/v1/modules/", "motd.v1": "/api/terraform/motd"}).encode(),
        {"Content-Type": "application/json"})


def ping(req: Request) -> Response:
    """`GET /api/v2/ping`: 204; the version headers are added to every /api/v2 answer by the server."""
    return Response(204)


def motd(req: Request) -> Response:
    """`GET /api/terraform/motd`: the CLI prints this after init; empty keeps its output clean."""
    return json_plain({"msg": ""})


def json_plain(obj: Any) -> Response:
    """Plain JSON (non-JSON:API) response."""
    return Response(200, json.dumps(obj).encode(), {"Content-Type": "application/json"})


def account_details(req: Request) -> Response:
    """`GET /api/v2/account/details`: the token's user."""
    return jsonapi_response({"data": _user_doc(_user(req))})


def _user_doc(user: dict[str, Any]) -> dict[str, Any]:
    return {"id": user["id"], "type": "users", "attributes": {
        "username": user["username"], "email": user["email"], "is-service-account": False,
        "avatar-url": "", "two-factor": {"enabled": False, "verified": False},
        "permissions": {"can-create-organizations": True, "can-change-email": True,
                        "can-change-username": True}},
        "links": {"self": f"/api/v2/users/{user['id']}"}}


# --- organizations -------------------------------------------------------------------------------------

def _org_doc(org: dict[str, Any]) -> dict[str, Any]:
    return {"id": org["name"], "type": "organizations", "attributes": {
        "name": org["name"], "email": org["email"], "external-id": org["external_id"],
        "created-at": org["created_at"], "collaborator-auth-policy": "password", "cost-estimation-enabled": False,
        "session-timeout": 20160, "session-remember": 20160, "saml-enabled": False, "two-factor-conformant": True,
        "owners-team-saml-role-id": None, "default-execution-mode": "remote",
        "permissions": {"can-update": True, "can-destroy": True, "can-access-via-teams": True,
                        "can-create-module": True, "can-create-team": True, "can-create-workspace": True,
                        "can-manage-users": True, "can-manage-subscription": True, "can-manage-sso": False,
                        "can-update-oauth": True, "can-update-sentinel": False, "can-update-ssh-keys": True,
                        "can-update-api-token": True, "can-traverse": True, "can-start-trial": False,
                        "can-update-agent-pools": False, "can-manage-tags": True, "can-create-project": True}},
        "relationships": {"oauth-tokens": {"links": {"related": f"/api/v2/organizations/{org['name']}/oauth-tokens"}},
                          "authentication-token": {"links": {
                              "related": f"/api/v2/organizations/{org['name']}/authentication-token"}}},
        "links": {"self": f"/api/v2/organizations/{org['name']}"}}


def list_organizations(req: Request) -> Response:
    """`GET /api/v2/organizations`: the organizations the token's user belongs to (paged)."""
    rows, meta, links = paginate(req, req.store.list_organizations(_user(req)))
    return jsonapi_response({"data": [_org_doc(o) for o in rows], "links": links, "meta": meta})


def create_organization(req: Request) -> Response:
    """`POST /api/v2/organizations` {name, email}: 201; names are global (legacy ones included)."""
    attrs, _ = parse_resource(req, "organizations")
    check_str(attrs, "name", nullable=False)
    check_str(attrs, "email", nullable=False)
    if not attrs.get("name"):
        raise errors.UnprocessableError("Name can't be blank", pointer="/data/attributes/name")
    email = attrs.get("email") or ""
    if "@" not in email:
        raise errors.UnprocessableError("Email is invalid", pointer="/data/attributes/email")
    org = req.store.create_organization(attrs["name"], email, _user(req))
    return jsonapi_response({"data": _org_doc(org)}, 201)


def show_organization(req: Request, org: str) -> Response:
    """`GET /api/v2/organizations/:org`."""
    return jsonapi_response({"data": _org_doc(req.store.get_organization(org, _user(req)))})


def entitlement_set(req: Request, org: str) -> Response:
    """`GET /api/v2/organizations/:org/entitlement-set`: what every Terraform command asks first."""
    row = req.store.get_organization(org, _user(req))
    return jsonapi_response({"data": {"id": row["external_id"], "type": "entitlement-sets", "attributes": {
        "agents": False, "audit-logging": False, "configuration-designer": True, "cost-estimation": False,
        "global-run-tasks": False, "module-tests-generation": False, "operations": True,
        "private-module-registry": True, "private-run-tasks": False, "run-tasks": False, "sentinel": False,
        "single-sign-on": False, "state-storage": True, "teams": True, "vcs-integrations": True,
        "waypoint-actions": False, "waypoint-templates-and-addons": False},
        "links": {"self": f"/api/v2/entitlement-sets/{row['external_id']}"}}})


# --- OAuth clients and tokens (VCS access) ---------------------------------------------------------------

def _oauth_client_doc(req: Request, client: dict[str, Any]) -> dict[str, Any]:
    tokens = req.store.list_oauth_tokens(client["id"])
    return {"id": client["id"], "type": "oauth-clients", "attributes": {
        "created-at": client["created_at"], "callback-url": f"{req.base_url}/auth/{client['id']}/callback",
        "connect-path": f"/auth/{client['id']}?organization_id={client['org']}",
        "service-provider": client["service_provider"],
        "service-provider-display-name": client["service_provider"].replace("_", " ").title(),
        "name": client["name"], "http-url": client["http_url"], "api-url": client["api_url"], "key": None,
        "rsa-public-key": None, "organization-scoped": True},
        "relationships": {"organization": _rel("organizations", client["org"]),
                          "oauth-tokens": {"data": [{"id": t["id"], "type": "oauth-tokens"} for t in tokens]}},
        "links": {"self": f"/api/v2/oauth-clients/{client['id']}"}}


def _oauth_token_doc(token: dict[str, Any]) -> dict[str, Any]:
    return {"id": token["id"], "type": "oauth-tokens", "attributes": {
        "uid": token["uid"], "created-at": token["created_at"], "has-ssh-key": bool(token["has_ssh_key"]),
        "service-provider-user": token["service_provider_user"]},
        "relationships": {"oauth-client": _rel("oauth-clients", token["client_id"])},
        "links": {"self": f"/api/v2/oauth-tokens/{token['id']}"}}


def create_oauth_client(req: Request, org: str) -> Response:
    """`POST /api/v2/organizations/:org/oauth-clients`: 201, with an OAuth token when a token string is given."""
    req.store.get_organization(org, _user(req))
    attrs, _ = parse_resource(req, "oauth-clients")
    for name in ("service-provider", "http-url", "api-url", "oauth-token-string", "name"):
        check_str(attrs, name)
    provider = attrs.get("service-provider")
    if provider not in OAUTH_PROVIDERS:
        raise errors.UnprocessableError("Service provider is not included in the list",
                                        pointer="/data/attributes/service-provider")
    for required in ("http-url", "api-url"):
        if not attrs.get(required):
            raise errors.UnprocessableError(f"{required.replace('-', ' ').capitalize()} can't be blank",
                                            pointer=f"/data/attributes/{required}")
    client = req.store.create_oauth_client(org, service_provider=provider, name=attrs.get("name"),
                                           http_url=attrs["http-url"], api_url=attrs["api-url"],
                                           token_string=attrs.get("oauth-token-string"))
    return jsonapi_response({"data": _oauth_client_doc(req, client)}, 201)


def list_oauth_clients(req: Request, org: str) -> Response:
    """`GET /api/v2/organizations/:org/oauth-clients` (paged)."""
    req.store.get_organization(org, _user(req))
    rows, meta, links = paginate(req, req.store.list_oauth_clients(org))
    return jsonapi_response({"data": [_oauth_client_doc(req, c) for c in rows], "links": links, "meta": meta})


def show_oauth_client(req: Request, client_id: str) -> Response:
    """`GET /api/v2/oauth-clients/:id`."""
    return jsonapi_response({"data": _oauth_client_doc(req, req.store.get_oauth_client(client_id, _user(req)))})


def list_oauth_tokens(req: Request, client_id: str) -> Response:
    """`GET /api/v2/oauth-clients/:id/oauth-tokens` (paged)."""
    req.store.get_oauth_client(client_id, _user(req))
    rows, meta, links = paginate(req, req.store.list_oauth_tokens(client_id))
    return jsonapi_response({"data": [_oauth_token_doc(t) for t in rows], "links": links, "meta": meta})


def show_oauth_token(req: Request, token_id: str) -> Response:
    """`GET /api/v2/oauth-tokens/:id`."""
    return jsonapi_response({"data": _oauth_token_doc(req.store.get_oauth_token(token_id, _user(req)))})


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
        "latest-run": _rel("runs", latest_run["id"] if latest_run else None),
        "locked-by": {"data": locked_by},
        "outputs": {"data": []}, "remote-state-consumers": {
            "links": {"related": f"/api/v2/workspaces/{ws['id']}/relationships/remote-state-consumers"}},
        "vars": {"links": {"related": f"/api/v2/workspaces/{ws['id']}/vars"}}},
        "links": {"self": f"/api/v2/organizations/{org}/workspaces/{ws['name']}",
                  "self-html": f"/app/{org}/workspaces/{ws['name']}"}}


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


def _ws(req: Request, org: str | None = None, name: str | None = None, ws_id: str | None = None) -> dict[str, Any]:
    if ws_id is not None:
        return req.store.get_workspace(ws_id, _user(req))
    return req.store.get_workspace_by_name(org or "", name or "", _user(req))


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


# --- state versions ---------------------------------------------------------------------------------------

def _state_version_doc(req: Request, sv: dict[str, Any]) -> dict[str, Any]:
    finalized = sv["status"] == "finalized"
    return {"id": sv["id"], "type": "state-versions", "attributes": {
        "created-at": sv["created_at"], "serial": sv["serial"], "lineage": sv["lineage"], "md5": sv["md5"],
        "status": sv["status"], "size": len(sv["state"]) if sv["state"] is not None else 0,
        "state-version": sv["state_version"], "terraform-version": sv["terraform_version"],
        "resources-processed": finalized, "modules": None, "providers": None, "resources": [],
        "billable-rum-count": 0, "intermediate": False, "vcs-commit-sha": None, "vcs-commit-url": None,
        "hosted-state-download-url": _archivist(req, sv["download_token"]),
        "hosted-json-state-download-url": _archivist(req, sv["json_download_token"]) if sv["json_state"] else None,
        "hosted-state-upload-url": None if finalized else _archivist(req, sv["upload_token"]),
        "hosted-json-state-upload-url": _archivist(req, sv["json_upload_token"])},
        "relationships": {"workspace": _rel("workspaces", sv["workspace_id"]), "run": _rel("runs", sv["run_id"]),
                          "created-by": _rel("users", sv["created_by"]), "outputs": {"data": []}},
        "links": {"self": f"/api/v2/state-versions/{sv['id']}"}}


def current_state_version(req: Request, ws_id: str) -> Response:
    """`GET /api/v2/workspaces/:id/current-state-version`: 404 when the workspace has no state."""
    ws = _ws(req, ws_id=ws_id)
    sv = req.store.current_state_version(ws["id"])
    if sv is None:
        raise errors.NotFoundError()
    return jsonapi_response({"data": _state_version_doc(req, sv)})


def show_state_version(req: Request, sv_id: str) -> Response:
    """`GET /api/v2/state-versions/:id`."""
    return jsonapi_response({"data": _state_version_doc(req, req.store.get_state_version(sv_id, _user(req)))})


def list_workspace_state_versions(req: Request, ws_id: str) -> Response:
    """`GET /api/v2/workspaces/:id/state-versions` (paged, newest first)."""
    ws = _ws(req, ws_id=ws_id)
    rows, meta, links = paginate(req, req.store.list_state_versions(ws["id"]))
    return jsonapi_response({"data": [_state_version_doc(req, s) for s in rows], "links": links, "meta": meta})


def list_state_versions(req: Request) -> Response:
    """`GET /api/v2/state-versions?filter[workspace][name]=&filter[organization][name]=` (paged)."""
    org = req.query.get("filter[organization][name]")
    name = req.query.get("filter[workspace][name]")
    if not org or not name:
        raise errors.UnprocessableError("filter[organization][name] and filter[workspace][name] are required",
                                        pointer="/filter")
    ws = req.store.get_workspace_by_name(org, name, _user(req))
    rows, meta, links = paginate(req, req.store.list_state_versions(ws["id"]))
    return jsonapi_response({"data": [_state_version_doc(req, s) for s in rows], "links": links, "meta": meta})


def create_state_version(req: Request, ws_id: str) -> Response:
    """`POST /api/v2/workspaces/:id/state-versions`: inline (`state`, base64) or for a hosted upload.

    201 with upload URLs; 409 when not locked by the uploader or for lineage/serial/md5 conflicts.
    """
    ws = _ws(req, ws_id=ws_id)
    attrs, rels = parse_resource(req, "state-versions")
    serial, md5 = attrs.get("serial"), attrs.get("md5")
    if serial is None:
        raise errors.UnprocessableError("Serial can't be blank", pointer="/data/attributes/serial")
    if not isinstance(serial, int) or isinstance(serial, bool) or serial < 0:
        raise errors.UnprocessableError("Serial must be a non-negative integer", pointer="/data/attributes/serial")
    if not md5:
        raise errors.UnprocessableError("Md5 can't be blank", pointer="/data/attributes/md5")
    if not isinstance(md5, str) or len(md5) != 32 or any(c not in "0123456789abcdef" for c in md5.lower()):
        raise errors.UnprocessableError("Md5 is invalid", pointer="/data/attributes/md5")
    check_str(attrs, "lineage")
    check_bool(attrs, "force")
    state = _b64(attrs, "state")
    json_state = _b64(attrs, "json-state")
    outputs = attrs.get("json-state-outputs")
    run_id = relationship_id(rels, "run", "runs")
    sv, created = req.store.create_state_version(
        ws, _user(req), serial=serial, md5=md5.lower(), lineage=attrs.get("lineage"), state=state,
        json_state=json_state, json_state_outputs=outputs if isinstance(outputs, str) else None,
        force=bool(attrs.get("force")), run_id=run_id)
    return jsonapi_response({"data": _state_version_doc(req, sv)}, 201 if created else 200)


def _b64(attrs: dict[str, Any], name: str) -> bytes | None:
    value = attrs.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise errors.UnprocessableError(f"{name} must be a base64 string", pointer=f"/data/attributes/{name}")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise errors.UnprocessableError(f"{name} is not valid base64", pointer=f"/data/attributes/{name}") from exc


# --- archivist (hosted upload/download URLs; the token in the URL is the authorisation) --------------------

def archivist_put(req: Request, token: str) -> Response:
    """`PUT /_archivist/v1/object/:token`: store uploaded state, JSON state or configuration tarball."""
    blob = req.store.blob(token)
    if blob is None or blob["direction"] != "upload":
        raise errors.NotFoundError()
    if blob["kind"] in ("state", "json-state"):
        req.store.upload_state(blob["owner_id"], blob["kind"], req.body)
    elif blob["kind"] == "cv":
        req.store.upload_configuration(blob["owner_id"], req.body)
    elif blob["kind"] == "legacy-cv":
        env_id, version = blob["owner_id"].rsplit(":", 1)
        req.store.upload_legacy_configuration(env_id, int(version), req.body)
    else:
        raise errors.NotFoundError()
    return Response(200)


def archivist_get(req: Request, token: str) -> Response:
    """`GET /_archivist/v1/object/:token`: download state, JSON state, plan JSON or plan log."""
    blob = req.store.blob(token)
    if blob is None or blob["direction"] != "download":
        raise errors.NotFoundError()
    data: bytes | None
    ctype = "application/octet-stream"
    if blob["kind"] in ("state", "json-state"):
        data = req.store.state_version_bytes(blob["owner_id"], json_state=blob["kind"] == "json-state")
    elif blob["kind"] == "plan-json":
        plan = req.store.plan_by_id(blob["owner_id"])
        data, ctype = (plan["json_output"] if plan else None), "application/json"
    elif blob["kind"] == "plan-log":
        plan = req.store.plan_by_id(blob["owner_id"])
        data, ctype = ((plan["log"] or "").encode() if plan else None), "text/plain"
    else:
        data = None
    if data is None:
        raise errors.NotFoundError()
    return Response(200, bytes(data), {"Content-Type": ctype})


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


# --- configuration versions -------------------------------------------------------------------------------

def _cv_doc(req: Request, cv: dict[str, Any]) -> dict[str, Any]:
    return {"id": cv["id"], "type": "configuration-versions", "attributes": {
        "auto-queue-runs": bool(cv["auto_queue_runs"]), "error": None, "error-message": None,
        "source": cv["source"], "speculative": bool(cv["speculative"]), "status": cv["status"],
        "status-timestamps": {}, "changed-files": [], "provisional": False,
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
