"""The URL table: (method, path regex with named groups) -> handler, plus how each route authenticates.

Like moto's `urls.py`. The table names each path once, with the handler of every method it answers
(`_at`); named groups become the handler's keyword arguments; a route may add fixed keyword arguments
(`extra`, through `_r`). Paths are matched without a trailing slash, in table order.

Auth kinds:
- `legacy`: `X-Atlas-Token` (the legacy API); errors in the legacy wire flavour.
- `bearer`: `Authorization: Bearer` (the new API); errors in JSON:API.
- `none`: discovery, ping, health.
- `capability`: archivist URLs; the random token in the path is the authorisation.
- `admin`: `X-Sandbox-Admin` secret (see `admin_api`).
- `ui`: the legacy web UI's pages (`legacy_ui`); each page checks its own session cookie.

A route with a `profile` is served only when the server runs that legacy profile: the `site-adapter`
routes (`legacy_adapter_api`) are never served by default; every other route always is.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable

from runbook_lib.sandbox import (admin_api, comments_api, config_versions_api, legacy_adapter_api, legacy_api,
                                 legacy_ui, orgs_api, plans_api, runs_api, states_api, teams_api, tfe_api,
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
    #: the path as the table writes it (`/api/v2/workspaces/<ws_id>`): with the method, the key of
    #: `params.TAKES`
    template: str = ""
    profile: str | None = None  # served only under this legacy profile (None: always)

    @property
    def key(self) -> str:
        """`METHOD /path/<template>`, the route's name in `params.TAKES`."""
        return f"{self.method} {self.template}"

    @property
    def flavour(self) -> str:
        """Which wire format this route's errors use."""
        return LEGACY if self.auth == "legacy" else JSONAPI


_SEG = r"[^/]+"
_V1 = "/api/v1"
_V2 = "/api/v2"


def _r(method: str, path: str, handler: Callable[..., Any], auth: str, profile: str | None = None,
       **extra: Any) -> Route:
    regex = re.sub(r"<(\w+)>", lambda m: f"(?P<{m.group(1)}>{_SEG})", path)
    return Route(method, re.compile(f"^{regex}$"), handler, auth, extra, path, profile)


def _at(path: str, auth: str, profile: str | None = None, **handlers: Callable[..., Any]) -> list[Route]:
    """The routes of one path, one per method (the keyword), in the order given."""
    return [_r(method, path, handler, auth, profile) for method, handler in handlers.items()]


L, B, UI = "legacy", "bearer", "ui"
SA = legacy_adapter_api.PROFILE

ROUTES: list[Route] = [
    # --- legacy /api/v1: documented ---
    *_at(f"{_V1}/terraform/state/<org>/<env>", L, GET=legacy_api.get_state, PUT=legacy_api.put_state,
         DELETE=legacy_api.delete_state),
    *_at(f"{_V1}/terraform/state", L, GET=legacy_api.list_states),
    *_at(f"{_V1}/terraform/configurations/<org>/<env>/versions/latest", L, GET=legacy_api.latest_configuration_version),
    *_at(f"{_V1}/terraform/configurations/<org>/<env>/versions", L, POST=legacy_api.create_configuration_version),
    *_at(f"{_V1}/environments/<org>/<env>/variables", L, PUT=legacy_api.put_variables),
    *_at(f"{_V1}/environments/<org>/<env>/plan", L, POST=legacy_api.queue_plan),
    *_at(f"{_V1}/user/<username>", L, GET=legacy_api.show_user),
    # --- legacy /api/v1: the `site-adapter` profile only (UI-only on the legacy product; legacy_adapter_api) ---
    *_at(f"{_V1}/environments/<org>", L, SA, GET=legacy_adapter_api.list_environments),
    *_at(f"{_V1}/environments/<org>/<env>", L, SA, GET=legacy_adapter_api.show_environment,
         DELETE=legacy_adapter_api.delete_environment),
    *_at(f"{_V1}/environments/<org>/<env>/variables", L, SA, GET=legacy_adapter_api.list_variables),
    *_at(f"{_V1}/environments/<org>/<env>/vcs", L, SA, DELETE=legacy_adapter_api.unlink_vcs,
         PUT=legacy_adapter_api.link_vcs),
    *_at(f"{_V1}/environments/<org>/<env>/lock", L, SA, POST=legacy_adapter_api.lock_environment),
    *_at(f"{_V1}/environments/<org>/<env>/unlock", L, SA, POST=legacy_adapter_api.unlock_environment),
    *_at(f"{_V1}/environments/<org>/<env>/runs", L, SA, GET=legacy_adapter_api.list_runs),
    *_at(f"{_V1}/environments/<org>/<env>/teams", L, SA, GET=legacy_adapter_api.list_environment_teams),
    # --- the legacy web UI (legacy_ui): where the operator unlinks, deletes, reads variables ---
    *_at("/login", UI, GET=legacy_ui.login_form, POST=legacy_ui.login),
    *_at("/terraform/<org>/environments", UI, GET=legacy_ui.environments),
    *_at("/terraform/<org>/environments/<env>", UI, GET=legacy_ui.environment),
    *_at("/terraform/<org>/environments/<env>/settings", UI, GET=legacy_ui.settings),
    *_at("/terraform/<org>/environments/<env>/settings/lock", UI, POST=legacy_ui.lock),
    *_at("/terraform/<org>/environments/<env>/settings/unlock", UI, POST=legacy_ui.unlock),
    *_at("/terraform/<org>/environments/<env>/settings/delete", UI, POST=legacy_ui.delete),
    *_at("/terraform/<org>/environments/<env>/integrations", UI, GET=legacy_ui.integrations),
    *_at("/terraform/<org>/environments/<env>/integrations/unlink", UI, POST=legacy_ui.unlink),
    *_at("/terraform/<org>/environments/<env>/integrations/link", UI, POST=legacy_ui.link),
    *_at("/terraform/<org>/environments/<env>/variables", UI, GET=legacy_ui.variables),
    *_at("/terraform/<org>/environments/<env>/changes/runs", UI, GET=legacy_ui.runs),
    # --- discovery ---
    *_at("/.well-known/terraform.json", "none", GET=tfe_api.discovery),
    *_at("/api/terraform/motd", "none", GET=tfe_api.motd),
    *_at(f"{_V2}/ping", "none", GET=tfe_api.ping),
    # --- new /api/v2 ---
    *_at(f"{_V2}/account/details", B, GET=tfe_api.account_details),
    *_at(f"{_V2}/organizations", B, GET=orgs_api.list_organizations, POST=orgs_api.create_organization),
    *_at(f"{_V2}/organizations/<org>", B, GET=orgs_api.show_organization, PATCH=orgs_api.update_organization,
         DELETE=orgs_api.delete_organization),
    *_at(f"{_V2}/organizations/<org>/entitlement-set", B, GET=orgs_api.entitlement_set),
    *_at(f"{_V2}/organizations/<org>/capacity", B, GET=tfe_runs_api.capacity),
    *_at(f"{_V2}/organizations/<org>/runs/queue", B, GET=tfe_runs_api.run_queue),
    *_at(f"{_V2}/organizations/<org>/runs", B, GET=tfe_runs_api.list_org_runs),
    *_at(f"{_V2}/organizations/<org>/projects", B, GET=orgs_api.list_projects, POST=orgs_api.create_project),
    *_at(f"{_V2}/projects/<project_id>", B, GET=orgs_api.show_project, DELETE=orgs_api.delete_project),
    *_at(f"{_V2}/organizations/<org>/agent-pools", B, POST=orgs_api.create_agent_pool),
    *_at(f"{_V2}/agent-pools/<pool_id>", B, GET=orgs_api.show_agent_pool, DELETE=orgs_api.delete_agent_pool),
    *_at(f"{_V2}/organizations/<org>/oauth-tokens", B, GET=orgs_api.list_org_oauth_tokens),
    *_at(f"{_V2}/oauth-clients/<client_id>", B, DELETE=orgs_api.delete_oauth_client),
    *_at(f"{_V2}/organizations/<org>/oauth-clients", B, GET=orgs_api.list_oauth_clients,
         POST=orgs_api.create_oauth_client),
    *_at(f"{_V2}/oauth-clients/<client_id>", B, GET=orgs_api.show_oauth_client),
    *_at(f"{_V2}/oauth-clients/<client_id>/oauth-tokens", B, GET=orgs_api.list_oauth_tokens),
    *_at(f"{_V2}/oauth-tokens/<token_id>", B, GET=orgs_api.show_oauth_token),
    *_at(f"{_V2}/organizations/<org>/workspaces", B, GET=workspaces_api.list_workspaces,
         POST=workspaces_api.create_workspace),
    *_at(f"{_V2}/organizations/<org>/workspaces/<name>", B, GET=workspaces_api.show_workspace,
         PATCH=workspaces_api.update_workspace, DELETE=workspaces_api.delete_workspace),
    *_at(f"{_V2}/workspaces/<ws_id>", B, GET=workspaces_api.show_workspace, PATCH=workspaces_api.update_workspace,
         DELETE=workspaces_api.delete_workspace),
    _r("POST", f"{_V2}/organizations/<org>/workspaces/<name>/actions/safe-delete", workspaces_api.delete_workspace, B,
       safe=True),
    _r("POST", f"{_V2}/workspaces/<ws_id>/actions/safe-delete", workspaces_api.delete_workspace, B, safe=True),
    *_at(f"{_V2}/workspaces/<ws_id>/actions/lock", B, POST=workspaces_api.lock_workspace),
    *_at(f"{_V2}/workspaces/<ws_id>/actions/unlock", B, POST=workspaces_api.unlock_workspace),
    *_at(f"{_V2}/workspaces/<ws_id>/actions/force-unlock", B, POST=workspaces_api.force_unlock_workspace),
    *_at(f"{_V2}/workspaces/<ws_id>/current-state-version", B, GET=states_api.current_state_version),
    *_at(f"{_V2}/workspaces/<ws_id>/state-versions", B, GET=states_api.list_workspace_state_versions,
         POST=states_api.create_state_version),
    *_at(f"{_V2}/state-versions", B, GET=states_api.list_state_versions),
    *_at(f"{_V2}/state-versions/<sv_id>", B, GET=states_api.show_state_version),
    *_at(f"{_V2}/state-versions/<sv_id>/outputs", B, GET=states_api.list_state_version_outputs),
    *_at(f"{_V2}/state-version-outputs/<output_id_>", B, GET=states_api.show_state_version_output),
    *_at(f"{_V2}/workspaces/<ws_id>/current-state-version-outputs", B, GET=states_api.current_state_version_outputs),
    *_at(f"{_V2}/workspaces/<ws_id>/relationships/tags", B, GET=workspaces_api.list_workspace_tags,
         POST=workspaces_api.add_workspace_tags, DELETE=workspaces_api.remove_workspace_tags),
    *_at(f"{_V2}/workspaces/<ws_id>/vars", B, GET=workspaces_api.list_vars, POST=workspaces_api.create_var),
    *_at(f"{_V2}/workspaces/<ws_id>/vars/<var_id>", B, GET=workspaces_api.show_var, PATCH=workspaces_api.update_var,
         DELETE=workspaces_api.delete_var),
    *_at(f"{_V2}/workspaces/<ws_id>/configuration-versions", B, GET=config_versions_api.list_configuration_versions,
         POST=config_versions_api.create_configuration_version),
    *_at(f"{_V2}/configuration-versions/<cv_id>", B, GET=config_versions_api.show_configuration_version),
    *_at(f"{_V2}/configuration-versions/<cv_id>/download", B, GET=config_versions_api.download_configuration_version),
    *_at(f"{_V2}/workspaces/<ws_id>/runs", B, GET=tfe_runs_api.list_runs),
    *_at(f"{_V2}/runs", B, POST=tfe_runs_api.create_run),
    *_at(f"{_V2}/runs/<run_id>", B, GET=tfe_runs_api.show_run),
    *_at(f"{_V2}/runs/<run_id>/plan", B, GET=plans_api.show_run_plan),
    *_at(f"{_V2}/runs/<run_id>/plan/json-output", B, GET=plans_api.plan_json_output),
    *_at(f"{_V2}/plans/<plan_id>", B, GET=plans_api.show_plan),
    *_at(f"{_V2}/plans/<plan_id>/json-output", B, GET=plans_api.plan_json_output),
    *_at(f"{_V2}/plans/<plan_id>/json-output-redacted", B, GET=plans_api.plan_json_output_redacted),
    *_at(f"{_V2}/applies/<apply_id>", B, GET=plans_api.show_apply),
    *_at(f"{_V2}/runs/<run_id>/apply", B, GET=plans_api.show_run_apply),
    *_at(f"{_V2}/runs/<run_id>/run-events", B, GET=comments_api.list_run_events),
    *_at(f"{_V2}/run-events/<event_id>", B, GET=comments_api.show_run_event),
    *_at(f"{_V2}/runs/<run_id>/comments", B, GET=comments_api.list_comments, POST=comments_api.create_comment),
    *_at(f"{_V2}/comments/<comment_id>", B, GET=comments_api.show_comment),
    # --- runs after creation, VCS ingress (see runs_api) ---
    *_at(f"{_V2}/runs/<run_id>/actions/apply", B, POST=runs_api.apply_run),
    *_at(f"{_V2}/runs/<run_id>/actions/discard", B, POST=runs_api.discard_run),
    *_at(f"{_V2}/runs/<run_id>/actions/cancel", B, POST=runs_api.cancel_run),
    *_at(f"{_V2}/runs/<run_id>/actions/force-cancel", B, POST=runs_api.force_cancel_run),
    *_at(f"{_V2}/configuration-versions/<cv_id>/ingress-attributes", B, GET=config_versions_api.ingress_attributes),
    # --- teams, team membership, team access (see teams_api) ---
    *_at(f"{_V2}/organizations/<org>/teams", B, GET=teams_api.list_teams, POST=teams_api.create_team),
    *_at(f"{_V2}/teams/<team_id>", B, GET=teams_api.show_team, PATCH=teams_api.update_team,
         DELETE=teams_api.delete_team),
    *_at(f"{_V2}/teams/<team_id>/relationships/users", B, POST=teams_api.add_team_users,
         DELETE=teams_api.remove_team_users),
    *_at(f"{_V2}/teams/<team_id>/authentication-token", B, POST=teams_api.create_team_token,
         GET=teams_api.show_team_token, DELETE=teams_api.delete_team_token),
    *_at(f"{_V2}/team-workspaces", B, GET=teams_api.list_team_access, POST=teams_api.create_team_access),
    *_at(f"{_V2}/team-workspaces/<access_id>", B, GET=teams_api.show_team_access, PATCH=teams_api.update_team_access,
         DELETE=teams_api.delete_team_access),
    # --- archivist-style hosted objects ---
    *_at("/_archivist/v1/object/<token>", "capability", PUT=states_api.archivist_put, GET=states_api.archivist_get),
    # --- admin surface for tests ---
    *_at("/_sandbox/health", "none", GET=admin_api.health),
    *_at("/_sandbox/requests", "admin", GET=admin_api.requests_log),
    *_at("/_sandbox/faults", "admin", PUT=admin_api.put_faults, DELETE=admin_api.delete_faults),
    *_at("/_sandbox/rate-limit", "admin", PUT=admin_api.put_rate_limit),
    *_at("/_sandbox/reset", "admin", POST=admin_api.reset),
    *_at("/_sandbox/runs", "admin", GET=runs_api.show_settings, PUT=runs_api.put_settings),
    # the git hook's webhook: no token; the handler checks the per-sandbox hook secret (see vcs)
    *_at(vcs.WEBHOOK_PATH, "none", POST=vcs.push_webhook),
]

# Index by first path segment after the API prefix keeps matching cheap (the GET benchmark cares).
_BY_METHOD: dict[str, list[Route]] = {}
for _route in ROUTES:
    _BY_METHOD.setdefault(_route.method, []).append(_route)


def match(method: str, path: str, profile: str = "documented") -> tuple[Route | None, dict[str, str], bool]:
    """Find the route for a request.

    Args:
        profile: the server's legacy profile; a route of another profile is not there at all.

    Returns:
        (route, path parameters, path_known): route is None when nothing matches; `path_known` tells
        whether the path exists for some other method (real TFE still answers 404 then).
    """
    path = path.rstrip("/") or "/"
    for route in _BY_METHOD.get(method, ()):
        if route.profile is not None and route.profile != profile:
            continue
        found = route.pattern.match(path)
        if found:
            return route, dict(found.groupdict()), True
    known = any(r.pattern.match(path) for r in ROUTES if r.profile is None or r.profile == profile)
    return None, {}, known


def flavour_for_path(path: str) -> str:
    """The error flavour of an unmatched path: legacy under /api/v1, JSON:API elsewhere."""
    return LEGACY if path.startswith(_V1 + "/") or path == _V1 else JSONAPI
