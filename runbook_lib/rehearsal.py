"""What a rehearsal against the sandbox passes to the runbook: the sandbox's VCS connection settings.

A real migration names its VCS provider in the step-1 parameters (`vcs_service_provider`,
`vcs_http_url`, ...) and keeps the provider's access token in `$VCS_OAUTH_TOKEN`. The sandbox's
"provider" is its folder of bare git repositories; these helpers give the matching values, so the
demo, the tests and an operator rehearsing by hand use the same ones.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

NEW_ORG = "acme"
OPERATOR_EMAIL = "operator@acme.example"
VCS_TOKEN_VAR = "VCS_OAUTH_TOKEN"


def batch_parameters(env: Mapping[str, str]) -> dict[str, str]:
    """Notebook parameters for every step of a rehearsal batch (no secrets: names and URLs only).

    Args:
        env: the sandbox's `sandbox.env` values.
    """
    git_url = "file://" + env["SANDBOX_GIT_ROOT"]
    return {"organization_email": OPERATOR_EMAIL, "vcs_service_provider": "gitlab_community_edition",
            "vcs_http_url": git_url, "vcs_api_url": git_url, "vcs_token_var": VCS_TOKEN_VAR}


def batch_environ(env: Mapping[str, str]) -> dict[str, str]:
    """Environment variables for a rehearsal batch: the sandbox's, plus a VCS token and the git base.

    The sandbox accepts any VCS token value; a real migration puts the provider's token in
    `$VCS_OAUTH_TOKEN` instead.
    """
    values = dict(env)
    values.setdefault(VCS_TOKEN_VAR, "sandbox-vcs-token")
    values.setdefault("TFE_RUNBOOK_GIT_BASE", env["SANDBOX_GIT_ROOT"])
    return values


def clear_blockers(sandbox: Any, environments: Any) -> list[str]:
    """Clear what keeps seeded environments from migrating, as an operator would; returns what it did.

    - A legacy lock is lifted (an operator asks its owner first).
    - The seeded legacy run "in progress" never ends by itself: where a real operator waits for it or
      discards it in the legacy UI, the sandbox is told to finish it.

    Args:
        sandbox: a running in-process `Sandbox`.
        environments: the preflight inventory's environments table (`inventory.legacy_environments`).
    """
    from runbook_lib.legacy import LegacyClient
    from runbook_lib.settings import Settings

    legacy = LegacyClient(Settings.from_env(sandbox.env))
    org = sandbox.legacy_org
    done = []
    for row in environments.to_dict("records"):
        name = row["environment"].split("/", 1)[1]
        if row["locked"]:
            legacy.unlock(org, name)
            done.append(f"{row['environment']}: locked by {row['locked_by']}; lock lifted")
        run_id = row["run_in_progress"]
        if isinstance(run_id, str) and run_id:
            sandbox.store.update_legacy_run(run_id, status="planned_and_finished")
            done.append(f"{row['environment']}: legacy run {run_id} in progress; the sandbox finished it "
                        f"(on a real host: wait for it, or discard it in the legacy UI)")
    return done


def sensitive_values(sandbox: Any) -> dict[str, str]:
    """`TFE_RUNBOOK_VAR_<KEY>` values for the seeded sensitive variables (step 2 reads them).

    An operator takes sensitive values from their own secret store; the sandbox's store is its seed.
    The caller puts them into the environment of the batch (never into a notebook parameter).
    """
    return {f"TFE_RUNBOOK_VAR_{var.key}": var.value
            for spec in sandbox.seeded_environments() for var in spec.variables if var.sensitive}


def state_outputs(state: Mapping[str, Any]) -> dict[str, Any]:
    """A state's root outputs as name -> value, for version 3 (0.11: the root module's) and 4 alike."""
    if state.get("version") == 3:
        root = next((m for m in state.get("modules") or [] if m.get("path") == ["root"]), {})
        outputs = root.get("outputs") or {}
    else:
        outputs = state.get("outputs") or {}
    return {name: (out or {}).get("value") for name, out in outputs.items()}


def read_back_with_pytfe(sandbox: Any, batch_dir: Any, manifest: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A second opinion on a finished batch, from HashiCorp's own Python SDK (`pytfe`), not the runbook's client.

    For every environment of the manifest: the workspace is unlocked; its current state, downloaded by
    pytfe, has the lineage and root outputs of the legacy state the batch backed up at step 3 (the backup
    whose sha256 step 3 recorded); its newest run planned no changes.

    Returns:
        One row per environment with those facts and ``agrees`` (all of them hold).

    Raises:
        ModuleNotFoundError: pytfe is not installed (`pip install '.[test]'` brings it).
    """
    from pytfe import TFEClient, TFEConfig

    from runbook_lib.audit import env_dirname

    rows = []
    config = TFEConfig(address=sandbox.tfe_address, token=sandbox.operator_token, ca_bundle=sandbox.ca_file,
                       max_retries=5)
    with TFEClient(config) as tfe:
        for environment, data in sorted((manifest.get("environments") or {}).items()):
            evidence = data.get("evidence") or {}
            org, _, name = ((evidence.get("workspace") or {}).get("name") or "/").partition("/")
            legacy_sha = (((evidence.get("state") or {}).get("legacy")) or {}).get("sha256")
            backup = next((b for b in (evidence.get("backups") or {}).get("files") or []
                           if b.get("sha256") == legacy_sha), None)
            # a backup's `file` is relative to its environment's folder of the batch
            legacy = (json.loads((Path(batch_dir) / env_dirname(environment) / backup["file"]).read_bytes())
                      if backup else {})
            ws = tfe.workspaces.read(name, organization=org)
            held = json.loads(tfe.state_versions.download(tfe.state_versions.read_current(ws.id).id))
            latest = next(iter(tfe.runs.list(ws.id)), None)
            row = {"environment": environment, "workspace": f"{org}/{name}", "unlocked": ws.locked is False,
                   "lineage": bool(legacy) and held.get("lineage") == legacy.get("lineage"),
                   "outputs": bool(legacy) and state_outputs(held) == state_outputs(legacy),
                   "latest_run": latest.id if latest else None,
                   "no_changes": latest is not None and latest.has_changes is False}
            row["agrees"] = all(row[k] for k in ("unlocked", "lineage", "outputs", "no_changes"))
            rows.append(row)
    return rows
