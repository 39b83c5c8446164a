"""Step 3: back up the legacy state, move it into the workspace, prove it arrived.

1. Backup: the legacy state's bytes go to the audit trail (`<env>/state/`, mode 0600) with serial,
   lineage, md5 and sha256 recorded beside them, before anything else changes.
2. Move, by the `migration_path` parameter:
   - ``api`` (default): lock held since step 2, create the state version with serial, lineage and md5,
     upload the bytes (verify downloads them and compares byte for byte): the workspace holds exactly the legacy bytes.
   - ``cli``: the seed's own procedure in a scratch checkout, with a real Terraform 0.11 (the bundled
     0.11.11, or the operator's `terraform_bin`): add the atlas block if missing (3.b), `terraform
     init` (3.c), change `name` to the workspace (3.d), `terraform init -force-copy` (3.e, the scripted
     "yes"). Terraform's output is kept in the audit trail; `ATLAS_TOKEN` reaches terraform through
     the environment only.
   - ``native``: the host copied the state itself when step 2 created the workspace with
     `migration-environment` (`runbook_lib.native`); this step backs the legacy state up and proves it,
     and refuses, uploading nothing, when the workspace does not hold it.

   Terraform 1.x as the mover (`cli_target = "remote"` or `"cloud"`) is refused on purpose: 1.x has no
   atlas backend, and when it writes a state into an empty workspace (`init` migration or `state push`,
   with a `remote` backend or a `cloud` block) it gives the state a new lineage (reproduced with
   Terraform 1.15.5 against the sandbox), which would break the lineage proof below and every later
   lineage check. Move the state with the `api` path instead; step 5 then switches the configuration
   to a `remote` backend or `cloud` block for Terraform 1.x.
3. Verify: the workspace's current state has the same lineage, a serial not lower, and the same
   resources (`runbook_lib.state.compare_states` is empty); on the API path the bytes are identical.

Refusals, with nothing changed: the workspace already holds a state of another lineage (or a newer
one it did not get from this environment), the legacy state moved between backup and upload (a legacy
run that applied meanwhile), or the legacy state answers 404 (missing, or not visible to the token).

Locks and runs in progress are shown only in the legacy UI (no documented endpoint); the upgrade guide's
3.a asks the operator to check them there. What the runbook can prove, it does: the state is read again
right before it is uploaded (and compared with the backup), step 4 records it once more, and step 5 proves
it did not change after the push.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from runbook_lib import catalog, git, hcl, native, terraform
from runbook_lib.audit import sha256_file
from runbook_lib.context import StepContext
from runbook_lib.errors import StepError
from runbook_lib.evidence import MigratedState
from runbook_lib.legacy import NOT_FOUND, LegacyState, not_visible
from runbook_lib.results import StepResult
from runbook_lib.state import DIFF_COLUMNS, TerraformState, compare_states
from runbook_lib.steps import plan_frame

PATHS = catalog.MIGRATION_PATHS


def _legacy_state(ctx: StepContext) -> tuple[LegacyState | None, dict[str, Any] | None]:
    """(the legacy state, None), or (None, a refusal row) when there is none or the host answers 404."""
    read = ctx.legacy.read_state(ctx.row.legacy_org, ctx.row.legacy_env)
    if read.found == NOT_FOUND:
        return None, {"object": "legacy state", "name": ctx.row.legacy_slug, "action": "refuse",
                      "detail": not_visible(ctx.row.legacy_slug, read.url, ctx.settings.legacy_token_var)}
    if read.state is None:
        return None, {"object": "legacy state", "name": ctx.row.legacy_slug, "action": "refuse",
                      "detail": "the legacy environment has no state: nothing to migrate"}
    return read.state, None


def _workspace(ctx: StepContext):
    ws = ctx.tfe.find_workspace(ctx.row.new_org, ctx.row.workspace)
    if ws is None:
        raise StepError(f"workspace {ctx.row.workspace_slug} does not exist; run step {catalog.CREATE_WORKSPACES} first.")
    return ws


def _workspace_state(ctx: StepContext):
    ws = _workspace(ctx)
    return ws, ctx.tfe.state_version_of(ws)


def _decide(legacy: TerraformState | _Checked, held) -> tuple[str, str]:
    """What to do given the legacy state and what the workspace holds: (action, detail).

    ``held`` is `runbook_lib.tfe.HeldState` (identity read from the downloaded bytes; a state-version
    answer has no lineage or md5) or None. Another lineage is refused whatever the serials are.
    """
    if held is None:
        return "create", f"upload serial {legacy.serial}, lineage {legacy.lineage}, md5 {legacy.md5}"
    lineage, serial, md5 = held.lineage, held.serial, held.md5
    if lineage != legacy.lineage:
        return "refuse", (f"the workspace already holds a state of another lineage ({lineage}, serial {serial}); "
                          f"map this environment to another workspace or clear that one by hand")
    if serial == legacy.serial and md5 == legacy.md5:
        return "adopt", f"the workspace already holds exactly this state (serial {serial})"
    if serial >= legacy.serial:
        return "adopt", (f"the workspace holds this lineage at serial {serial} (legacy {legacy.serial}): migrated "
                         f"earlier; verification compares the resources")
    return "create", f"upload serial {legacy.serial} over the workspace's serial {serial} (same lineage)"


def _cli_precondition(ctx: StepContext, ws) -> dict[str, Any] | None:
    """The CLI path writes with Terraform 0.11's atlas backend to the legacy address under the new name, so
    the legacy host must also serve the new workspace's state (`/api/v1/terraform/state/<org>/<workspace>`):
    a refusal row when it does not, None when it does (or when the path is not `cli`)."""
    if ctx.options.migration_path != "cli":
        return None
    if ws is None:
        return {"object": "cli path", "name": ctx.row.workspace_slug, "action": "none",
                "detail": "checked once step 02 has created the workspace: the legacy host must serve its state"}
    served, why = ctx.legacy.serves_state_of(ctx.row.new_org, ctx.row.workspace)
    if served:
        return {"object": "cli path", "name": ctx.row.workspace_slug, "action": "none",
                "detail": "the legacy host serves the workspace's state: terraform 0.11 can write it there"}
    return {"object": "cli path", "name": ctx.row.workspace_slug, "action": "refuse",
            "detail": f"the legacy host does not serve workspace {ctx.row.workspace_slug}'s state ({why}), so "
                      f"terraform 0.11's atlas backend cannot write it; use migration_path = 'api' (the "
                      f"/api/v2 state-versions API of the new host)"}


def plan(ctx: StepContext) -> pd.DataFrame:
    """What apply would do: back up, then create a state version (or adopt, or refuse)."""
    rows: list[dict[str, Any]] = [{"object": "legacy locks and runs", "name": ctx.row.legacy_slug, "action": "none",
                                   "detail": "shown only in the legacy UI (guide step 3.a: no run in progress, "
                                             f"unlocked or locked by you): {ctx.legacy_page('changes/runs')}; the "
                                             "state is read again before the upload and must not have moved"}]
    state, refused = _legacy_state(ctx)
    if refused:
        return plan_frame(rows + [refused])
    legacy = TerraformState.from_bytes(state.data)
    rows.append({"object": "backup", "name": ctx.row.legacy_slug, "action": "create",
                 "detail": f"{legacy.size} bytes, serial {legacy.serial}, sha256 {legacy.sha256[:16]}..."})
    ws = ctx.tfe.find_workspace(ctx.row.new_org, ctx.row.workspace)
    if ws is None:
        # Plan mode may run before step 2 has created the workspace: show what would happen after it.
        rows.append({"object": "workspace", "name": ctx.row.workspace_slug, "action": "none",
                     "detail": f"does not exist yet: step {catalog.CREATE_WORKSPACES} creates it, locked "
                               "(apply refuses until then)"})
        rows.append({"object": "state version", "name": ctx.row.workspace_slug, "action": "create",
                     "detail": f"upload serial {legacy.serial} via the {ctx.options.migration_path} path "
                               f"once the workspace exists"})
        cli = _cli_precondition(ctx, None)
        return plan_frame(rows + ([cli] if cli else []))
    action, detail = _decide(legacy, ctx.tfe.held_state(ws))
    if action == "create" and ctx.options.migration_path == "native":
        action, detail = "refuse", native.missing_state(ctx)
    rows.append({"object": "state version", "name": ctx.row.workspace_slug, "action": action,
                 "detail": f"{detail} via the {ctx.options.migration_path} path"})
    cli = _cli_precondition(ctx, ws) if action == "create" else None
    if cli:
        rows.append(cli)
    if not ws.get("locked") and action == "create":
        rows.append({"object": "workspace lock", "name": ws.id, "action": "create",
                     "detail": "not locked (step 2 locks it): lock before uploading"})
    return plan_frame(rows)


@dataclass(frozen=True)
class _Checked:
    """What step 3 needs to know of a state after one full parse proved it whole (the parse itself is dropped)."""

    serial: int
    lineage: str
    md5: str
    sha256: str
    size: int


def _checked(state: LegacyState) -> _Checked:
    """Parse the legacy state once, fully, so a truncated or malformed one is refused before anything is written.

    Only the identity is kept: a big state's parse (several times its size) is released on return.

    Raises:
        StateError: not a valid version 3/4 state.
    """
    parsed = TerraformState.from_bytes(state.data)
    return _Checked(parsed.serial, parsed.lineage, parsed.md5, parsed.sha256, parsed.size)


def backup(ctx: StepContext, state: LegacyState, label: str = "backup",
           checked: _Checked | None = None) -> dict[str, Any]:
    """Write the legacy state's bytes into the audit trail (0600) with a JSON record beside them.

    Args:
        checked: the state's identity when the caller has just parsed it (else it is parsed here).

    Returns:
        The record: file, size, serial, lineage, md5, sha256, taken_at.
    """
    parsed = checked or _checked(state)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    target = ctx.state_dir / f"{label}-serial{parsed.serial}-{parsed.md5[:12]}.tfstate"
    if not target.exists():
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(state.data)
    os.chmod(target, 0o600)
    if sha256_file(target) != parsed.sha256:
        raise StepError(f"the backup {target} does not match the downloaded state; free disk space and run again.")
    record = {"file": str(target.relative_to(ctx.audit_dir.parent)), "size": parsed.size, "serial": parsed.serial,
              "lineage": parsed.lineage, "md5": parsed.md5, "sha256": parsed.sha256, "taken_at": stamp}
    sidecar = target.with_suffix(".json")
    sidecar.write_text(json.dumps(record, indent=2) + "\n")
    os.chmod(sidecar, 0o600)
    print(f"backed up {ctx.row.legacy_slug}: serial {parsed.serial}, lineage {parsed.lineage}, "
          f"sha256 {parsed.sha256} -> {target}")
    return record


def apply(ctx: StepContext) -> pd.DataFrame:
    """Back up the legacy state, then move it by the configured path.

    Raises:
        StepError: a refusal (nothing uploaded), or the legacy state changed since the backup.
    """
    state, refused = _legacy_state(ctx)
    if refused:
        raise StepError(f"step 3 refused, nothing changed: {refused['detail']}.")
    assert state is not None
    legacy = _checked(state)
    record = backup(ctx, state, checked=legacy)
    ws = _workspace(ctx)
    action, detail = _decide(legacy, ctx.tfe.held_state(ws))
    if action == "refuse":
        raise StepError(f"step 3 refused, nothing changed: {detail}.")
    result = {"backup": record["file"], "serial": legacy.serial, "lineage": legacy.lineage, "action": action}
    if action == "adopt":
        return pd.DataFrame([{**result, "detail": detail}])
    if ctx.options.migration_path == "native":  # the host's import of step 2 should have copied it
        raise StepError(native.missing_state(ctx))
    cli = _cli_precondition(ctx, ws)
    if cli and cli["action"] == "refuse":
        raise StepError(f"step 3 refused, nothing uploaded: {cli['detail']}.")
    if ctx.options.migration_path == "api":
        result.update(_move_by_api(ctx, ws, state))
    else:
        result.update(_move_by_cli(ctx, state))
    return pd.DataFrame([result])


def _recheck_legacy(ctx: StepContext, backed_up: LegacyState) -> None:
    """Refuse when the legacy state moved since the backup (someone applied in between): read now, not reused."""
    read = ctx.legacy.read_state(ctx.row.legacy_org, ctx.row.legacy_env, fresh=True)
    again = read.state
    if again is None or again.md5 != backed_up.md5 or again.serial != backed_up.serial:
        moved = (f"answers {read.found} (missing, or not visible to the token)" if again is None
                 else f"moved to serial {again.serial} (md5 {again.md5})")
        raise StepError(f"the legacy state changed between backup (serial {backed_up.serial}, md5 {backed_up.md5}) "
                        f"and upload: it {moved}; nothing was uploaded, run the step again.")


def _move_by_api(ctx: StepContext, ws, state: LegacyState) -> dict[str, Any]:
    if not ws.get("locked"):
        ws = ctx.tfe.lock_workspace(ws.id, f"tfe-runbook: migrating {ctx.row.legacy_slug}")
    _recheck_legacy(ctx, state)
    # Read back until the host has finalized it (bounded, with progress): verify and step 5's unlock need
    # a finalized version (state-versions.mdx "State Version Status").
    sv = ctx.tfe.push_state(ws.id, state.data, read_back=True)
    if sv.get("serial") not in (None, state.serial):
        raise StepError(f"state version {sv.id} reports serial {sv.get('serial')} after the upload, not "
                        f"{state.serial}; do not continue, compare the backup with the workspace's state by hand.")
    # `verify` downloads it and compares byte for byte (once, not here and there).
    return {"state_version": sv.id, "detail": "uploaded and finalized; verify downloads it and compares byte "
                                              "for byte"}


def _terraform_for(ctx: StepContext) -> str:
    return ctx.options.terraform_bin or ctx.settings.terraform_bin or terraform.terraform_011()


def _checkout(ctx: StepContext, scratch: Path) -> Path:
    """Clone the configuration for the CLI path: the repository, branch and working directory step 2 gave the
    workspace (from the mapping and the legacy configuration version; the legacy API shows no VCS link)."""
    ws = _workspace(ctx)
    repo = ws.get("vcs-repo") or {}
    if not repo.get("identifier"):
        raise StepError(f"workspace {ctx.row.workspace_slug} is linked to no repository, so the CLI path has no "
                        f"configuration to work in; use migration_path = 'api'.")
    workdir = (ws.get("working-directory") or "").strip("/")
    checkout = git.clone(git.repo_url(repo["identifier"], ctx.options.git_base_url), scratch / "repo",
                         repo.get("branch") or "")
    root = checkout / workdir
    if not root.is_dir():
        raise StepError(f"the working directory {workdir!r} is not in {repo['identifier']}.")
    return root


def _log(ctx: StepContext, name: str, result: terraform.TerraformResult) -> None:
    path = ctx.audit_dir / "03_terraform.log"
    with path.open("a", encoding="utf-8") as handle:
        handle.write(f"$ terraform {' '.join(result.args)}   # {name}, exit {result.returncode}\n{result.output}\n")


def _move_by_cli(ctx: StepContext, state: LegacyState) -> dict[str, Any]:
    binary = _terraform_for(ctx)
    scratch = Path(tempfile.mkdtemp(prefix="tfe-runbook-03-"))
    try:
        root = _checkout(ctx, scratch)
        env = {"ATLAS_TOKEN": ctx.settings.token("legacy"), "ATLAS_ADDRESS": ctx.settings.address("legacy")}
        if ctx.settings.ca_bundle:
            env["ATLAS_CAFILE"] = ctx.settings.ca_bundle
        _cli_atlas(ctx, binary, root, env, state)
    finally:
        ctx.forget_reads()  # terraform wrote to the servers behind the clients' backs
        shutil.rmtree(scratch, ignore_errors=True)
    return {"detail": "terraform init -force-copy migrated the state (atlas backend)", "terraform": binary}


def _init_args(ctx: StepContext, binary: str, *extra: str) -> list[str]:
    args = ["init", "-input=false", *extra]
    plugin_dir = ctx.options.plugin_dir
    if plugin_dir:
        args.append(f"-plugin-dir={plugin_dir}")
    return args


def _cli_atlas(ctx: StepContext, binary: str, root: Path, env: dict[str, str], state: LegacyState) -> None:
    legacy_ref, new_ref = ctx.row.legacy_slug, ctx.row.workspace_slug
    backends = hcl.find_backends(root)
    if not len(backends):
        hcl.apply_rewrite(hcl.plan_add_legacy_backend(root, from_=legacy_ref), backup=True)  # 3.b; backups land in the scratch copy
    _log(ctx, "3.c", terraform.run(binary, _init_args(ctx, binary), cwd=root, env=env))
    _recheck_legacy(ctx, state)
    hcl.apply_rewrite(hcl.plan_rewrite(root, from_=legacy_ref, to=new_ref, target="atlas"), backup=True)  # 3.d
    _log(ctx, "3.e", terraform.run(binary, _init_args(ctx, binary, "-force-copy"), cwd=root, env=env))


def verify(ctx: StepContext) -> StepResult:
    """The workspace's current state has the legacy lineage, a serial not lower, the same resources.

    Identical bytes are parsed once (one state in memory, not two: a 50 MB state stays under 4x its
    size); different bytes (the CLI path re-serializes) are parsed both and compared resource by resource.
    """
    state, refused = _legacy_state(ctx)
    if refused:
        return StepResult(False, f"cannot compare: {refused['detail']}")
    assert state is not None
    ws, current = _workspace_state(ctx)
    if current is None:
        return StepResult(False, f"workspace {ctx.row.workspace_slug} ({ws.id}) has no state")
    stored = ctx.tfe.download_state(current)
    identical = stored == state.data
    if identical:
        del stored  # the same bytes: keep one copy
        legacy = migrated = TerraformState.from_bytes(state.data)
        differences = pd.DataFrame(columns=DIFF_COLUMNS)  # identical bytes: nothing can differ
    else:
        legacy = TerraformState.from_bytes(state.data)
        migrated = TerraformState.from_bytes(stored)
        differences = compare_states(legacy, migrated)
    evidence = {"workspace_id": ws.id, "state_version": current.id, "lineage": migrated.lineage,
                "legacy_serial": legacy.serial, "workspace_serial": migrated.serial,
                **MigratedState(legacy.sha256).to_evidence(), "workspace_sha256": migrated.sha256,
                "identical_bytes": identical, "resources": legacy.resource_count,
                "migration_path": ctx.options.migration_path}
    if migrated.lineage != legacy.lineage:
        return StepResult(False, f"lineage differs: workspace {migrated.lineage}, legacy {legacy.lineage}", evidence)
    if migrated.serial < legacy.serial:
        return StepResult(False, f"the workspace's serial {migrated.serial} is lower than legacy {legacy.serial}",
                          evidence)
    if len(differences):
        return StepResult(False, f"{len(differences)} resource difference(s) between legacy and workspace state",
                          evidence, table=differences)
    if ctx.options.migration_path == "api" and migrated.serial == legacy.serial and not identical:
        return StepResult(False, "same serial but different bytes on the API path", evidence)
    how = "byte for byte" if identical else "same lineage and resources"
    return StepResult(True, f"workspace {ctx.row.workspace_slug} ({ws.id}) holds the legacy state ({how}, serial "
                            f"{migrated.serial})",
                      evidence, table=differences)
