"""What each `/api/v2` route takes, and the refusal of everything else.

A rehearsal that quietly does less than asked looks like success. So every query parameter and request-body
key a route receives is either one it honours as TFE documents it, or refused with a 4xx that names it (400
for a query parameter, 422 for a body key) and says why. `TAKES` declares, per route (method and path
template as `routes.py` writes them):

- `query`: the query parameters it honours (`include` when it serves related resources; the handler checks
  the include values and answers 400 for one it does not serve);
- `body`: the request-body keys it honours: an attribute by name (`name`), a key inside an object attribute
  as `vcs-repo.branch`, a relationship as `relationships.project`, a key of a plain JSON body as itself
  (`comment`);
- `only`: body keys honoured for some values only (a setting whose other values ask for behaviour the
  sandbox does not model): key -> (the values it takes, why the others are refused);
- `refused`: documented keys it does not model, with the reason (the refusal names the key and gives it).

A key in none of them is not a parameter of the route: refused too, naming it. Documented keys are those of
the API pages (`tests/conformance/documented_parameters.json`, made from hashicorp/terraform-docs-common);
`sources` cites where an honoured key the pages do not list comes from (go-tfe, Terraform). The test
`tests/sandbox/test_every_documented_parameter.py` sends every documented key of every route and holds each
to one or the other.

The server checks query parameters before the handler runs (`check_query`); `wire.parse_resource` checks a
JSON:API body's attributes and relationships (`check_body`), one level into object attributes; handlers of
plain JSON bodies check theirs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Mapping

from runbook_lib.sandbox import errors

PAGE = ("page[number]", "page[size]")


@dataclass(frozen=True)
class Takes:
    """One route's parameters (see the module docstring)."""

    query: tuple[str, ...] = ()
    body: tuple[str, ...] = ()
    only: Mapping[str, tuple[tuple[Any, ...], str]] = field(default_factory=dict)
    refused: Mapping[str, str] = field(default_factory=dict)
    sources: Mapping[str, str] = field(default_factory=dict)

    def honours(self, key: str) -> bool:
        return key in self.query or key in self.body or key in self.only


# --- shared declarations ------------------------------------------------------------------------------------

_RUN_LIST_QUERY = (*PAGE, "include", "filter[operation]", "filter[status]", "filter[agent_pool_names]",
                   "filter[source]", "filter[status_group]", "filter[timeframe]", "search[user]", "search[commit]",
                   "search[basic]")

_ORG_BODY = ("name", "email", "session-timeout", "session-remember", "default-execution-mode",
             "default-agent-pool-id", "allow-force-delete-workspaces", "relationships.default-agent-pool",
             # kept and answered; runs are not cost-estimated, as on a TFE whose site admin left the integration
             # off (organizations.mdx: "In Terraform Enterprise, you must also enable cost estimation in Site
             # Administration"; the entitlement set answers `cost-estimation` false)
             "cost-estimation-enabled", "stacks-enabled")
_ORG_ONLY = {
    "collaborator-auth-policy": (("password",), "two-factor authentication is not modelled: the sandbox's users "
                                 "sign in with tokens only"),
    "send-passing-statuses-for-untriggered-speculative-plans": (
        (False,), "the sandbox's VCS receives no commit statuses"),
    "aggregated-commit-status-enabled": ((False,), "the sandbox's VCS receives no commit statuses"),
    "speculative-plan-management-enabled": ((False,), "the sandbox does not cancel plan-only runs of outdated "
                                            "commits"),
    "owners-team-saml-role-id": ((None,), "SAML single sign-on is not modelled"),
    "assessments-enforced": ((False,), "health assessments are not modelled: no workspace is assessed"),
}
_ORG_SOURCES = {"relationships.default-agent-pool": "go-tfe `organization.go` OrganizationUpdateOptions "
                                                    "DefaultAgentPool (the relationship form of default-agent-pool-id)",
                "stacks-enabled": "go-tfe `helper_test.go` createOrganization sends it; the sandbox serves no stacks "
                                  "route (404), so the flag has nothing to switch on"}

_WS_BODY = ("name", "agent-pool-id", "allow-destroy-plan", "auto-apply", "auto-destroy-at", "description", "execution-mode",
            "file-triggers-enabled", "operations", "queue-all-runs", "source-name", "source-url",
            "speculative-enabled", "terraform-version", "trigger-patterns", "trigger-prefixes", "vcs-repo",
            "vcs-repo.branch", "vcs-repo.identifier", "vcs-repo.oauth-token-id", "working-directory",
            "setting-overwrites", "setting-overwrites.execution-mode", "setting-overwrites.agent-pool",
            "relationships.project", "structured-run-output-enabled", "tag-names", "relationships.tags",
            "migration-environment")
#: create only: a workspace's source and the host's own import (workspaces.mdx "Update a Workspace" lists neither)
_WS_CREATE_ONLY = ("source-name", "source-url", "migration-environment")
_WS_UPDATE_BODY = tuple(k for k in _WS_BODY if k not in _WS_CREATE_ONLY)
_WS_ONLY = {
    "assessments-enabled": ((False,), "health assessments are not modelled: no workspace is assessed"),
    "auto-apply-run-trigger": ((False,), "run triggers are not modelled"),
    "auto-destroy-activity-duration": ((None,), "destroy runs after inactivity are not modelled"),
    "global-remote-state": ((True,), "remote state consumers are not modelled: every run of the organization may "
                            "read every workspace's state"),
    "vcs-repo.ingress-submodules": ((False, None), "the sandbox's repositories are ingested without submodules"),
    "vcs-repo.tags-regex": ((None,), "runs triggered by git tags are not modelled"),
}
_WS_REFUSED = {
    "vcs-repo.github-app-installation-id": "GitHub App connections are not modelled; use an OAuth token",
    "relationships.tag-bindings": "key-value tag bindings are not modelled; the sandbox keeps flat tags (tag-names)",
}
_WS_SOURCES = {
    "structured-run-output-enabled": "go-tfe `workspace.go` WorkspaceCreateOptions StructuredRunOutputEnabled",
    "tag-names": "go-tfe `workspace.go` Workspace TagNames; workspaces.mdx sample responses",
    "relationships.tags": "go-tfe `workspace.go` WorkspaceCreateOptions Tags",
    "migration-environment": "the 2018 workspaces page (terraform-website `workspaces.html.md`, Create a Workspace)",
}
_WS_INCLUDE_QUERY = ("include",)

_VAR_BODY = ("key", "value", "description", "category", "hcl", "sensitive")
_VAR_REFUSED = {"filter.workspace.name": "the deprecated filter form is not modelled; the workspace is in the path",
                "filter.organization.name": "the deprecated filter form is not modelled; the workspace is in the path"}

_RUN_ACTION = Takes(body=("comment",))

_TEAM_BODY = ("name", "sso-team-id", "organization-access", "visibility", "allow-member-token-management",
              *(f"organization-access.{flag}" for flag in (
                  "manage-policies", "manage-policy-overrides", "manage-workspaces", "manage-vcs-settings",
                  "manage-providers", "manage-modules", "manage-run-tasks", "manage-projects", "read-workspaces",
                  "read-projects", "manage-membership", "manage-teams", "manage-organization-access",
                  "access-secret-teams", "manage-agent-pools")))
_TEAM_SOURCES = {"allow-member-token-management": "go-tfe `team.go` TeamCreateOptions AllowMemberTokenManagement"}
_ACCESS_BODY = ("access", "runs", "variables", "state-versions", "sentinel-mocks", "workspace-locking", "run-tasks")

TAKES: dict[str, Takes] = {
    "GET /api/v2/ping": Takes(),
    "GET /api/v2/account/details": Takes(),
    # --- organizations (organizations.mdx) ---
    "GET /api/v2/organizations": Takes(query=(*PAGE, "q", "q[email]", "q[name]", "include")),
    "POST /api/v2/organizations": Takes(
        body=tuple(k for k in _ORG_BODY if k not in ("default-agent-pool-id", "relationships.default-agent-pool")),
        only=_ORG_ONLY, sources=_ORG_SOURCES, refused={
            "default-agent-pool-id": "a new organization has no agent pool yet: create the organization, then a "
                                     "pool, then set it with PATCH"}),
    "GET /api/v2/organizations/<org>": Takes(query=("include",)),
    "PATCH /api/v2/organizations/<org>": Takes(body=_ORG_BODY, only=_ORG_ONLY, sources=_ORG_SOURCES),
    "DELETE /api/v2/organizations/<org>": Takes(),
    "GET /api/v2/organizations/<org>/entitlement-set": Takes(),
    "GET /api/v2/organizations/<org>/capacity": Takes(),
    "GET /api/v2/organizations/<org>/runs/queue": Takes(query=PAGE, sources={
        "page[number]": "go-tfe `organization.go` ReadRunQueueOptions", "page[size]": "the same"}),
    "GET /api/v2/organizations/<org>/runs": Takes(query=(*_RUN_LIST_QUERY, "filter[workspace_names]")),
    # --- projects (projects.mdx) ---
    "GET /api/v2/organizations/<org>/projects": Takes(query=(
        *PAGE, "q", "filter[names]", "filter[permissions][create-workspace]", "filter[permissions][update]",
        "sort")),
    "POST /api/v2/organizations/<org>/projects": Takes(body=("name", "description"), only={
        "auto-destroy-activity-duration": ((None,), "destroy runs after inactivity are not modelled")},
        refused={"relationships.tag-bindings": "key-value tag bindings are not modelled"}),
    "GET /api/v2/projects/<project_id>": Takes(),
    "DELETE /api/v2/projects/<project_id>": Takes(),
    # --- agent pools (agents.mdx) ---
    "POST /api/v2/organizations/<org>/agent-pools": Takes(body=("name",), only={
        "organization-scoped": ((True,), "agent pools scoped to some workspaces are not modelled")},
        refused={"relationships.allowed-workspaces": "agent pools scoped to some workspaces are not modelled"}),
    "GET /api/v2/agent-pools/<pool_id>": Takes(query=("include",)),
    "DELETE /api/v2/agent-pools/<pool_id>": Takes(),
    # --- OAuth clients and tokens (oauth-clients.mdx, oauth-tokens.mdx) ---
    "GET /api/v2/organizations/<org>/oauth-clients": Takes(query=(*PAGE, "include")),
    "POST /api/v2/organizations/<org>/oauth-clients": Takes(
        body=("service-provider", "name", "http-url", "api-url", "oauth-token-string"),
        only={"organization-scoped": ((True,), "OAuth clients attached to some projects are not modelled")},
        refused={"key": "the sandbox makes no OAuth handshake: give oauth-token-string",
                 "secret": "the sandbox makes no OAuth handshake: give oauth-token-string",
                 "private-key": "SSH keys of Azure DevOps Server connections are not modelled",
                 "rsa-public-key": "Bitbucket Data Center keys are not modelled: give oauth-token-string",
                 "relationships.projects": "OAuth clients attached to some projects are not modelled",
                 "relationships.agent-pool": "VCS connections through agents are not modelled"}),
    "GET /api/v2/oauth-clients/<client_id>": Takes(query=("include",)),
    "DELETE /api/v2/oauth-clients/<client_id>": Takes(),
    "GET /api/v2/oauth-clients/<client_id>/oauth-tokens": Takes(query=PAGE),
    "GET /api/v2/oauth-tokens/<token_id>": Takes(),
    "GET /api/v2/organizations/<org>/oauth-tokens": Takes(query=PAGE, sources={
        "page[number]": "go-tfe `oauth_token.go` OAuthTokenListOptions", "page[size]": "the same"}),
    # --- workspaces (workspaces.mdx) ---
    "GET /api/v2/organizations/<org>/workspaces": Takes(
        query=(*PAGE, "include", "search[name]", "search[tags]", "search[exclude-tags]", "search[wildcard-name]",
               "sort", "filter[project][id]", "filter[current-run][status]"),
        refused={"filter[tagged][i][key]": "key-value tag bindings are not modelled; search flat tags with "
                                           "search[tags]",
                 "filter[tagged][i][value]": "key-value tag bindings are not modelled; search flat tags with "
                                             "search[tags]"}),
    "POST /api/v2/organizations/<org>/workspaces": Takes(body=_WS_BODY, only=_WS_ONLY, refused=_WS_REFUSED,
                                                       sources=_WS_SOURCES),
    "GET /api/v2/organizations/<org>/workspaces/<name>": Takes(query=_WS_INCLUDE_QUERY),
    "GET /api/v2/workspaces/<ws_id>": Takes(query=_WS_INCLUDE_QUERY),
    "PATCH /api/v2/organizations/<org>/workspaces/<name>": Takes(body=_WS_UPDATE_BODY, only=_WS_ONLY,
                                                               refused=_WS_REFUSED, sources=_WS_SOURCES),
    "PATCH /api/v2/workspaces/<ws_id>": Takes(body=_WS_UPDATE_BODY, only=_WS_ONLY, refused=_WS_REFUSED,
                                              sources=_WS_SOURCES),
    "DELETE /api/v2/organizations/<org>/workspaces/<name>": Takes(),
    "DELETE /api/v2/workspaces/<ws_id>": Takes(),
    "POST /api/v2/organizations/<org>/workspaces/<name>/actions/safe-delete": Takes(),
    "POST /api/v2/workspaces/<ws_id>/actions/safe-delete": Takes(),
    "POST /api/v2/workspaces/<ws_id>/actions/lock": Takes(body=("reason",)),
    "POST /api/v2/workspaces/<ws_id>/actions/unlock": Takes(),
    "POST /api/v2/workspaces/<ws_id>/actions/force-unlock": Takes(),
    "GET /api/v2/workspaces/<ws_id>/relationships/tags": Takes(query=PAGE),
    "POST /api/v2/workspaces/<ws_id>/relationships/tags": Takes(body=("data[].id", "data[].attributes.name")),
    "DELETE /api/v2/workspaces/<ws_id>/relationships/tags": Takes(body=("data[].id", "data[].attributes.name")),
    # --- variables (workspace-variables.mdx; the read by id: go-tfe `variable.go` Read) ---
    # not paged (workspace-variables.mdx "List Variables" shows no pagination): every page answers the whole list
    "GET /api/v2/workspaces/<ws_id>/vars": Takes(query=PAGE, sources={
        "page[number]": "the API's standard pagination parameters (api-docs index, Query Parameters); this list "
                        "answers all its variables on every page, as TFE's does", "page[size]": "the same"}),
    "POST /api/v2/workspaces/<ws_id>/vars": Takes(body=_VAR_BODY, refused=_VAR_REFUSED),
    "GET /api/v2/workspaces/<ws_id>/vars/<var_id>": Takes(),
    "PATCH /api/v2/workspaces/<ws_id>/vars/<var_id>": Takes(body=_VAR_BODY),
    "DELETE /api/v2/workspaces/<ws_id>/vars/<var_id>": Takes(),
    # --- state versions and outputs (state-versions.mdx, state-version-outputs.mdx) ---
    "POST /api/v2/workspaces/<ws_id>/state-versions": Takes(
        body=("serial", "md5", "state", "lineage", "json-state", "json-state-outputs", "relationships.run",
              "force"),
        sources={"force": "go-tfe `state_version.go` StateVersionCreateOptions Force"}),
    "GET /api/v2/state-versions": Takes(query=("filter[workspace][name]", "filter[organization][name]",
                                               "filter[status]", *PAGE, "include")),
    "GET /api/v2/workspaces/<ws_id>/state-versions": Takes(query=("filter[status]", *PAGE, "include"), sources={
        "filter[status]": "the same filter as GET /state-versions (state-versions.mdx)",
        "page[number]": "state-versions.mdx", "page[size]": "state-versions.mdx",
        "include": "state-versions.mdx \"Available Related Resources\""}),
    "GET /api/v2/workspaces/<ws_id>/current-state-version": Takes(query=("include",)),
    "GET /api/v2/state-versions/<sv_id>": Takes(query=("include",)),
    "GET /api/v2/state-versions/<sv_id>/outputs": Takes(query=PAGE),
    "GET /api/v2/state-version-outputs/<output_id_>": Takes(),
    "GET /api/v2/workspaces/<ws_id>/current-state-version-outputs": Takes(query=PAGE, sources={
        "page[number]": "go-tfe `state_version_output.go` ReadCurrent (a paged list)", "page[size]": "the same"}),
    # --- configuration versions (configuration-versions.mdx) ---
    "GET /api/v2/workspaces/<ws_id>/configuration-versions": Takes(query=(*PAGE, "include")),
    "POST /api/v2/workspaces/<ws_id>/configuration-versions": Takes(body=("auto-queue-runs", "speculative",
                                                                          "provisional")),
    "GET /api/v2/configuration-versions/<cv_id>": Takes(query=("include",)),
    "GET /api/v2/configuration-versions/<cv_id>/download": Takes(),
    "GET /api/v2/configuration-versions/<cv_id>/ingress-attributes": Takes(),
    # --- runs (run.mdx) ---
    "GET /api/v2/workspaces/<ws_id>/runs": Takes(query=_RUN_LIST_QUERY),
    "POST /api/v2/runs": Takes(
        body=("allow-empty-apply", "auto-apply", "debugging-mode", "is-destroy", "message", "refresh", "refresh-only",
              "replace-addrs", "target-addrs", "variables", "plan-only", "save-plan", "terraform-version",
              "relationships.workspace", "relationships.configuration-version"),
        only={"allow-config-generation": ((False,), "generating configuration for import blocks is not modelled")}),
    "GET /api/v2/runs/<run_id>": Takes(query=("include",)),
    "POST /api/v2/runs/<run_id>/actions/apply": _RUN_ACTION,
    "POST /api/v2/runs/<run_id>/actions/discard": _RUN_ACTION,
    "POST /api/v2/runs/<run_id>/actions/cancel": _RUN_ACTION,
    "POST /api/v2/runs/<run_id>/actions/force-cancel": _RUN_ACTION,
    "GET /api/v2/runs/<run_id>/plan": Takes(),
    "GET /api/v2/runs/<run_id>/plan/json-output": Takes(),
    "GET /api/v2/plans/<plan_id>": Takes(),
    "GET /api/v2/plans/<plan_id>/json-output": Takes(),
    "GET /api/v2/plans/<plan_id>/json-output-redacted": Takes(),
    "GET /api/v2/applies/<apply_id>": Takes(),
    "GET /api/v2/runs/<run_id>/apply": Takes(),
    "GET /api/v2/runs/<run_id>/run-events": Takes(query=("include",), sources={
        "include": "go-tfe `run_event.go` RunEventListOptions"}),
    "GET /api/v2/run-events/<event_id>": Takes(query=("include",), sources={
        "include": "go-tfe `run_event.go` RunEventReadOptions"}),
    # --- comments (comments.mdx) ---
    "GET /api/v2/runs/<run_id>/comments": Takes(query=PAGE, sources={
        "page[number]": "go-tfe `comment.go` CommentList (a paged list)", "page[size]": "the same"}),
    "POST /api/v2/runs/<run_id>/comments": Takes(body=("body",)),
    "GET /api/v2/comments/<comment_id>": Takes(),
    # --- teams, membership, tokens, access (teams.mdx, team-members.mdx, team-tokens.mdx, team-access.mdx) ---
    "GET /api/v2/organizations/<org>/teams": Takes(query=(*PAGE, "q", "filter[names]", "include")),
    "POST /api/v2/organizations/<org>/teams": Takes(body=_TEAM_BODY, sources=_TEAM_SOURCES),
    "GET /api/v2/teams/<team_id>": Takes(query=("include",)),
    "PATCH /api/v2/teams/<team_id>": Takes(body=(*_TEAM_BODY, "allow-team-token-management"), sources=_TEAM_SOURCES),
    "DELETE /api/v2/teams/<team_id>": Takes(),
    "POST /api/v2/teams/<team_id>/relationships/users": Takes(body=("data[].id",)),
    "DELETE /api/v2/teams/<team_id>/relationships/users": Takes(body=("data[].id",)),
    "POST /api/v2/teams/<team_id>/authentication-token": Takes(body=("expired-at",)),
    "GET /api/v2/teams/<team_id>/authentication-token": Takes(),
    "DELETE /api/v2/teams/<team_id>/authentication-token": Takes(),
    "GET /api/v2/team-workspaces": Takes(query=("filter[workspace][id]", *PAGE)),
    "POST /api/v2/team-workspaces": Takes(body=(*_ACCESS_BODY, "relationships.workspace", "relationships.team")),
    "GET /api/v2/team-workspaces/<access_id>": Takes(),
    "PATCH /api/v2/team-workspaces/<access_id>": Takes(body=_ACCESS_BODY),
    "DELETE /api/v2/team-workspaces/<access_id>": Takes(),
}


def takes(route_key: str | None) -> Takes | None:
    """The declaration of a route (None for routes outside `/api/v2`, which take what their handler reads)."""
    return TAKES.get(route_key) if route_key else None


def check_query(route_key: str | None, query: Mapping[str, str]) -> None:
    """Refuse a query parameter the route does not honour (400 naming it).

    Raises:
        BadRequestError: a documented parameter the sandbox does not model, or one the route does not take.
    """
    declared = takes(route_key)
    if declared is None:
        return
    for name in query:
        if name in declared.query:
            continue
        generic = _generic(name)
        if generic in declared.refused:
            raise errors.BadRequestError(f"query parameter {name} is not modelled by the sandbox: "
                                         f"{declared.refused[generic]}")
        accepted = ", ".join(declared.query) or "none"
        raise errors.BadRequestError(f"query parameter {name} is not one this route takes (it takes: {accepted})")


def _generic(name: str) -> str:
    """`filter[tagged][0][key]` -> `filter[tagged][i][key]` (the docs' spelling of an indexed parameter)."""
    return re.sub(r"\[\d+\]", "[i]", name)


def check_document(route_key: str | None, doc: Mapping[str, Any]) -> None:
    """Refuse a member of a JSON:API request document beside `data` (422 naming it): the deprecated `filter`
    form of a variable create (workspace-variables.mdx), or anything else.

    Raises:
        UnprocessableError: the first member refused.
    """
    declared = takes(route_key)
    if declared is None:
        return
    for name, value in doc.items():
        if name == "data":
            continue
        for path in _paths(name, value):
            if path in declared.refused:
                raise errors.UnprocessableError(f"{path} is not modelled by the sandbox: {declared.refused[path]}",
                                                pointer="/" + path.replace(".", "/"))
        raise errors.UnprocessableError(f"{name} is not a member of the request documents this route takes (it "
                                        "takes data)", pointer=f"/{name}")


def _paths(prefix: str, value: Any) -> list[str]:
    """The dotted paths of the leaves of a JSON value (`filter.workspace.name`)."""
    if isinstance(value, dict) and value:
        return [p for key, sub in value.items() for p in _paths(f"{prefix}.{key}", sub)]
    return [prefix]


def check_body(route_key: str | None, attrs: Mapping[str, Any], rels: Mapping[str, Any]) -> None:
    """Refuse request-body attributes and relationships the route does not honour (422 naming them), one
    level into object attributes whose keys the route declares; refuse a value `only` does not take.

    Raises:
        UnprocessableError: the first key (or value) refused.
    """
    declared = takes(route_key)
    if declared is None:
        return
    for name, value in attrs.items():
        _check_key(declared, name, value, f"/data/attributes/{name}")
        nested = [k for k in (*declared.body, *declared.only, *declared.refused) if k.startswith(name + ".")]
        if nested and isinstance(value, dict):
            for sub, sub_value in value.items():
                _check_key(declared, f"{name}.{sub}", sub_value, f"/data/attributes/{name}/{sub}")
    for name in rels:
        _check_key(declared, f"relationships.{name}", None, f"/data/relationships/{name}", value_checked=False)


def _check_key(declared: Takes, key: str, value: Any, pointer: str, *, value_checked: bool = True) -> None:
    label = key.removeprefix("relationships.") + (" (relationship)" if key.startswith("relationships.") else "")
    if key in declared.body:
        return
    if key in declared.only:
        allowed, why = declared.only[key]
        if value_checked and not any(value is a or (type(value) is type(a) and value == a) for a in allowed):
            takes_text = " or ".join("null" if a is None else str(a).lower() if isinstance(a, bool) else repr(a)
                                     for a in allowed)
            raise errors.UnprocessableError(f"{label} {_shown(value)} is not modelled by the sandbox: {why} "
                                            f"(it takes {takes_text})", pointer=pointer)
        return
    if key in declared.refused:
        raise errors.UnprocessableError(f"{label} is not modelled by the sandbox: {declared.refused[key]}",
                                        pointer=pointer)
    raise errors.UnprocessableError(f"{label} is not an attribute this route takes", pointer=pointer)


def _shown(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    return repr(value) if isinstance(value, str) else str(value)[:40]
