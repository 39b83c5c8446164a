"""The preflight inventory: can we reach both hosts, what is in the legacy estate, where does it go.

Every migration starts here (notebook 00). Three tables:

- `preflight_checks`: both tokens present and accepted, both hosts reachable, TLS verified, the new
  API's rate limit known.
- `legacy_environments`: one row per legacy environment, from what the legacy host documents: the states
  list says which environments there are (those with state); the state gives the Terraform version, serial,
  lineage, resource count and the `terraform_remote_state` reads of other legacy environments; the latest
  configuration version gives its number, the repository and branch it came from (`remote_slug`,
  `git_branch`) and the non-sensitive Terraform variables. What the host cannot give (the working directory,
  sensitive and environment variables, teams; locks and runs in progress, which only its UI shows) comes from
  the mapping, where the operator writes it; each row's `sources` says which facts came from where.
- `mapping_frame`: each environment's target workspace, with naming problems, collisions, workspaces
  that already exist (with or without state), a readiness verdict with its reason, and which new
  teams step 2 would create, adopt or refuse.

Two requests per environment (state, latest configuration version), plus the states list.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, replace
from typing import Any, Iterable

import pandas as pd

from runbook_lib import teams
from runbook_lib.errors import ApiError, ConfigError, NotFoundError
from runbook_lib.evidence import join_slugs
from runbook_lib.legacy import NO_STATE, NOT_FOUND, STATE, LegacyClient, configuration_variables
from runbook_lib.mapping import FACT_COLUMNS, UNKNOWN, MappingRow, problems
from runbook_lib.settings import Settings
from runbook_lib.tfe import TfeClient

MIN_API_VERSION = (2, 5)
ENVIRONMENT_COLUMNS = ["environment", "terraform_version", "state_serial", "lineage", "resources",
                       "configuration_version", "vcs_repo", "vcs_branch", "working_directory", "variables",
                       "sensitive_variables", "env_variables", "reads_state_of", "teams", "sources"]
#: What the legacy API does not show: the operator checks it in the UI before migrating (upgrade guide 3.a).
UI_ONLY = "locks and runs in progress are shown only in the legacy UI (check them there, guide step 3.a)"
#: How the inventory says that a legacy state answered 404: never "gone", never "no state".
STATE_404 = "404 (missing, or not visible to the token)"


def _check(name: str, ok: bool, detail: str) -> dict[str, Any]:
    return {"check": name, "ok": bool(ok), "detail": detail}


def preflight_checks(settings: Settings, legacy_org: str, *, legacy: LegacyClient | None = None,
                     tfe: TfeClient | None = None, legacy_env: str = "",
                     workspace: tuple[str, str] | None = None) -> pd.DataFrame:
    """Check tokens, reachability, TLS and the rate limit; never raises for a failed check.

    Args:
        legacy_env: one environment's survey (kept for the callers; the legacy check is the same either way).
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
        # An organization is a user on the legacy product (users.html.md), visible only to its members: one
        # read proves the address, the token and that the token sees the organization.
        legacy.get_user(legacy_org)
        rows.append(_check("legacy API", True, f"organization {legacy_org} visible with ${settings.legacy_token_var}"))
    except NotFoundError as exc:
        rows.append(_check("legacy API", False, f"{exc.url or legacy_org} answered 404: organization {legacy_org} "
                                                f"does not exist or ${settings.legacy_token_var} cannot see it; "
                                                f"check the name and that the token's user is a member"))
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


def describe_environment(legacy: LegacyClient, row: MappingRow) -> dict[str, Any]:
    """One inventory row for a legacy environment (2 requests: the state, the latest configuration version).

    Args:
        row: the environment's mapping row; its facts (where not `?`) are the operator's word and win over
            what the host shows.
    """
    from runbook_lib.state import TerraformState

    org, name = row.legacy_org, row.legacy_env
    read = legacy.read_state(org, name)
    parsed = TerraformState.from_bytes(read.state.data) if read.state else None
    cv = legacy.latest_configuration_version(org, name)
    metadata = (cv or {}).get("metadata") or {}
    host = {"terraform_version": (parsed.terraform_version if parsed else None) or None,
            "vcs_repo": metadata.get("remote_slug") or None, "vcs_branch": metadata.get("git_branch") or None}
    facts, from_host, from_mapping, unknown, differs = {}, [], [], [], []
    for column in FACT_COLUMNS:
        given = getattr(row, column).strip()
        if given != UNKNOWN:
            facts[column] = given
            from_mapping.append(column)
            if host.get(column) and host[column] != given:
                differs.append(f"{column}: the mapping says {given!r}, the host {host[column]!r}")
        elif host.get(column):
            facts[column] = host[column]
            from_host.append(column)
        else:
            facts[column] = UNKNOWN
            unknown.append(column)
    state_word = {STATE: f"state serial {parsed.serial}" if parsed else "state",
                  NO_STATE: "no state", NOT_FOUND: STATE_404}[read.found]
    config_word = f"configuration v{cv.get('version')}" if cv else "no configuration version (or not visible)"
    sources = [f"host: {state_word}, {config_word}" + (f" ({', '.join(from_host)})" if from_host else "")]
    if from_mapping:
        sources.append(f"mapping: {', '.join(from_mapping)}")
    if unknown:
        sources.append(f"unknown: {', '.join(unknown)}")
    sources += differs
    hidden = row.hidden_variables
    return {
        "environment": row.legacy_slug,
        "terraform_version": facts["terraform_version"],
        "state_serial": parsed.serial if parsed else None,
        "lineage": parsed.lineage if parsed else None,
        "resources": parsed.resource_count if parsed else 0,
        "configuration_version": cv.get("version") if cv else None,
        "vcs_repo": facts["vcs_repo"],
        "vcs_branch": facts["vcs_branch"],
        "working_directory": facts["working_directory"],
        "variables": len(configuration_variables(cv)),
        # names only (an environment variable's value stays in the mapping)
        "sensitive_variables": UNKNOWN if "sensitive_variables" in unknown
        else ", ".join(f"{v.category}:{v.key}" for v in hidden if v.sensitive),
        "env_variables": UNKNOWN if "env_variables" in unknown
        else ", ".join(v.key for v in hidden if not v.sensitive),
        "reads_state_of": join_slugs(remote_state_reads(read.state.data if read.state else None)),  # split_slugs reads it
        "teams": facts["teams"],
        "sources": "; ".join(sources),
        "legacy_state": {STATE: "read", NO_STATE: "none (204)", NOT_FOUND: STATE_404}[read.found],
    }


def legacy_environments(legacy: LegacyClient, org: str, rows: Iterable[MappingRow] | None = None) -> pd.DataFrame:
    """The legacy estate (or the environments of `rows`) as a DataFrame, one row per environment.

    Without `rows`, the environments are those of the organization's states list (the documented inventory:
    an environment without state is not listed, and has nothing to migrate), with every operator fact unknown.
    """
    if rows is None:
        rows = [MappingRow(org, name, "", "") for name in legacy.environments_with_state(org)]
    described = [describe_environment(legacy, row) for row in rows]
    return pd.DataFrame(described, columns=ENVIRONMENT_COLUMNS + ["legacy_state"])


def fill_from_host(rows: Iterable[MappingRow], environments: pd.DataFrame) -> list[MappingRow]:
    """`rows` with their unknown (`?`) facts taken from what the host showed (`legacy_environments`): the
    Terraform version (state), repository and branch (configuration metadata). The operator's cells stay."""
    shown = {e["environment"]: e for e in environments.to_dict("records")}
    out = []
    for row in rows:
        env = shown.get(row.legacy_slug, {})
        filled = {c: str(env[c]) for c in row.unknown("terraform_version", "vcs_repo", "vcs_branch")
                  if _present(env.get(c)) and env.get(c) != UNKNOWN}
        out.append(replace(row, **filled))
    return out


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
    if row.get("legacy_state") == STATE_404:
        return False, ("the legacy state answered 404: the environment does not exist or the token cannot see it "
                       "(the legacy API answers both alike); check the name and the token's membership")
    if row.get("state_serial") is None:
        return False, "the legacy environment has no state to migrate"
    unknown = [c for c in FACT_COLUMNS if row.get(c) == UNKNOWN]
    if unknown:
        return False, (f"the mapping does not say {', '.join(unknown)} ('?'): the legacy API does not show "
                       f"{'them' if len(unknown) > 1 else 'it'}; read them off the environment's pages in the legacy "
                       f"UI and write them into the mapping")
    if exists and ws_lineage and ws_lineage != row.get("lineage"):
        return False, (f"the workspace already holds a state of another lineage ({ws_lineage}); "
                       f"map this environment to another workspace")
    if exists and ws_lineage:
        return True, f"ready: the workspace already holds this lineage (the steps will adopt it); {UI_ONLY}"
    if exists:
        return True, f"ready: the workspace exists without state (the steps will adopt it); {UI_ONLY}"
    return True, f"ready; {UI_ONLY}"


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
                    "teams": teams.mapping_cell(tfe, row.new_org, [asdict(t) for t in row.team_list], known_teams)})
    return pd.DataFrame(out, columns=["environment", "workspace", "workspace_exists", "workspace_has_state",
                                      "ready", "reason", "teams"])
