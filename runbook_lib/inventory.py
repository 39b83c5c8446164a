"""The preflight inventory: can we reach both hosts, what is in the legacy estate, where does it go.

Every migration starts here (notebook 00). Three tables:

- `preflight_checks`: both tokens present and accepted, both hosts reachable, TLS verified, the new
  API's rate limit known.
- `legacy_environments`: one row per legacy environment: terraform version, state serial/lineage/
  resource count, VCS repo/branch/working directory, variable counts (sensitive ones counted, never
  shown), lock, run in progress, `terraform_remote_state` reads of other legacy environments
  (taken from the state itself, so no checkout is needed), and the teams with access, their level and
  members (`auditors:read[carol,dave]`).
- `mapping_frame`: each environment's target workspace, with naming problems, collisions, workspaces
  that already exist (with or without state), a readiness verdict with its reason, and which new
  teams step 2 would create, adopt or refuse.
"""

from __future__ import annotations

import json
import re
from typing import Any, Iterable

import pandas as pd

from runbook_lib import teams
from runbook_lib.errors import ApiError, ConfigError
from runbook_lib.evidence import join_slugs
from runbook_lib.legacy import LegacyClient
from runbook_lib.mapping import MappingRow, problems
from runbook_lib.settings import Settings
from runbook_lib.tfe import TfeClient

MIN_API_VERSION = (2, 5)
ENVIRONMENT_COLUMNS = ["environment", "terraform_version", "state_serial", "lineage", "resources", "vcs_repo",
                       "vcs_branch", "working_directory", "variables", "sensitive_variables", "env_variables",
                       "locked", "locked_by", "run_in_progress", "reads_state_of", "teams"]


def _check(name: str, ok: bool, detail: str) -> dict[str, Any]:
    return {"check": name, "ok": bool(ok), "detail": detail}


def preflight_checks(settings: Settings, legacy_org: str, *, legacy: LegacyClient | None = None,
                     tfe: TfeClient | None = None, legacy_env: str = "",
                     workspace: tuple[str, str] | None = None) -> pd.DataFrame:
    """Check tokens, reachability, TLS and the rate limit; never raises for a failed check.

    Args:
        legacy_env: for one environment's survey: the legacy API is checked by reading that environment
            (which the survey reads next anyway, from the read memo) instead of the organization's state list.
        workspace: (new organization, workspace) for one environment's survey: the new API's token is
            checked by looking that workspace up (read next anyway) instead of listing organizations.

    Returns:
        DataFrame[check, ok, detail]; every `ok` True means the runbook can talk to both hosts.
    """
    rows = []
    for which, var in (("legacy", settings.legacy_token_var), ("tfe", settings.tfe_token_var)):
        try:
            settings.token(which)
            rows.append(_check(f"{which} token", True, f"${var} is set"))
        except ConfigError as exc:
            rows.append(_check(f"{which} token", False, str(exc)))
    for which in ("legacy", "tfe"):
        try:
            address = settings.address(which)
            verified = address.startswith("https://")
            rows.append(_check(f"{which} TLS", verified,
                               f"{address}: certificate verified" + (f" with CA bundle {settings.ca_bundle}"
                                                                     if settings.ca_bundle else "")
                               if verified else f"{address} is plain HTTP (acceptable for a local rehearsal only)"))
        except ConfigError as exc:
            rows.append(_check(f"{which} TLS", False, str(exc)))
    try:
        legacy = legacy or LegacyClient(settings, read_only=True)
        if legacy_env:
            found = legacy.find_environment(legacy_org, legacy_env) is not None
            rows.append(_check("legacy API", True, f"environment {legacy_org}/{legacy_env} "
                                                   f"{'readable' if found else 'looked up (not found)'} with "
                                                   f"${settings.legacy_token_var}"))
        else:
            next(iter(legacy.list_states(legacy_org)), None)
            rows.append(_check("legacy API", True, f"state list of {legacy_org} readable with "
                                                   f"${settings.legacy_token_var}"))
    except (ApiError, ConfigError) as exc:
        rows.append(_check("legacy API", False, str(exc)))
    try:
        tfe = tfe or TfeClient(settings, read_only=True)
        if workspace:
            # Any answer but 401 proves the token (a 404 here is a workspace not created yet); a host that
            # announces its API version and rate limit on every answer is not pinged as well.
            tfe.find_workspace(*workspace)
            token_row = _check("new API token", True, f"workspace lookup answered with ${settings.tfe_token_var}")
            facts = tfe.about()
        else:
            facts = tfe.ping()
            next(iter(tfe.list_organizations()), None)
            token_row = _check("new API token", True, f"organizations readable with ${settings.tfe_token_var}")
        version = tuple(int(p) for p in str(facts.get("api_version") or "0.0").split(".")[:2])
        rows.append(_check("new API", version >= MIN_API_VERSION,
                           f"{facts.get('app_name')} API {facts.get('api_version')} (needs >= 2.5)"))
        rows.append(token_row)
        limit = facts.get("rate_limit")
        rows.append(_check("rate limit", limit is not None,
                           f"{limit:g} requests/s announced" if limit else "the host announced no rate limit"))
    except (ApiError, ConfigError) as exc:
        rows.append(_check("new API", False, str(exc)))
    return pd.DataFrame(rows, columns=["check", "ok", "detail"])


#: A flat-map key of a v3 state holding `terraform_remote_state`'s `config.name` (map or block form).
_FLAT_CONFIG_NAME = re.compile(r"config\.(?:[^.]+\.)?name")


def remote_state_reads(state_bytes: bytes | None) -> list[str]:
    """Legacy environments (`org/env`) that a state reads through `terraform_remote_state` with `atlas`.

    Works on v3 (flat attributes: `config.name` for `config = {...}`, `config.<n>.name` for the
    `config {...}` block form Terraform 0.11 writes as a set, e.g. `config.2816885322.name`) and v4
    (`attributes.config.value.name` or `config.name`).
    """
    if not state_bytes:
        return []
    try:
        doc = json.loads(state_bytes)
    except ValueError:
        return []
    found: set[str] = set()
    for module in doc.get("modules") or []:
        for key, resource in (module.get("resources") or {}).items():
            if key.startswith("data.terraform_remote_state."):
                attrs = ((resource or {}).get("primary") or {}).get("attributes") or {}
                if attrs.get("backend") == "atlas":
                    found.update(value for name, value in attrs.items()
                                 if value and _FLAT_CONFIG_NAME.fullmatch(name))
    for resource in doc.get("resources") or []:
        if resource.get("mode") == "data" and resource.get("type") == "terraform_remote_state":
            for instance in resource.get("instances") or []:
                attrs = instance.get("attributes") or {}
                config = attrs.get("config") or {}
                if isinstance(config, dict) and "value" in config:
                    config = config["value"] or {}
                if attrs.get("backend") == "atlas" and isinstance(config, dict) and config.get("name"):
                    found.add(config["name"])
    return sorted(found)


def describe_environment(legacy: LegacyClient, org: str, env: dict[str, Any] | str) -> dict[str, Any]:
    """One inventory row for a legacy environment (4 API calls: environment, state, variables, teams)."""
    from runbook_lib.state import TerraformState

    if isinstance(env, str):
        env = legacy.get_environment(org, env)
    name = env["name"]
    state = legacy.get_state(org, name)
    parsed = TerraformState.from_bytes(state.data) if state else None
    variables = legacy.get_variables(org, name)
    vcs = env.get("vcs") or {}
    run = env.get("current_run") or {}
    return {
        "environment": f"{org}/{name}",
        "terraform_version": env.get("terraform_version"),
        "state_serial": parsed.serial if parsed else None,
        "lineage": parsed.lineage if parsed else None,
        "resources": parsed.resource_count if parsed else 0,
        "vcs_repo": vcs.get("repo"),
        "vcs_branch": vcs.get("branch"),
        "working_directory": vcs.get("working_directory") or "",
        "variables": len(variables),
        "sensitive_variables": sum(1 for v in variables if v.get("sensitive")),
        "env_variables": sum(1 for v in variables if v.get("category") == "env"),
        "locked": bool(env.get("locked")),
        "locked_by": env.get("locked_by"),
        "run_in_progress": run.get("id") if run else None,
        "reads_state_of": join_slugs(remote_state_reads(state.data if state else None)),  # split_slugs reads it
        "teams": teams.inventory_cell(legacy, org, name),
    }


def legacy_environments(legacy: LegacyClient, org: str, names: Iterable[str] | None = None) -> pd.DataFrame:
    """The legacy estate (or the named environments) as a DataFrame, one row per environment.

    Raises:
        NotFoundError: a named environment does not exist (the message names it).
    """
    if names is None:
        rows = [describe_environment(legacy, org, env) for env in legacy.list_environments(org)]
    else:
        rows = [describe_environment(legacy, org, name) for name in names]
    return pd.DataFrame(rows, columns=ENVIRONMENT_COLUMNS)


def _workspace_state(tfe: TfeClient, new_org: str, workspace: str) -> tuple[bool, bool, str | None]:
    """(workspace exists, it holds a state, that state's lineage) read from the downloaded state bytes:
    a state-version answer has no lineage (state-versions.mdx; go-tfe `StateVersion`)."""
    ws = tfe.find_workspace(new_org, workspace)
    if ws is None:
        return False, False, None
    held = tfe.held_state(ws)
    if held is None:
        return True, False, None
    # A state without a lineage is still someone else's state: shown so, never adopted.
    return True, True, held.lineage or "(no lineage)"


def _present(value: Any) -> bool:
    """True for a real value; False for None, "" and the NaN pandas puts in empty cells."""
    return value is not None and value == value and value != ""


def readiness(row: dict[str, Any], issues: list[str], exists: bool, ws_lineage: str | None) -> tuple[bool, str]:
    """The verdict for one environment: (ready, reason). Pure, so every rule is unit-tested."""
    row = {k: v for k, v in row.items() if _present(v)}
    if issues:
        return False, "; ".join(issues)
    if row.get("state_serial") is None:
        return False, "the legacy environment has no state to migrate"
    if row.get("run_in_progress"):
        return False, f"a legacy run is in progress ({row['run_in_progress']}); wait for it to finish"
    if row.get("locked"):
        return False, f"the legacy environment is locked by {row.get('locked_by') or 'someone'}; ask them to unlock it"
    if exists and ws_lineage and ws_lineage != row.get("lineage"):
        return False, (f"the workspace already holds a state of another lineage ({ws_lineage}); "
                       f"map this environment to another workspace")
    if exists and ws_lineage:
        return True, "ready: the workspace already holds this lineage (the steps will adopt it)"
    if exists:
        return True, "ready: the workspace exists without state (the steps will adopt it)"
    return True, "ready"


def mapping_frame(rows: list[MappingRow], environments: pd.DataFrame, tfe: TfeClient) -> pd.DataFrame:
    """Each mapping row with what the new host already has and a readiness verdict.

    Args:
        rows: the mapping.
        environments: `legacy_environments` for (at least) these environments.
        tfe: client of the new host (reads only).
    """
    by_env = {r["environment"]: r for r in environments.to_dict("records")}
    found = problems(rows)
    known_teams: dict[str, set[str]] = {}
    out = []
    for row in rows:
        env = by_env.get(row.legacy_slug, {})
        issues = list(found[row.legacy_slug])
        if not env:
            issues.append("not in the legacy inventory (unknown environment)")
        exists, has_state, lineage = (_workspace_state(tfe, row.new_org, row.workspace) if not issues
                                      else (False, False, None))
        ready, reason = readiness(env, issues, exists, lineage)
        out.append({"environment": row.legacy_slug, "workspace": row.workspace_slug,
                    "workspace_exists": exists, "workspace_has_state": has_state,
                    "ready": ready, "reason": reason,
                    "teams": teams.mapping_cell(tfe, row.new_org, env.get("teams"), known_teams)})
    return pd.DataFrame(out, columns=["environment", "workspace", "workspace_exists", "workspace_has_state",
                                      "ready", "reason", "teams"])
