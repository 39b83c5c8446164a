"""The URL table: (method, path regex with named groups) -> handler, plus how each route authenticates.

Like moto's `urls.py`. Named groups become the handler's keyword arguments; a route may add fixed
keyword arguments (`extra`). Paths are matched without a trailing slash.

Auth kinds:
- `legacy`: `X-Atlas-Token` (the legacy API); errors in the legacy wire flavour.
- `bearer`: `Authorization: Bearer` (the new API); errors in JSON:API.
- `none`: discovery, ping, health.
- `capability`: archivist URLs; the random token in the path is the authorisation.
- `admin`: `X-Sandbox-Admin` secret (see `admin_api`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable

from runbook_lib.sandbox import (admin_api, legacy_api, orgs_api, runs_api, states_api, teams_api, tfe_api,
                                 tfe_runs_api, vcs, workspaces_api)
from runbook_lib.sandbox.errors import JSONAPI, LEGACY


@dataclass(frozen=True)
class Route:
    """One row of the table."""

    method: str
    pattern: re.Pattern[str]
    handler: Callable[..., Any]
    auth: str
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def flavour(self) -> str:
        """Which wire format this route's errors use."""
        return LEGACY if self.auth == "legacy" else JSONAPI


_SEG = r"[^/]+"
_V1 = "/api/v1"
_V2 = "/api/v2"


def _r(method: str, path: str, handler: Callable[..., Any], auth: str, **extra: Any) -> Route:
    regex = re.sub(r"<(\w+)>", lambda m: f"(?P<{m.group(1)}>{_SEG})", path)
    return Route(method, re.compile(f"^{regex}$"), handler, auth, extra)


L, B = "legacy", "bearer"

ROUTES: list[Route] = [
    # --- legacy /api/v1: documented ---
    _r("GET", f"{_V1}/terraform/state/<org>/<env>", legacy_api.get_state, L),
    _r("PUT", f"{_V1}/terraform/state/<org>/<env>", legacy_api.put_state, L),
    _r("DELETE", f"{_V1}/terraform/state/<org>/<env>", legacy_api.delete_state, L),
    _r("GET", f"{_V1}/terraform/state", legacy_api.list_states, L),
    _r("GET", f"{_V1}/terraform/configurations/<org>/<env>/versions/latest",
       legacy_api.latest_configuration_version, L),
    _r("POST", f"{_V1}/terraform/configurations/<org>/<env>/versions", legacy_api.create_configuration_version, L),
    _r("PUT", f"{_V1}/environments/<org>/<env>/variables", legacy_api.put_variables, L),
    _r("POST", f"{_V1}/environments/<org>/<env>/plan", legacy_api.queue_plan, L),
    _r("GET", f"{_V1}/user/<username>", legacy_api.show_user, L),
    # --- legacy /api/v1: SANDBOX-DEFINED (UI-only on the legacy product) ---
    _r("GET", f"{_V1}/environments/<org>", legacy_api.list_environments, L),
    _r("GET", f"{_V1}/environments/<org>/<env>", legacy_api.show_environment, L),
    _r("DELETE", f"{_V1}/environments/<org>/<env>", legacy_api.delete_environment, L),
    _r("GET", f"{_V1}/environments/<org>/<env>/variables", legacy_api.list_variables, L),
    _r("DELETE", f"{_V1}/environments/<org>/<env>/vcs", legacy_api.unlink_vcs, L),
    _r("PUT", f"{_V1}/environments/<org>/<env>/vcs", legacy_api.link_vcs, L),
    _r("POST", f"{_V1}/environments/<org>/<env>/lock", legacy_api.lock_environment, L),
    _r("POST", f"{_V1}/environments/<org>/<env>/unlock", legacy_api.unlock_environment, L),
    _r("GET", f"{_V1}/environments/<org>/<env>/runs", legacy_api.list_runs, L),
    _r("GET", f"{_V1}/environments/<org>/<env>/teams", legacy_api.list_environment_teams, L),
    # --- discovery ---
    _r("GET", "/.well-known/terraform.json", tfe_api.discovery, "none"),
    _r("GET", "/api/terraform/motd", tfe_api.motd, "none"),
    _r("GET", f"{_V2}/ping", tfe_api.ping, "none"),
    # --- new /api/v2 ---
    _r("GET", f"{_V2}/account/details", tfe_api.account_details, B),
    _r("GET", f"{_V2}/organizations", orgs_api.list_organizations, B),
    _r("POST", f"{_V2}/organizations", orgs_api.create_organization, B),
    _r("GET", f"{_V2}/organizations/<org>", orgs_api.show_organization, B),
    _r("PATCH", f"{_V2}/organizations/<org>", orgs_api.update_organization, B),
    _r("DELETE", f"{_V2}/organizations/<org>", orgs_api.delete_organization, B),
    _r("GET", f"{_V2}/organizations/<org>/entitlement-set", orgs_api.entitlement_set, B),
    _r("GET", f"{_V2}/organizations/<org>/projects", orgs_api.list_projects, B),
    _r("POST", f"{_V2}/organizations/<org>/projects", orgs_api.create_project, B),
    _r("GET", f"{_V2}/projects/<project_id>", orgs_api.show_project, B),
    _r("DELETE", f"{_V2}/projects/<project_id>", orgs_api.delete_project, B),
    _r("POST", f"{_V2}/organizations/<org>/agent-pools", orgs_api.create_agent_pool, B),
    _r("GET", f"{_V2}/agent-pools/<pool_id>", orgs_api.show_agent_pool, B),
    _r("DELETE", f"{_V2}/agent-pools/<pool_id>", orgs_api.delete_agent_pool, B),
    _r("GET", f"{_V2}/organizations/<org>/oauth-tokens", orgs_api.list_org_oauth_tokens, B),
    _r("DELETE", f"{_V2}/oauth-clients/<client_id>", orgs_api.delete_oauth_client, B),
    _r("GET", f"{_V2}/organizations/<org>/oauth-clients", orgs_api.list_oauth_clients, B),
    _r("POST", f"{_V2}/organizations/<org>/oauth-clients", orgs_api.create_oauth_client, B),
    _r("GET", f"{_V2}/oauth-clients/<client_id>", orgs_api.show_oauth_client, B),
    _r("GET", f"{_V2}/oauth-clients/<client_id>/oauth-tokens", orgs_api.list_oauth_tokens, B),
    _r("GET", f"{_V2}/oauth-tokens/<token_id>", orgs_api.show_oauth_token, B),
    _r("GET", f"{_V2}/organizations/<org>/workspaces", workspaces_api.list_workspaces, B),
    _r("POST", f"{_V2}/organizations/<org>/workspaces", workspaces_api.create_workspace, B),
    _r("GET", f"{_V2}/organizations/<org>/workspaces/<name>", workspaces_api.show_workspace, B),
    _r("PATCH", f"{_V2}/organizations/<org>/workspaces/<name>", workspaces_api.update_workspace, B),
    _r("DELETE", f"{_V2}/organizations/<org>/workspaces/<name>", workspaces_api.delete_workspace, B),
    _r("GET", f"{_V2}/workspaces/<ws_id>", workspaces_api.show_workspace, B),
    _r("PATCH", f"{_V2}/workspaces/<ws_id>", workspaces_api.update_workspace, B),
    _r("DELETE", f"{_V2}/workspaces/<ws_id>", workspaces_api.delete_workspace, B),
    _r("POST", f"{_V2}/organizations/<org>/workspaces/<name>/actions/safe-delete",
       workspaces_api.delete_workspace, B, safe=True),
    _r("POST", f"{_V2}/workspaces/<ws_id>/actions/safe-delete", workspaces_api.delete_workspace, B, safe=True),
    _r("POST", f"{_V2}/workspaces/<ws_id>/actions/lock", workspaces_api.lock_workspace, B),
    _r("POST", f"{_V2}/workspaces/<ws_id>/actions/unlock", workspaces_api.unlock_workspace, B),
    _r("POST", f"{_V2}/workspaces/<ws_id>/actions/force-unlock", workspaces_api.force_unlock_workspace, B),
    _r("GET", f"{_V2}/workspaces/<ws_id>/current-state-version", states_api.current_state_version, B),
    _r("GET", f"{_V2}/workspaces/<ws_id>/state-versions", states_api.list_workspace_state_versions, B),
    _r("POST", f"{_V2}/workspaces/<ws_id>/state-versions", states_api.create_state_version, B),
    _r("GET", f"{_V2}/state-versions", states_api.list_state_versions, B),
    _r("GET", f"{_V2}/state-versions/<sv_id>", states_api.show_state_version, B),
    _r("GET", f"{_V2}/workspaces/<ws_id>/relationships/tags", workspaces_api.list_workspace_tags, B),
    _r("POST", f"{_V2}/workspaces/<ws_id>/relationships/tags", workspaces_api.add_workspace_tags, B),
    _r("DELETE", f"{_V2}/workspaces/<ws_id>/relationships/tags", workspaces_api.remove_workspace_tags, B),
    _r("GET", f"{_V2}/workspaces/<ws_id>/vars", workspaces_api.list_vars, B),
    _r("POST", f"{_V2}/workspaces/<ws_id>/vars", workspaces_api.create_var, B),
    _r("GET", f"{_V2}/workspaces/<ws_id>/vars/<var_id>", workspaces_api.show_var, B),
    _r("PATCH", f"{_V2}/workspaces/<ws_id>/vars/<var_id>", workspaces_api.update_var, B),
    _r("DELETE", f"{_V2}/workspaces/<ws_id>/vars/<var_id>", workspaces_api.delete_var, B),
    _r("GET", f"{_V2}/workspaces/<ws_id>/configuration-versions", tfe_runs_api.list_configuration_versions, B),
    _r("POST", f"{_V2}/workspaces/<ws_id>/configuration-versions", tfe_runs_api.create_configuration_version, B),
    _r("GET", f"{_V2}/configuration-versions/<cv_id>", tfe_runs_api.show_configuration_version, B),
    _r("GET", f"{_V2}/configuration-versions/<cv_id>/download", tfe_runs_api.download_configuration_version, B),
    _r("GET", f"{_V2}/workspaces/<ws_id>/runs", tfe_runs_api.list_runs, B),
    _r("POST", f"{_V2}/runs", tfe_runs_api.create_run, B),
    _r("GET", f"{_V2}/runs/<run_id>", tfe_runs_api.show_run, B),
    _r("GET", f"{_V2}/runs/<run_id>/plan", tfe_runs_api.show_run_plan, B),
    _r("GET", f"{_V2}/runs/<run_id>/plan/json-output", tfe_runs_api.plan_json_output, B),
    _r("GET", f"{_V2}/plans/<plan_id>", tfe_runs_api.show_plan, B),
    _r("GET", f"{_V2}/plans/<plan_id>/json-output", tfe_runs_api.plan_json_output, B),
    # --- runs after creation, VCS ingress (see runs_api) ---
    _r("POST", f"{_V2}/runs/<run_id>/actions/apply", runs_api.apply_run, B),
    _r("POST", f"{_V2}/runs/<run_id>/actions/discard", runs_api.discard_run, B),
    _r("POST", f"{_V2}/runs/<run_id>/actions/cancel", runs_api.cancel_run, B),
    _r("GET", f"{_V2}/configuration-versions/<cv_id>/ingress-attributes", runs_api.ingress_attributes, B),
    # --- teams, team membership, team access (see teams_api) ---
    _r("GET", f"{_V2}/organizations/<org>/teams", teams_api.list_teams, B),
    _r("POST", f"{_V2}/organizations/<org>/teams", teams_api.create_team, B),
    _r("GET", f"{_V2}/teams/<team_id>", teams_api.show_team, B),
    _r("DELETE", f"{_V2}/teams/<team_id>", teams_api.delete_team, B),
    _r("POST", f"{_V2}/teams/<team_id>/relationships/users", teams_api.add_team_users, B),
    _r("DELETE", f"{_V2}/teams/<team_id>/relationships/users", teams_api.remove_team_users, B),
    _r("POST", f"{_V2}/teams/<team_id>/authentication-token", teams_api.create_team_token, B),
    _r("GET", f"{_V2}/teams/<team_id>/authentication-token", teams_api.show_team_token, B),
    _r("DELETE", f"{_V2}/teams/<team_id>/authentication-token", teams_api.delete_team_token, B),
    _r("GET", f"{_V2}/team-workspaces", teams_api.list_team_access, B),
    _r("POST", f"{_V2}/team-workspaces", teams_api.create_team_access, B),
    _r("GET", f"{_V2}/team-workspaces/<access_id>", teams_api.show_team_access, B),
    _r("PATCH", f"{_V2}/team-workspaces/<access_id>", teams_api.update_team_access, B),
    _r("DELETE", f"{_V2}/team-workspaces/<access_id>", teams_api.delete_team_access, B),
    # --- archivist-style hosted objects ---
    _r("PUT", "/_archivist/v1/object/<token>", states_api.archivist_put, "capability"),
    _r("GET", "/_archivist/v1/object/<token>", states_api.archivist_get, "capability"),
    # --- admin surface for tests ---
    _r("GET", "/_sandbox/health", admin_api.health, "none"),
    _r("GET", "/_sandbox/requests", admin_api.requests_log, "admin"),
    _r("PUT", "/_sandbox/faults", admin_api.put_faults, "admin"),
    _r("DELETE", "/_sandbox/faults", admin_api.delete_faults, "admin"),
    _r("PUT", "/_sandbox/rate-limit", admin_api.put_rate_limit, "admin"),
    _r("POST", "/_sandbox/reset", admin_api.reset, "admin"),
    _r("GET", "/_sandbox/runs", runs_api.show_settings, "admin"),
    _r("PUT", "/_sandbox/runs", runs_api.put_settings, "admin"),
    # the git hook's webhook: no token; the handler checks the per-sandbox hook secret (see vcs)
    _r("POST", vcs.WEBHOOK_PATH, vcs.push_webhook, "none"),
]

# Index by first path segment after the API prefix keeps matching cheap (the GET benchmark cares).
_BY_METHOD: dict[str, list[Route]] = {}
for _route in ROUTES:
    _BY_METHOD.setdefault(_route.method, []).append(_route)


def match(method: str, path: str) -> tuple[Route | None, dict[str, str], bool]:
    """Find the route for a request.

    Returns:
        (route, path parameters, path_known): route is None when nothing matches; `path_known` tells
        whether the path exists for some other method (real TFE still answers 404 then).
    """
    path = path.rstrip("/") or "/"
    for route in _BY_METHOD.get(method, ()):
        found = route.pattern.match(path)
        if found:
            return route, dict(found.groupdict()), True
    known = any(r.pattern.match(path) for r in ROUTES)
    return None, {}, known


def flavour_for_path(path: str) -> str:
    """The error flavour of an unmatched path: legacy under /api/v1, JSON:API elsewhere."""
    return LEGACY if path.startswith(_V1 + "/") or path == _V1 else JSONAPI
