"""Handlers of the new API for organizations and their VCS connections (OAuth clients and tokens)."""

from __future__ import annotations

from typing import Any

from runbook_lib.sandbox import documents, errors
from runbook_lib.sandbox.tfe_api import EXECUTION_MODES, OAUTH_PROVIDERS, _rel, _user
from runbook_lib.sandbox.wire import (Request, Response, includes, check_bool, check_str, jsonapi_response, paginate,
                                     parse_resource, relationship_id)


# --- organizations -------------------------------------------------------------------------------------

@documents.renders("organizations")
def _org_render(req: Request, org: dict[str, Any]) -> dict[str, Any]:
    return _org_doc(req, org)


def _org_doc(req: Request, org: dict[str, Any]) -> dict[str, Any]:
    # Attributes and relationships as go-tfe `organization.go` (struct Organization) decodes them. A
    # Terraform Enterprise organization is never on a trial (`trial-expires-at` null); the remaining
    # testable count is an HCP allowance the sandbox does not meter, answered as its free-tier figure.
    # The settings of behaviour the sandbox does not model answer the only value it takes (params.py).
    settings = req.store.org_settings(org)
    return {"id": org["name"], "type": "organizations", "attributes": {
        "name": org["name"], "email": org["email"], "external-id": org["external_id"],
        "created-at": org["created_at"], "trial-expires-at": None, "remaining-testable-count": 5,
        "collaborator-auth-policy": "password",
        # kept as set; no run is cost-estimated all the same, as on a Terraform Enterprise whose site admin has
        # not enabled the integration (organizations.mdx `cost-estimation-enabled`: "In Terraform Enterprise, you
        # must also enable cost estimation in Site Administration"; the entitlement set says `cost-estimation`
        # false)
        "cost-estimation-enabled": settings["cost-estimation-enabled"],
        "send-passing-statuses-for-untriggered-speculative-plans": False,
        "aggregated-commit-status-enabled": False, "speculative-plan-management-enabled": False,
        "assessments-enforced": False,
        "allow-force-delete-workspaces": settings["allow-force-delete-workspaces"],
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


@documents.renders("projects")
def _project_render(req: Request, project: dict[str, Any]) -> dict[str, Any]:
    return _project_doc(project)


def _project_doc(project: dict[str, Any]) -> dict[str, Any]:
    return {"id": project["id"], "type": "projects", "attributes": {
        "name": project["name"], "created-at": project["created_at"], "description": project.get("description"),
        "auto-destroy-activity-duration": None},
        "relationships": {"organization": _rel("organizations", project["org"])},
        "links": {"self": f"/api/v2/projects/{project['id']}"}}


#: `?include=` values served on an organization: `entitlement_set` (organizations.mdx "Available Related
#: Resources"), `default-project` (go-tfe `organization.go` OrganizationIncludeOpt; `default_project` too).
ORGANIZATION_INCLUDES = ("entitlement_set", "default-project", "default_project")


def _org_document(req: Request, data: Any, rows: list[dict[str, Any]]) -> dict[str, Any]:
    asked = includes(req, ORGANIZATION_INCLUDES, f"organizations include {', '.join(ORGANIZATION_INCLUDES)}")
    doc: dict[str, Any] = {"data": data}
    if asked:
        included = []
        for row in rows:
            if "entitlement_set" in asked:
                included.append(_entitlements_doc(row))
            if {"default-project", "default_project"} & set(asked) and row["default_project_id"]:
                project = req.store.find_project(row["default_project_id"])
                if project:
                    included.append(_project_doc(project))
        doc["included"] = included
    return doc


def _matches(value: str | None, needle: str) -> bool:
    return needle.lower() in (value or "").lower()


def list_organizations(req: Request) -> Response:
    """`GET /api/v2/organizations`: the organizations the token's user belongs to (paged). `q` searches name and
    email, and takes precedence over `q[name]` and `q[email]`, which must both match (organizations.mdx "List
    Organizations"); a search is a case-insensitive substring."""
    rows = req.store.list_organizations(_user(req))
    query, by_name, by_email = req.query.get("q"), req.query.get("q[name]"), req.query.get("q[email]")
    if query:
        rows = [o for o in rows if _matches(o["name"], query) or _matches(o["email"], query)]
    else:
        rows = [o for o in rows if (not by_name or _matches(o["name"], by_name))
                and (not by_email or _matches(o["email"], by_email))]
    rows, meta, links = paginate(req, rows)
    doc = _org_document(req, [_org_doc(req, o) for o in rows], rows)
    doc.update(links=links, meta=meta)
    return jsonapi_response(doc)


def _org_settings(req: Request, attrs: dict[str, Any], rels: dict[str, Any], mode: str, org_name: str | None,
                  fields: dict[str, Any]) -> None:
    """The settings a create or update sets, into `fields` (columns, plus `allow_force_delete`)."""
    for name in ("session-timeout", "session-remember"):
        if name in attrs:
            value = attrs[name]
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise errors.UnprocessableError(f"{name} must be a positive number of minutes",
                                                pointer=f"/data/attributes/{name}")
            fields[name.replace("-", "_")] = value
    for name in ("allow-force-delete-workspaces", "cost-estimation-enabled", "stacks-enabled"):
        check_bool(attrs, name)
    kept = {k: attrs[k] for k in ("allow-force-delete-workspaces", "cost-estimation-enabled") if k in attrs}
    if kept:
        fields["settings"] = kept
    if mode not in EXECUTION_MODES:
        raise errors.UnprocessableError("Default execution mode is not included in the list",
                                        pointer="/data/attributes/default-execution-mode")
    # the default agent pool: the attribute organizations.mdx documents, or go-tfe's relationship
    check_str(attrs, "default-agent-pool-id")
    pool_id, pointer = attrs.get("default-agent-pool-id"), "/data/attributes/default-agent-pool-id"
    if "default-agent-pool" in rels and (rels["default-agent-pool"] or {}).get("data") is not None:
        pool_id, pointer = relationship_id(rels, "default-agent-pool", "agent-pools"), \
            "/data/relationships/default-agent-pool"
    if pool_id:
        # organizations.mdx: "Do _not_ specify this value if you set `execution-mode` to `remote` or `local`"
        if mode != "agent":
            raise errors.UnprocessableError(
                "Default agent pool must not be specified unless using 'agent' execution mode", pointer=pointer)
        pool = req.store.get_agent_pool(pool_id, _user(req))
        if org_name is None or pool["org"] != org_name:
            raise errors.NotFoundError()
        fields["default_agent_pool_id"] = pool["id"]
    elif mode != "agent":
        fields["default_agent_pool_id"] = None
    elif org_name is None:
        # "Required when `default-execution-mode` is set to `agent`": a new organization has no pool yet
        raise errors.UnprocessableError("Default agent pool is required when the default execution mode is agent; "
                                        "create the organization, then a pool, then set both", pointer=pointer)


def create_organization(req: Request) -> Response:
    """`POST /api/v2/organizations` {name, email, ...}: 201; names are global (legacy ones included)."""
    attrs, rels = parse_resource(req, "organizations")
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
    fields: dict[str, Any] = {}
    mode = attrs.get("default-execution-mode", "remote")
    _org_settings(req, attrs, rels, mode, None, fields)
    org = req.store.create_organization(attrs["name"], email, _user(req), default_execution_mode=mode)
    fields.pop("default_agent_pool_id", None)
    org = req.store.update_organization(org, fields)
    return jsonapi_response({"data": _org_doc(req, org)}, 201)


def show_organization(req: Request, org: str) -> Response:
    """`GET /api/v2/organizations/:org` (`?include=entitlement_set,default-project`)."""
    row = req.store.get_organization(org, _user(req))
    return jsonapi_response(_org_document(req, _org_doc(req, row), [row]))


def update_organization(req: Request, org: str) -> Response:
    """`PATCH /api/v2/organizations/:org`: name (a rename), email, session settings, default execution
    mode and agent pool, whether workspace admins may force delete (organizations.mdx "Update an
    Organization"); attributes left out keep their values."""
    row = req.store.get_organization(org, _user(req))
    attrs, rels = parse_resource(req, "organizations")
    fields: dict[str, Any] = {}
    for name in ("name", "email", "default-execution-mode"):
        check_str(attrs, name, nullable=False)
        if name in attrs:
            fields[name.replace("-", "_")] = attrs[name]
    if "email" in fields and "@" not in fields["email"]:
        raise errors.UnprocessableError("Email is invalid", pointer="/data/attributes/email")
    _org_settings(req, attrs, rels, fields.get("default_execution_mode", row["default_execution_mode"]), row["name"],
                  fields)
    updated = req.store.update_organization(row, fields)
    return jsonapi_response({"data": _org_doc(req, updated)})


# --- projects (projects.mdx): create, read, list, delete; a workspace's `project` relationship ------------

def create_project(req: Request, org: str) -> Response:
    """`POST /api/v2/organizations/:org/projects` {name, description}: 201; 422 for a blank, invalid or taken
    name."""
    req.store.get_organization(org, _user(req))
    attrs, _ = parse_resource(req, "projects")
    check_str(attrs, "description")
    return jsonapi_response({"data": _project_doc(req.store.create_project(org, attrs.get("name"),
                                                                           attrs.get("description")))}, 201)


def _visible_project(req: Request, project_id: str) -> dict[str, Any]:
    project = req.store.find_project(project_id)
    if project is None:
        raise errors.NotFoundError()
    req.store.get_organization(project["org"], _user(req))  # 404 unless the caller sees its organization
    return project


def _project_permission(req: Request, permission: str) -> bool:
    """Whether the caller may create workspaces in (or update) every project of its organization: a person
    may (the sandbox's users are owners); a team token with the organization access that grants it
    (permissions.mdx "Manage all workspaces", "Manage all projects"); no project grants anything of its own
    (project team access is not modelled)."""
    team = req.store.token_team(_user(req))
    if team is None:
        return True
    org_access = req.store.team_settings(team)["organization-access"]
    if permission == "update":
        return bool(org_access.get("manage-projects"))
    return bool(org_access.get("manage-workspaces") or org_access.get("manage-projects"))


def list_projects(req: Request, org: str) -> Response:
    """`GET /api/v2/organizations/:org/projects` (paged; projects.mdx "List projects"): `filter[names]`
    (case-insensitive names, any of them) wins over `q` (a case-insensitive substring of the name);
    `filter[permissions][create-workspace]` and `filter[permissions][update]` keep the projects the caller may
    create workspaces in or update; `sort` by `name` or `-name` (the sandbox's default order is by name)."""
    req.store.get_organization(org, _user(req))
    rows = req.store.list_projects(org)
    names = [n.lower() for n in (req.query.get("filter[names]") or "").split(",") if n]
    query = (req.query.get("q") or "").lower()
    if names:
        rows = [p for p in rows if p["name"].lower() in names]
    elif query:
        rows = [p for p in rows if query in p["name"].lower()]
    for permission in ("create-workspace", "update"):
        if f"filter[permissions][{permission}]" in req.query and not _project_permission(req, permission):
            rows = []
    sort = req.query.get("sort") or "name"
    if sort not in ("name", "-name"):
        raise errors.BadRequestError(f"Invalid sort parameter {sort!r}: projects sort on name, or -name to reverse")
    rows = sorted(rows, key=lambda p: p["name"], reverse=sort == "-name")
    rows, meta, links = paginate(req, rows)
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
    """`GET /api/v2/agent-pools/:id` (`?include=workspaces`: the workspaces whose runs use it, agents.mdx
    "Available Related Resources")."""
    pool = req.store.get_agent_pool(pool_id, _user(req))
    asked = includes(req, ("workspaces",), "agent pools include workspaces")
    using = [w for w in req.store.list_workspaces(pool["org"]) if req.store.workspace_agent_pool(w) == pool["id"]]
    doc = _agent_pool_doc(pool)
    doc["relationships"]["workspaces"] = {"data": [{"id": w["id"], "type": "workspaces"} for w in using]}
    answer: dict[str, Any] = {"data": doc}
    if asked:
        answer["included"] = [documents.render(req, "workspaces", w) for w in using]
    return jsonapi_response(answer)


def delete_agent_pool(req: Request, pool_id: str) -> Response:
    """`DELETE /api/v2/agent-pools/:id`: 204."""
    req.store.delete_agent_pool(pool_id, _user(req))
    return Response(204)


def entitlement_set(req: Request, org: str) -> Response:
    """`GET /api/v2/organizations/:org/entitlement-set`: what every Terraform command asks first."""
    return jsonapi_response({"data": _entitlements_doc(req.store.get_organization(org, _user(req)))})


def _entitlements_doc(row: dict[str, Any]) -> dict[str, Any]:
    return {"id": row["external_id"], "type": "entitlement-sets", "attributes": {
        "agents": False, "audit-logging": False, "configuration-designer": True, "cost-estimation": False,
        "global-run-tasks": False, "module-tests-generation": False, "operations": True,
        "private-module-registry": True, "private-run-tasks": False, "run-tasks": False, "sentinel": False,
        "single-sign-on": False, "state-storage": True, "teams": True, "vcs-integrations": True,
        "waypoint-actions": False, "waypoint-templates-and-addons": False},
        "links": {"self": f"/api/v2/entitlement-sets/{row['external_id']}"}}


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
                          "oauth-tokens": {"data": [{"id": t["id"], "type": "oauth-tokens"} for t in tokens]},
                          "projects": {"data": []}},
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


#: `?include=` on OAuth clients (oauth-clients.mdx "Available Related Resources"; go-tfe `oauth_client.go`).
#: A client is scoped to its whole organization (params.py refuses project scoping), so `projects` is empty.
OAUTH_CLIENT_INCLUDES = ("oauth_tokens", "projects")


def _oauth_document(req: Request, data: Any, clients: list[dict[str, Any]]) -> dict[str, Any]:
    asked = includes(req, OAUTH_CLIENT_INCLUDES, f"OAuth clients include {', '.join(OAUTH_CLIENT_INCLUDES)}")
    doc: dict[str, Any] = {"data": data}
    if asked:
        doc["included"] = [_oauth_token_doc(t) for c in clients for t in req.store.list_oauth_tokens(c["id"])] \
            if "oauth_tokens" in asked else []
    return doc


def list_oauth_clients(req: Request, org: str) -> Response:
    """`GET /api/v2/organizations/:org/oauth-clients` (paged; `include=oauth_tokens,projects`)."""
    req.store.get_organization(org, _user(req))
    rows, meta, links = paginate(req, req.store.list_oauth_clients(org))
    doc = _oauth_document(req, [_oauth_client_doc(req, c) for c in rows], rows)
    doc.update(links=links, meta=meta)
    return jsonapi_response(doc)


def show_oauth_client(req: Request, client_id: str) -> Response:
    """`GET /api/v2/oauth-clients/:id` (`include=oauth_tokens,projects`)."""
    client = req.store.get_oauth_client(client_id, _user(req))
    return jsonapi_response(_oauth_document(req, _oauth_client_doc(req, client), [client]))


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


