"""Step 2: one workspace per legacy environment, linked like it, held back until the state is there.

The workspace gets the mapped name, the environment's repository, branch and working directory, its
Terraform version, auto-apply off, and a lock whose reason names the migration, so no run plans
before step 3 has moved the state (the seed's advice). To leave no window in which a push could start
a run, the workspace is created without its repository, locked, and only then linked.

What the workspace mirrors comes from two sources (the legacy host documented no way to read an
environment): the mapping's facts (repository, branch, working directory, Terraform version; the names of
the sensitive and environment variables; the teams) and the host's latest configuration version (its
non-sensitive Terraform variables, with the HCL flag). A fact the mapping leaves `?` is refused, naming
where in the legacy UI to read it.

Variables are carried over. The Terraform variables the host shows are copied with their values; the
mapping's non-sensitive environment variables with the values it gives. Sensitive values cannot be read
from anywhere: each is created with the value of `$TFE_RUNBOOK_VAR__<workspace>__<KEY>`
(`mapping.secret_variable`: scoped to this workspace, so a value set for one environment never reaches
another) when the operator set it, otherwise empty, marked in its description, and listed for the
operator. Verification refuses while any is still marked empty, unless `accept_empty_sensitive` is set.
(An operator who types a value in the UI also removes the marker from the description.) The plan table
names each sensitive value's source, never the value.

An existing workspace that matches is adopted; one that differs is shown as a diff and refused.

With `migration_path = "native"` the host itself creates the workspace from the legacy environment
(`runbook_lib.native`); this step then locks it and adopts what the host copied.

The legacy environment's teams are carried over as `runbook_lib.teams` describes (created or adopted by
name, members with an account added, the same access level granted), unless `migrate_teams = False`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import pandas as pd

from runbook_lib import native, teams
from runbook_lib.context import StepContext
from runbook_lib.errors import NotFoundError, StepError, ValidationError
from runbook_lib.jsonapi import Resource
from runbook_lib.legacy import NOT_FOUND, STATE, configuration_variables, not_visible
from runbook_lib.mapping import UNKNOWN, secret_variable
from runbook_lib.results import StepResult
from runbook_lib.steps import plan_frame, refusals
from runbook_lib.steps.organization import recorded_vcs_token_id, vcs_token_id
from runbook_lib.terraform import REFUSES_LEGACY_PROVIDERS, cannot_read_state, version_tuple

EMPTY_SENSITIVE_MARK = "[tfe-runbook: sensitive value not carried over - enter it]"
COMPARED = ("terraform-version", "working-directory", "auto-apply", "execution-mode")
#: The facts the host also shows (read when the mapping says `?`), and those only the mapping can say (`?` refuses;
#: `teams` only while teams are carried over).
HOST_FACTS = ("terraform_version", "vcs_repo", "vcs_branch")
OPERATOR_FACTS = ("working_directory", "sensitive_variables", "env_variables", "teams")
FACTS = HOST_FACTS + OPERATOR_FACTS


def _operator_facts(ctx: StepContext) -> tuple[str, ...]:
    return OPERATOR_FACTS if teams.enabled(ctx) else tuple(f for f in OPERATOR_FACTS if f != "teams")


def _facts(ctx: StepContext) -> tuple[str, ...]:
    return HOST_FACTS + _operator_facts(ctx)


def lock_reason(ctx: StepContext) -> str:
    """The lock reason that marks a workspace as held by this migration."""
    return f"tfe-runbook: migrating {ctx.row.legacy_slug}; unlocked by step 05 after the state moved"


@dataclass(frozen=True)
class LegacyView:
    """What step 2 mirrors of the legacy environment.

    Attributes:
        vcs: {"repo", "branch", "working_directory"} from the mapping, or None when it has no repository.
        terraform_version: the mapping's (the survey took it from the state).
        variables: [{key, value, category, hcl, sensitive}]: the host's non-sensitive Terraform variables and
            the mapping's sensitive and environment variables.
        configuration_version: the latest configuration version's number (None: none, or not visible).
    """

    vcs: dict[str, str] | None
    terraform_version: str
    variables: list[dict[str, Any]]
    configuration_version: int | None


def legacy_view(ctx: StepContext) -> LegacyView:
    """Read what the workspace must mirror: the mapping's facts and the host's configuration version.

    The Terraform version, repository and branch are facts the host shows (the state's header, the
    configuration's `remote_slug` and `git_branch`): the survey writes them into the mapping, and where the
    mapping still says `?` they are read here. The rest only the mapping can say.

    Raises:
        StepError: a needed fact is unknown, or the legacy host answers 404 (missing or not visible); nothing
            was changed.
    """
    missing = ctx.facts_missing(*_operator_facts(ctx))
    if missing:
        raise StepError(f"step 2 refused, nothing changed: {missing}.")
    row = ctx.row
    cv = ctx.legacy.latest_configuration_version(row.legacy_org, row.legacy_env)
    read = None
    if cv is None or row.terraform_version.strip() == UNKNOWN:
        # A 404 on the configuration is "no version, or an environment this token cannot see": the state read
        # tells them apart (and gives the Terraform version the mapping left unknown).
        read = ctx.legacy.read_state(row.legacy_org, row.legacy_env)
        if read.found == NOT_FOUND:
            raise StepError(f"step 2 refused, nothing changed: "
                            f"{not_visible(row.legacy_slug, read.url, ctx.settings.legacy_token_var)}.")
    if cv is None and not ctx.options.accept_no_configuration:
        raise StepError(f"step 2 refused, nothing changed: the legacy host shows no configuration version of "
                        f"{row.legacy_slug}, so none of its Terraform variables can be read; check its Variables "
                        f"page ({ctx.legacy_page('variables')}): if it has none, set accept_no_configuration = "
                        f"True, else enter them in the workspace by hand and set it.")
    metadata = (cv or {}).get("metadata") or {}
    host = {"terraform_version": (read.state.terraform_version if read and read.state else None) or "",
            "vcs_repo": metadata.get("remote_slug") or "", "vcs_branch": metadata.get("git_branch") or ""}
    facts = {c: getattr(row, c).strip() if getattr(row, c).strip() != UNKNOWN else host[c] for c in HOST_FACTS}
    if not facts["terraform_version"]:
        raise StepError(f"step 2 refused, nothing changed: neither the mapping nor the legacy state says which "
                        f"Terraform version {row.legacy_slug} runs; write it into the mapping's terraform_version.")
    target = ctx.options.terraform_version or facts["terraform_version"]
    if version_tuple(target) >= REFUSES_LEGACY_PROVIDERS:
        # The workspace's Terraform must read the state step 3 carries over byte for byte: one more read, only
        # for a version that may not (a legacy estate migrates at the version that wrote its states).
        read = read or ctx.legacy.read_state(row.legacy_org, row.legacy_env)
        state = read.state if read.found == STATE else None
        why = state and cannot_read_state(target, state.version, state.terraform_version)
        if why:
            raise StepError(f"step 2 refused, nothing changed: {why}. Migrate {row.legacy_slug} at "
                            f"{state.terraform_version or 'the version that wrote it'} (the mapping's "
                            f"terraform_version, no terraform_version option) and upgrade the workspace after the "
                            f"migration, or upgrade the state on the legacy side first")
    if row.vcs_repo.strip() == UNKNOWN and not facts["vcs_repo"]:
        raise StepError(f"step 2 refused, nothing changed: {ctx.facts_missing('vcs_repo')}.")
    vcs = None
    if facts["vcs_repo"]:
        vcs = {"repo": facts["vcs_repo"], "branch": facts["vcs_branch"],
               "working_directory": row.working_directory.strip().strip("/")}
    shown = configuration_variables(cv)
    hidden = [{"key": v.key, "value": v.value, "category": v.category, "hcl": False, "sensitive": v.sensitive}
              for v in row.hidden_variables]
    taken = {(v["key"], v["category"]) for v in hidden}
    variables = [v for v in shown if (v["key"], v["category"]) not in taken] + hidden
    return LegacyView(vcs, facts["terraform_version"], variables, (cv or {}).get("version"))


def desired(ctx: StepContext, view: LegacyView) -> dict[str, Any]:
    """The workspace attributes that mirror the legacy environment."""
    vcs = view.vcs or {}
    attrs: dict[str, Any] = {
        "terraform-version": ctx.options.terraform_version or view.terraform_version,
        "working-directory": vcs.get("working_directory") or "",
        "auto-apply": False,
        # Step 5 proves the cut-over by a run on the host: a workspace that executes locally never runs.
        "execution-mode": "remote",
        "description": f"Migrated from legacy Terraform Enterprise environment {ctx.row.legacy_slug}",
    }
    if vcs:
        # With `queue-all-runs` false (TFE's default) "runs triggered by a VCS change will not be queued
        # until at least one run is manually queued" (workspaces.mdx): step 5's push would start nothing.
        attrs["queue-all-runs"] = True
    return attrs


def _vcs_differences(ws: Resource, view: LegacyView) -> list[dict[str, Any]]:
    vcs = view.vcs or {}
    have = ws.get("vcs-repo") or {}
    if have and not vcs:
        return [{"attribute": "vcs-repo", "workspace": have.get("identifier"), "legacy": None}]
    if not (vcs and have):
        return []  # not linked yet: apply links it once the workspace is locked
    rows = []
    for key, legacy_key in (("identifier", "repo"), ("branch", "branch")):
        want = vcs.get(legacy_key) or ""
        if (have.get(key) or "") != want and not (key == "branch" and not want):
            rows.append({"attribute": f"vcs-repo.{key}", "workspace": have.get(key), "legacy": want})
    return rows


def workspace_diff(ws: Resource, ctx: StepContext, view: LegacyView) -> pd.DataFrame:
    """Attributes where an existing workspace differs from what step 2 would create (empty: adoptable)."""
    want = desired(ctx, view)
    rows = [{"attribute": key, "workspace": ws.get(key), "legacy": want[key]}
            for key in COMPARED if ws.get(key) != want[key] and not (key == "working-directory" and
                                                                    (ws.get(key) or "") == want[key])]
    rows += _vcs_differences(ws, view)
    return pd.DataFrame(rows, columns=["attribute", "workspace", "legacy"])


def _secret(ctx: StepContext, key: str) -> tuple[str, str]:
    """(the variable that holds this workspace's sensitive value of `key`, its value or "")."""
    name = secret_variable(ctx.row, key, ctx.options.sensitive_var_prefix)
    return name, os.environ.get(name, "")


def _variable_plan(ctx: StepContext, legacy_vars: list[dict[str, Any]], ws_vars: list[Resource]) -> list[dict]:
    existing = {(v.get("key"), v.get("category")): v for v in ws_vars}
    rows = []
    for var in legacy_vars:
        key, category = var["key"], var.get("category") or "terraform"
        have = existing.get((key, category))
        name = f"{category}:{key}"
        if have is None:
            if var.get("sensitive"):
                secret, value = _secret(ctx, key)
                source = f"from ${secret}" if value else f"empty, for the operator to fill in (or set ${secret})"
                detail = f"sensitive, value {source}"
            else:
                detail = "copied from the legacy host" if category == "terraform" else "from the mapping"
            rows.append({"object": "variable", "name": name, "action": "create", "detail": detail})
            continue
        problems = []
        if bool(have.get("sensitive")) != bool(var.get("sensitive")):
            problems.append("sensitive flag differs")
        if bool(have.get("hcl")) != bool(var.get("hcl")):
            problems.append("hcl flag differs")
        if not var.get("sensitive") and have.get("value") != var.get("value"):
            problems.append("value differs")
        rows.append({"object": "variable", "name": name, "action": "refuse" if problems else "adopt",
                     "detail": "; ".join(problems) + " (fix one side by hand)" if problems else "already there"})
    return rows


def _read(ctx: StepContext) -> tuple[LegacyView, Resource | None, list[Resource]]:
    """One read of what the step compares: the legacy view, the workspace, its variables."""
    view = legacy_view(ctx)
    ws = ctx.tfe.find_workspace(ctx.row.new_org, ctx.row.workspace)
    ws_vars = list(ctx.tfe.list_variables(ws.id)) if ws is not None else []
    return view, ws, ws_vars


def plan(ctx: StepContext) -> pd.DataFrame:
    """What apply would do for the workspace, its lock, its VCS link and its variables."""
    missing = ctx.facts_missing(*_operator_facts(ctx))
    if missing:
        # Only the operator can fill these in: apply would refuse, and the plan says so (no later step fixes it).
        return plan_frame([{"object": "mapping", "name": ctx.row.legacy_slug, "action": "refuse",
                            "detail": missing}])
    try:
        read = _read(ctx)
    except StepError as exc:
        return plan_frame([{"object": "legacy environment", "name": ctx.row.legacy_slug, "action": "refuse",
                            "detail": str(exc).removeprefix("step 2 refused, nothing changed: ")}])
    return _plan_rows(ctx, *read)


def _team_plans(ctx: StepContext, ws: Resource | None) -> list[teams.TeamMapping]:
    return teams.plan_teams(ctx, ws) if teams.enabled(ctx) else []


def _plan_rows(ctx: StepContext, view: LegacyView, ws: Resource | None, ws_vars: list[Resource],
               team_plans: list[teams.TeamMapping] | None = None) -> pd.DataFrame:
    rows: list[dict[str, Any]] = []
    if ws is None:
        want = desired(ctx, view)
        rows.append({"object": "workspace", "name": ctx.row.workspace_slug, "action": "create",
                     "detail": ", ".join(f"{k}={want[k]!r}" for k in COMPARED)})
        rows.append({"object": "lock", "name": ctx.row.workspace_slug, "action": "create", "detail": lock_reason(ctx)})
    else:
        diff = workspace_diff(ws, ctx, view)
        if len(diff):
            changes = "; ".join(f"{r['attribute']}: workspace {r['workspace']!r}, legacy {r['legacy']!r}"
                                for r in diff.to_dict("records"))
            rows.append({"object": "workspace", "name": ctx.row.workspace_slug, "action": "refuse",
                         "detail": f"exists and differs ({changes}); fix it by hand or map another name"})
        else:
            rows.append({"object": "workspace", "name": ctx.row.workspace_slug, "action": "adopt",
                         "detail": f"{ws.id} matches"})
        rows.append({"object": "lock", "name": ctx.row.workspace_slug,
                     "action": "adopt" if ws.get("locked") else "create",
                     "detail": "already locked" if ws.get("locked") else lock_reason(ctx)})
    rows += native.plan_rows(ctx, ws)
    vcs = view.vcs or {}
    if vcs:
        linked = ws is not None and (ws.get("vcs-repo") or {}).get("identifier") == vcs.get("repo")
        rows.append({"object": "vcs link", "name": vcs.get("repo"), "action": "adopt" if linked else "create",
                     "detail": f"branch {vcs.get('branch') or '(default)'}, working directory "
                               f"{vcs.get('working_directory') or '(root)'}"})
        if ws is not None and not ws.get("queue-all-runs"):
            rows.append({"object": "queue-all-runs", "name": ctx.row.workspace_slug, "action": "update",
                         "detail": "false -> true, so the first push after linking queues a run"})
    else:
        rows.append({"object": "vcs link", "name": "-", "action": "none",
                     "detail": "the mapping names no repository (vcs_repo is empty); the workspace gets none"})
    rows += _variable_plan(ctx, view.variables, ws_vars)
    if teams.enabled(ctx):
        rows += teams.plan_rows(_team_plans(ctx, ws) if team_plans is None else team_plans, ctx.row.workspace_slug)
    return plan_frame(rows)


def _vcs_repo(ctx: StepContext, view: LegacyView, *, recorded: bool = False) -> dict[str, Any] | None:
    """The workspace's `vcs-repo` mirroring the environment's link (None when it has none); with `recorded`,
    the VCS token step 1 proved (its evidence) rather than one more read of the organization's connections."""
    vcs = view.vcs or {}
    if not vcs:
        return None
    token = (recorded and recorded_vcs_token_id(ctx)) or vcs_token_id(ctx)
    repo = {"identifier": vcs["repo"], "oauth-token-id": token}
    if vcs.get("branch"):
        repo["branch"] = vcs["branch"]
    return repo


def apply(ctx: StepContext) -> pd.DataFrame:
    """Create or adopt the workspace, lock it, link it, carry the variables over.

    Raises:
        StepError: the plan refuses (an existing workspace or variable differs); nothing was changed.
    """
    # The plan's one read is what apply acts on (it used to read everything a second time right after).
    view, ws, ws_vars = _read(ctx)
    # Read once, before the first write: what the teams need is decided here and applied below (a write
    # forgets the read memo, so asking again later would read every team again).
    team_plans = _team_plans(ctx, ws)
    refused = refusals(_plan_rows(ctx, view, ws, ws_vars, team_plans))
    if refused:
        raise StepError("step 2 refused, nothing changed: " + "; ".join(refused))
    done = []
    if ws is not None:
        ws.adopted = True
    else:
        if native.requested(ctx):
            ws = native.create(ctx, desired(ctx, view), _vcs_repo(ctx, view))
        else:
            ws = ctx.tfe.create_workspace(ctx.row.new_org, ctx.row.workspace, desired(ctx, view), adopt_existing=True)
        # Created just now it has no variables (unless the host imported them); adopted after a race it may.
        ws_vars = list(ctx.tfe.list_variables(ws.id)) if ws.adopted or native.requested(ctx) else []
    done.append({"object": "workspace", "name": ws.id, "result": "adopted" if ws.adopted else "created"})
    if ws.adopted and len(workspace_diff(ws, ctx, view)):
        raise StepError(f"workspace {ctx.row.workspace_slug} appeared while planning and differs; "
                        f"nothing else was changed: inspect it and run the step again.")
    if not ws.get("locked"):
        ws = ctx.tfe.lock_workspace(ws.id, lock_reason(ctx))
        done.append({"object": "lock", "name": ws.id, "result": "locked"})
    vcs = view.vcs or {}
    if vcs and (ws.get("vcs-repo") or {}).get("identifier") != vcs.get("repo"):
        try:
            ws = ctx.tfe.update_workspace(ws.id, {"vcs-repo": _vcs_repo(ctx, view, recorded=True),
                                                  "queue-all-runs": True})
        except (NotFoundError, ValidationError):
            if not recorded_vcs_token_id(ctx):
                raise
            # the token step 1 recorded is gone (the connection was remade since): the host names the current one
            ws = ctx.tfe.update_workspace(ws.id, {"vcs-repo": _vcs_repo(ctx, view), "queue-all-runs": True})
        done.append({"object": "vcs link", "name": vcs["repo"], "result": "linked"})
    if vcs and not ws.get("queue-all-runs"):
        ws = ctx.tfe.update_workspace(ws.id, {"queue-all-runs": True})
        done.append({"object": "queue-all-runs", "name": ws.id, "result": "set to true"})
    existing = {(v.get("key"), v.get("category")) for v in ws_vars}
    for var in view.variables:
        category = var.get("category") or "terraform"
        if (var["key"], category) in existing:
            continue
        if var.get("sensitive"):
            value = _secret(ctx, var["key"])[1]
            description = None if value else EMPTY_SENSITIVE_MARK
        else:
            value, description = var.get("value") or "", None
        ctx.tfe.create_variable(ws.id, var["key"], value, category=category, hcl=bool(var.get("hcl")),
                                sensitive=bool(var.get("sensitive")), description=description)
        done.append({"object": "variable", "name": f"{category}:{var['key']}",
                     "result": "created" + (" (sensitive, EMPTY)" if description else "")})
    if teams.enabled(ctx):
        # the host's own import created teams and access itself: decide again on what it left
        done += teams.apply_teams(ctx, ws, None if native.requested(ctx) else team_plans)
    return pd.DataFrame(done, columns=["object", "name", "result"])


def sensitive_to_fill(ctx: StepContext, variables: list[Resource] | None = None) -> pd.DataFrame:
    """Sensitive variables of the workspace still marked empty: the operator's to-do list.

    Args:
        variables: the workspace's variables when the caller has just read them (else they are read).
    """
    if variables is None:
        ws = ctx.tfe.find_workspace(ctx.row.new_org, ctx.row.workspace)
        variables = [] if ws is None else list(ctx.tfe.list_variables(ws.id))
    rows = [{"key": v.get("key"), "category": v.get("category"), "workspace": ctx.row.workspace_slug}
            for v in variables if EMPTY_SENSITIVE_MARK in (v.get("description") or "")]
    return pd.DataFrame(rows, columns=["key", "category", "workspace"])


def verify(ctx: StepContext) -> StepResult:
    """The workspace exists as desired, is locked, linked, and holds every legacy variable."""
    try:
        view = legacy_view(ctx)
    except StepError as exc:
        return StepResult(False, str(exc).removeprefix("step 2 refused, nothing changed: "))
    ws = ctx.tfe.find_workspace(ctx.row.new_org, ctx.row.workspace)
    if ws is None:
        return StepResult(False, f"workspace {ctx.row.workspace_slug} does not exist")
    diff = workspace_diff(ws, ctx, view)
    if len(diff):
        return StepResult(False, f"workspace differs from the legacy environment: {diff.to_dict('records')}",
                          table=diff)
    if not ws.get("locked"):
        return StepResult(False, f"workspace {ws.id} is not locked: a run could plan before the state is there")
    vcs = view.vcs or {}
    if vcs and (ws.get("vcs-repo") or {}).get("identifier") != vcs.get("repo"):
        return StepResult(False, f"workspace {ws.id} is not linked to {vcs.get('repo')}")
    if vcs and not ws.get("queue-all-runs"):
        return StepResult(False, f"workspace {ws.id} has queue-all-runs false: a push would queue no run until one "
                                 f"is queued by hand; run this step again (apply sets it)")
    variables = list(ctx.tfe.list_variables(ws.id))
    have = {(v.get("key"), v.get("category")) for v in variables}
    legacy_vars = view.variables
    missing = [f"{v.get('category')}:{v['key']}" for v in legacy_vars
               if (v["key"], v.get("category") or "terraform") not in have]
    if missing:
        return StepResult(False, f"variables missing in the workspace: {', '.join(missing)}")
    empty = sensitive_to_fill(ctx, variables)  # the list just read, not a second read of the same workspace
    evidence = {"workspace_id": ws.id, "variables": len(legacy_vars), "locked": True,
                "vcs_repo": vcs.get("repo"), "empty_sensitive": sorted(empty["key"]),
                "legacy_configuration_version": view.configuration_version,
                "from_mapping": {c: getattr(ctx.row, c) for c in _facts(ctx)},
                "sensitive_sources": {f"{v['category']}:{v['key']}": "$" + _secret(ctx, v["key"])[0]
                                      for v in legacy_vars if v.get("sensitive")}}
    if len(empty) and not ctx.options.accept_empty_sensitive:
        return StepResult(False, f"sensitive variables still empty: {', '.join(empty['key'])}; enter their values "
                                 f"(or set ${secret_variable(ctx.row, '<KEY>', ctx.options.sensitive_var_prefix)} and "
                                 f"run again), or set "
                                 f"accept_empty_sensitive = True", evidence, table=empty)
    if teams.enabled(ctx):
        failed, evidence["teams"] = teams.verify_teams(ctx, ws)
        if failed is not None:
            return failed
    accepted = " (operator accepted empty sensitive values)" if len(empty) else ""
    granted = f", {len(evidence['teams'])} teams with their access" if evidence.get("teams") else ""
    return StepResult(True, f"workspace {ws.id} locked, linked, {len(legacy_vars)} variables{granted}{accepted}",
                      evidence)
