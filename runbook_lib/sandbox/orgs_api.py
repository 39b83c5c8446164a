"""Handlers of the new API for organizations and their VCS connections (OAuth clients and tokens)."""

from __future__ import annotations

from typing import Any

from runbook_lib.sandbox import documents, errors
from runbook_lib.sandbox.tfe_api import EXECUTION_MODES, OAUTH_PROVIDERS, _rel, _user
from runbook_lib.sandbox.wire import (Request, Response, check_str, jsonapi_response, paginate, parse_resource,
                                      relationship_id)


# --- organizations -------------------------------------------------------------------------------------

@documents.renders("organizations")
def _org_render(req: Request, org: dict[str, Any]) -> dict[str, Any]:
    return _org_doc(org)


def _org_doc(org: dict[str, Any]) -> dict[str, Any]:
    # Attributes and relationships as go-tfe `organization.go` (struct Organization) decodes them. A
    # Terraform Enterprise organization is never on a trial (`trial-expires-at` null); the remaining
    # testable count is an HCP allowance the sandbox does not meter, answered as its free-tier figure.
    return {"id": org["name"], "type": "organizations", "attributes": {
        "name": org["name"], "email": org["email"], "external-id": org["external_id"],
        "created-at": org["created_at"], "trial-expires-at": None, "remaining-testable-count": 5,
        "collaborator-auth-policy": "password", "cost-estimation-enabled": False,
        "session-timeout": org["session_timeout"], "session-remember": org["session_remember"],
        "saml-enabled": False, "two-factor-conformant": True,
        "owners-team-saml-role-id": None, "default-execution-mode": org["default_execution_mode"],
        "permissions": {"can-update": True, "can-destroy": True, "can-access-via-teams": True,
                        "can-create-module": True, "can-create-team": True, "can-create-workspace": True,
                        "can-manage-users": True, "can-manage-subscription": True, "can-manage-sso": False,
                        "can-update-oauth": True, "can-update-sentinel": False, "can-update-ssh-keys": True,
                        "can-update-api-token": True, "can-traverse": True, "can-start-trial": False,
                        "can-update-agent-pools": False, "can-manage-tags": True, "can-create-project": True}},
        "relationships": {"oauth-tokens": {"links": {"related": f"/api/v2/organizations/{org['name']}/oauth-tokens"}},
                          "authentication-token": {"links": {
                              "related": f"/api/v2/organizations/{org['name']}/authentication-token"}},
                          "default-project": _rel("projects", org["default_project_id"]),
                          "default-agent-pool": _rel("agent-pools", org["default_agent_pool_id"])},
        "links": {"self": f"/api/v2/organizations/{org['name']}"}}


def _project_doc(project: dict[str, Any]) -> dict[str, Any]:
    return {"id": project["id"], "type": "projects", "attributes": {
        "name": project["name"], "created-at": project["created_at"], "description": None,
        "auto-destroy-activity-duration": None},
        "relationships": {"organization": _rel("organizations", project["org"])},
        "links": {"self": f"/api/v2/projects/{project['id']}"}}


#: `?include=` values served on an organization (go-tfe `organization.go` OrganizationIncludeOpt spells it
#: `default-project`; the underscore form of other includes is accepted too).
ORGANIZATION_INCLUDES = ("default-project", "default_project")


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
    # `default-execution-mode` may be set at creation too (go-tfe `organization.go` OrganizationCreateOptions
    # DefaultExecutionMode: "the default execution mode for workspaces"); `remote` when left out.
    check_str(attrs, "default-execution-mode", nullable=False)
    mode = attrs.get("default-execution-mode", "remote")
    if mode not in EXECUTION_MODES:
        raise errors.UnprocessableError("Default execution mode is not included in the list",
                                        pointer="/data/attributes/default-execution-mode")
    org = req.store.create_organization(attrs["name"], email, _user(req), default_execution_mode=mode)
    return jsonapi_response({"data": _org_doc(org)}, 201)


def show_organization(req: Request, org: str) -> Response:
    """`GET /api/v2/organizations/:org` (`?include=default_project` adds the default project)."""
    row = req.store.get_organization(org, _user(req))
    includes = [i for i in (req.query.get("include") or "").split(",") if i]
    unknown = [i for i in includes if i not in ORGANIZATION_INCLUDES]
    if unknown:
        raise errors.BadRequestError(f"Invalid include parameter: {', '.join(unknown)}")
    doc: dict[str, Any] = {"data": _org_doc(row)}
    if includes:
        project = req.store.find_project(row["default_project_id"]) if row["default_project_id"] else None
        doc["included"] = [_project_doc(project)] if project else []
    return jsonapi_response(doc)


def update_organization(req: Request, org: str) -> Response:
    """`PATCH /api/v2/organizations/:org`: name (a rename), email, session settings, default execution
    mode and agent pool (organizations.mdx "Update an Organization"); attributes left out keep their values."""
    row = req.store.get_organization(org, _user(req))
    attrs, rels = parse_resource(req, "organizations")
    fields: dict[str, Any] = {}
    for name in ("name", "email", "default-execution-mode"):
        check_str(attrs, name, nullable=False)
        if name in attrs:
            fields[name.replace("-", "_")] = attrs[name]
    if "email" in fields and "@" not in fields["email"]:
        raise errors.UnprocessableError("Email is invalid", pointer="/data/attributes/email")
    for name in ("session-timeout", "session-remember"):
        if name in attrs:
            value = attrs[name]
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise errors.UnprocessableError(f"{name} must be a positive number of minutes",
                                                pointer=f"/data/attributes/{name}")
            fields[name.replace("-", "_")] = value
    mode = fields.get("default_execution_mode", row["default_execution_mode"])
    if mode not in EXECUTION_MODES:
        raise errors.UnprocessableError("Default execution mode is not included in the list",
                                        pointer="/data/attributes/default-execution-mode")
    if "default-agent-pool" in rels and (rels["default-agent-pool"] or {}).get("data") is not None:
        pool_id = relationship_id(rels, "default-agent-pool", "agent-pools")
        # organizations.mdx: the default agent pool is only meaningful in agent execution mode.
        if mode != "agent":
            raise errors.UnprocessableError(
                "Default agent pool must not be specified unless using 'agent' execution mode",
                pointer="/data/relationships/default-agent-pool")
        pool = req.store.get_agent_pool(pool_id or "", _user(req))
        if pool["org"] != row["name"]:
            raise errors.NotFoundError()
        fields["default_agent_pool_id"] = pool["id"]
    elif mode != "agent":
        fields["default_agent_pool_id"] = None
    updated = req.store.update_organization(row, fields)
    return jsonapi_response({"data": _org_doc(updated)})


# --- projects (projects.mdx): create, read, list, delete; a workspace's `project` relationship ------------

def create_project(req: Request, org: str) -> Response:
    """`POST /api/v2/organizations/:org/projects` {name}: 201; 422 for a blank, invalid or taken name."""
    req.store.get_organization(org, _user(req))
    attrs, _ = parse_resource(req, "projects")
    return jsonapi_response({"data": _project_doc(req.store.create_project(org, attrs.get("name")))}, 201)


def _visible_project(req: Request, project_id: str) -> dict[str, Any]:
    project = req.store.find_project(project_id)
    if project is None:
        raise errors.NotFoundError()
    req.store.get_organization(project["org"], _user(req))  # 404 unless the caller sees its organization
    return project


def list_projects(req: Request, org: str) -> Response:
    """`GET /api/v2/organizations/:org/projects` (paged)."""
    req.store.get_organization(org, _user(req))
    rows, meta, links = paginate(req, req.store.list_projects(org))
    return jsonapi_response({"data": [_project_doc(p) for p in rows], "links": links, "meta": meta})


def show_project(req: Request, project_id: str) -> Response:
    """`GET /api/v2/projects/:id`."""
    return jsonapi_response({"data": _project_doc(_visible_project(req, project_id))})


def delete_project(req: Request, project_id: str) -> Response:
    """`DELETE /api/v2/projects/:id`: 204; 409 for the default project or one that holds workspaces."""
    project = _visible_project(req, project_id)
    req.store.delete_project(project, len(req.store.project_workspaces(project)))
    return Response(204)


def delete_organization(req: Request, org: str) -> Response:
    """`DELETE /api/v2/organizations/:org`: 204; its workspaces, states, runs and VCS connections go with it."""
    row = req.store.get_organization(org, _user(req))
    req.store.delete_organization(row["name"])
    return Response(204)


# --- agent pools (agents.mdx): only what an organization's default-agent-pool setting needs ----------

def _agent_pool_doc(pool: dict[str, Any]) -> dict[str, Any]:
    return {"id": pool["id"], "type": "agent-pools", "attributes": {
        "name": pool["name"], "created-at": pool["created_at"], "agent-count": 0, "organization-scoped": True},
        "relationships": {"organization": _rel("organizations", pool["org"]), "workspaces": {"data": []},
                          "allowed-workspaces": {"data": []}},
        "links": {"self": f"/api/v2/agent-pools/{pool['id']}"}}


def create_agent_pool(req: Request, org: str) -> Response:
    """`POST /api/v2/organizations/:org/agent-pools` {name}: 201."""
    row = req.store.get_organization(org, _user(req))
    attrs, _ = parse_resource(req, "agent-pools")
    check_str(attrs, "name")
    return jsonapi_response({"data": _agent_pool_doc(req.store.create_agent_pool(row["name"],
                                                                                 attrs.get("name") or ""))}, 201)


def show_agent_pool(req: Request, pool_id: str) -> Response:
    """`GET /api/v2/agent-pools/:id`."""
    return jsonapi_response({"data": _agent_pool_doc(req.store.get_agent_pool(pool_id, _user(req)))})


def delete_agent_pool(req: Request, pool_id: str) -> Response:
    """`DELETE /api/v2/agent-pools/:id`: 204."""
    req.store.delete_agent_pool(pool_id, _user(req))
    return Response(204)


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
        "uid": token["uid"] or None, "created-at": token["created_at"], "has-ssh-key": bool(token["has_ssh_key"]),
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


def delete_oauth_client(req: Request, client_id: str) -> Response:
    """`DELETE /api/v2/oauth-clients/:id`: 204; its OAuth tokens go with it (oauth-clients.mdx)."""
    req.store.delete_oauth_client(client_id, _user(req))
    return Response(204)


def list_org_oauth_tokens(req: Request, org: str) -> Response:
    """`GET /api/v2/organizations/:org/oauth-tokens` (paged; oauth-tokens.mdx, go-tfe `oauth_token.go` List)."""
    row = req.store.get_organization(org, _user(req))
    rows, meta, links = paginate(req, req.store.list_org_oauth_tokens(row["name"]))
    return jsonapi_response({"data": [_oauth_token_doc(t) for t in rows], "links": links, "meta": meta})


def list_oauth_tokens(req: Request, client_id: str) -> Response:
    """`GET /api/v2/oauth-clients/:id/oauth-tokens` (paged)."""
    req.store.get_oauth_client(client_id, _user(req))
    rows, meta, links = paginate(req, req.store.list_oauth_tokens(client_id))
    return jsonapi_response({"data": [_oauth_token_doc(t) for t in rows], "links": links, "meta": meta})


def show_oauth_token(req: Request, token_id: str) -> Response:
    """`GET /api/v2/oauth-tokens/:id`."""
    return jsonapi_response({"data": _oauth_token_doc(req.store.get_oauth_token(token_id, _user(req)))})


