"""Step 5: commit the backend change, push, unlock, and prove the workspace plans no changes.

The seed: "Commit and push the changes to VCS. [...] The legacy environment will **not** trigger a new
run [...] The new workspace will trigger a new run [...] If you locked the workspace while performing
the migration, unlock it to enable runs. The plan logs should show **no changes**."

Apply, in a scratch checkout of the repository the workspace is linked to:

1. rewrite the root module's backend (`runbook_lib.hcl`) to the workspace, by `backend_target`:
   ``atlas`` (the seed's 3.d: `name` changes; Terraform 0.11 workspaces), ``remote`` (Terraform >=
   0.11.13) or ``cloud`` (Terraform >= 1.1). A root without a backend block (step 3's API path never
   needed one) first gets the legacy atlas block (seed 3.b), which is then rewritten, so the commit
   holds exactly the target block. `diff` shows the change before anything is pushed;
2. commit with a message naming the migration, on the tracked branch (`commit_branch = ""`) or on the
   branch the parameter names, and push; the commit, the push time and the legacy runs that existed
   before it are written to the audit trail (`05_push.json`);
3. unlock the workspace (step 2 locked it), so the run the push queued starts;
4. wait for that run with `wait_for_run`: the workspace's run whose configuration version's ingress
   attributes carry the pushed commit; polling backs off exponentially up to `wait_timeout` seconds,
   with a progress line per status change.

Verify, from the servers' answers: the run belongs to the pushed commit; its plan has no changes
(`runbook_lib.steps.run_plan`: a Terraform 0.11 workspace's plan log is parsed with `plans.parse_plan_text`, a 1.x workspace's JSON
plan with `plans.parse_plan_json`; the plan's own has-changes flag must agree); and the legacy
environment did not react to the push, which proves the operator's unlink of step 4: after the run has
finished (the wait window), the legacy host shows the same latest configuration version and the same state
(md5) as step 4's baseline. A still-linked environment ingresses a push as a new configuration version; a run
that applied changes the state. A legacy answer that could mean two things (a 404 now) fails the proof. The
evidence (run id, commit, plan counts) is what step 6 requires in the ledger.

When the plan shows changes, the step fails and the legacy environment stays as it is. The way back
(`runbook_lib.steps.recovery`, re-exported here): `recovery_plan` shows it and `recover` takes it:
discard the waiting run (it must never apply), re-lock the workspace, revert the commit (pushed: the
workspace queues the revert behind its lock, and the still unlinked legacy environment does not run),
then the operator re-links the legacy environment's VCS as it was, in the legacy UI.

Re-running apply adopts an earlier push (the audit trail's record, or a branch whose backend already
points at the workspace) instead of committing again.
"""

from __future__ import annotations

import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import quote, urlsplit

import pandas as pd

from runbook_lib import catalog, git, hcl, terraform
from runbook_lib.context import StepContext
from runbook_lib.errors import ConflictError, HclError, PlanError, StepError
from runbook_lib.evidence import CutOver, EvidenceError, LegacyBaseline, PlanCounts
from runbook_lib.legacy import NOT_FOUND
from runbook_lib.jsonapi import Resource
from runbook_lib.mapping import workspace_name_for
from runbook_lib.results import StepResult
from runbook_lib.steps import plan_frame, refusals
# The way back and the push record have their own modules; re-exported here, where the step 5 notebook
# and its tests find them (`commit_verify.recovery(...)`, `commit_verify.PUSH_RECORD`).
from runbook_lib.steps.legacy_vcs import recorded_baseline
from runbook_lib.steps.push_record import PUSH_RECORD, RUN_ID, push_record, write_push_record  # noqa: F401
from runbook_lib.steps.recovery import recover, recovery, recovery_plan  # noqa: F401
from runbook_lib.steps.run_plan import log_tail, read_plan
from runbook_lib.steps.runs import (DONE_STATUSES, FAILED_STATUSES, discard_queued_before_push, locate_run, lock_holder,
                                   run_commit, wait_for_run)

TARGETS = catalog.BACKEND_TARGETS
#: How long recovery waits for a just-discarded or canceled run to give the workspace's lock back.


def _target_problem(target: str, terraform_version: str) -> str | None:
    """Why `target` cannot work with the workspace's Terraform version, or None."""
    v = terraform.version_tuple(terraform_version)
    if target == "atlas" and terraform.generation(terraform_version) == 1:
        return (f"the workspace runs Terraform {terraform_version}, which has no atlas backend; set backend_target "
                f"to 'remote' or 'cloud' (and make the configuration valid for Terraform 1.x)")
    if target == "remote" and v < (0, 11, 13):
        return (f"the remote backend needs Terraform >= 0.11.13, the workspace runs {terraform_version}; use "
                f"backend_target 'atlas', or set the workspace's terraform version (step 2's terraform_version)")
    if target == "cloud" and v < (1, 1):
        return (f"the cloud block needs Terraform >= 1.1, the workspace runs {terraform_version}; use "
                f"backend_target 'atlas', or set the workspace's terraform version (step 2's terraform_version)")
    return None


# --- the repository and the rewrite ------------------------------------------------------------------------

@dataclass
class Source:
    """Where the configuration lives: repository identifier, tracked branch ("" = default), working dir."""

    repo: str
    branch: str
    working_directory: str


def repository(ctx: StepContext, ws: Resource | None = None) -> Source | None:
    """The repository the migration commits to: the workspace's VCS link (step 2 copied it from the mapping),
    else the mapping's; None when neither names one."""
    if ws is not None and (ws.get("vcs-repo") or {}).get("identifier"):
        repo = ws.get("vcs-repo")
        return Source(repo["identifier"], repo.get("branch") or "", ws.get("working-directory") or "")
    row = ctx.row
    if row.vcs_repo.strip() not in ("", "?"):
        branch = row.vcs_branch.strip() if row.vcs_branch.strip() != "?" else ""
        workdir = row.working_directory.strip() if row.working_directory.strip() != "?" else ""
        return Source(row.vcs_repo.strip(), branch, workdir)
    return None


class DiffText(str):
    """A unified diff that a notebook shows as a highlighted block."""

    def _repr_markdown_(self) -> str:
        return f"```diff\n{self}\n```" if self else "*(no change)*"


@dataclass
class Checkout:
    """A scratch clone with the backend rewrite applied (not committed).

    Attributes:
        path: the clone; root: the root module in it; branch: the branch checked out (tracked branch).
        message: what the rewrite did ("already points at ..." when nothing).
        changed: files were rewritten.
        diff: `git diff` of the rewrite (new files included).
        remote_state: atlas `terraform_remote_state` sources repointed to migrated workspaces, and the
            legacy environments the configuration still reads.
    """

    path: Path
    root: Path
    branch: str
    message: str
    changed: bool
    diff: DiffText = field(default_factory=lambda: DiffText(""))
    remote_state: dict[str, list[str]] = field(default_factory=dict)


def _hostname(ctx: StepContext) -> str:
    return ctx.options.tfe_hostname or urlsplit(ctx.settings.address("tfe")).netloc


@contextmanager
def checkout(ctx: StepContext, source: Source) -> Iterator[Checkout]:
    """Clone `source` into a scratch folder and apply the backend rewrite there (removed on exit).

    Yields:
        The Checkout.

    Raises:
        StepError: the working directory is not in the repository.
        HclError: the rewrite is refused (a backend pointing elsewhere, ...), with the fix named.
        GitError: the clone failed.
    """
    scratch = Path(tempfile.mkdtemp(prefix="tfe-runbook-05-"))
    try:
        path = git.clone(git.repo_url(source.repo, ctx.options.git_base_url), scratch / "repo", source.branch)
        root = path / source.working_directory
        if not root.is_dir():
            raise StepError(f"the working directory {source.working_directory!r} is not in {source.repo}.")
        legacy_ref, new_ref = ctx.row.legacy_slug, ctx.row.workspace_slug
        target = ctx.options.backend_target
        messages, backups = [], []
        if not len(hcl.find_backends(root)):
            # No backend in git (step 3's API path never needed one): add the legacy block first (seed 3.b),
            # so the one rewrite below decides what the commit holds.
            added = hcl.plan_add_legacy_backend(root, from_=legacy_ref)
            backups += hcl.apply_rewrite(added, backup=True).backups
            messages.append(added.message)
        rewrite = hcl.plan_rewrite(root, from_=legacy_ref, to=new_ref, target=target,
                                   hostname=None if target == "atlas" else _hostname(ctx))
        backups += hcl.apply_rewrite(rewrite, backup=True).backups
        messages.append(rewrite.message)
        repointed = migrated_remote_state_sources(ctx, root)
        for legacy_source, new_source in repointed:
            moved = hcl.plan_remote_state_rewrite(root, from_=legacy_source, to=new_source)
            backups += hcl.apply_rewrite(moved, backup=True).backups
            messages.append(moved.message)
        remaining = hcl.find_remote_state_refs(root)
        remote_state = {"repointed": [f"{a} -> {b}" for a, b in repointed],
                        "still_reads_legacy": sorted({n for n in (remaining["name"].dropna() if len(remaining) else [])
                                                      if n.partition("/")[0] == ctx.row.legacy_org})}
        for backup in backups:
            Path(backup).unlink()  # git is the backup here; a .bak must not be committed
        git.run(["add", "--intent-to-add", "--all"], path)
        diff = git.run(["diff", "--no-color"], path)
        yield Checkout(path, root, git.current_branch(path), " ".join(messages), bool(diff.strip()),
                       DiffText(diff.rstrip("\n")), remote_state)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def migrated_remote_state_sources(ctx: StepContext, root: Path) -> list[tuple[str, str]]:
    """`terraform_remote_state` sources of this root that read a legacy environment already migrated.

    Each legacy environment read through the `atlas` backend is mapped by the naming rule to a workspace
    of the same new organization; when that workspace holds a state, the source is repointed to it in
    the same commit, so this configuration keeps working once the legacy environment is deleted (step 6
    refuses to delete an environment that others still read). A source whose environment is not migrated
    yet is left alone and reported by `verify`.

    Returns:
        (legacy `<org>/<env>`, new `<org>/<workspace>`) pairs to rewrite.
    """
    refs = hcl.find_remote_state_refs(root)
    pairs = []
    for name in sorted(set(refs["name"].dropna())) if len(refs) else []:
        org, _, env = name.partition("/")
        if org != ctx.row.legacy_org or not env:
            continue
        workspace = workspace_name_for(env)
        ws = ctx.tfe.find_workspace(ctx.row.new_org, workspace)
        if ws is not None and ctx.tfe.state_version_of(ws) is not None:
            pairs.append((name, f"{ctx.row.new_org}/{workspace}"))
    return pairs


def diff(ctx: StepContext) -> DiffText:
    """The backend change step 5 commits, as a unified diff (empty when the branch already has it).

    No repository yet (the workspace not created, the mapping's `?`) or a refused rewrite: a comment saying so
    replaces the diff, and the plan table says what apply would do about it.
    """
    ws = ctx.tfe.find_workspace(ctx.row.new_org, ctx.row.workspace)
    source = repository(ctx, ws)
    if source is None:
        return DiffText(f"# no diff: neither {ctx.row.workspace_slug} nor the mapping's {ctx.row.legacy_slug} names a "
                        f"repository yet")
    try:
        with checkout(ctx, source) as co:
            return co.diff
    except HclError as exc:
        # The plan table shows the refusal too; here it replaces the diff instead of stopping the notebook.
        return DiffText(f"# no diff: the backend rewrite is refused: {exc}")


# --- plan ------------------------------------------------------------------------------------------------

def _prerequisites(ctx: StepContext, ws: Resource | None) -> list[dict[str, Any]]:
    """Rows for what earlier steps must have done; action "none" (waits) or "adopt" (done), or "refuse"."""
    rows = []
    if ws is None:
        rows.append({"object": "workspace", "name": ctx.row.workspace_slug, "action": "none",
                     "detail": "does not exist yet: steps 02-04 first (apply refuses until then)"})
        return rows
    current = ctx.tfe.state_version_of(ws)
    if current is None:
        rows.append({"object": "workspace", "name": ws.id, "action": "none",
                     "detail": "holds no state yet: step 03 first (apply refuses until then)"})
    else:
        rows.append({"object": "workspace", "name": ws.id, "action": "adopt",
                     "detail": f"holds the migrated state (serial {current.get('serial')}), Terraform "
                               f"{ws.get('terraform-version')}"})
    problem = _target_problem(ctx.options.backend_target, ws.get("terraform-version") or "")
    if problem:
        rows.append({"object": "backend target", "name": ctx.options.backend_target, "action": "refuse",
                     "detail": problem})
    try:
        base = recorded_baseline(ctx)
    except EvidenceError as exc:
        rows.append({"object": "legacy baseline", "name": ctx.row.legacy_slug, "action": "refuse", "detail": str(exc)})
    else:
        if base is None:
            rows.append({"object": "legacy vcs link", "name": ctx.row.legacy_slug, "action": "none",
                         "detail": "the operator's unlink (step 04) is not recorded: step 04 first, or the push would "
                                   "run there too (apply refuses until then)"})
        else:
            rows.append({"object": "legacy baseline", "name": ctx.row.legacy_slug, "action": "adopt",
                         "detail": f"step 04 at {base.taken_at}: configuration version "
                                   f"{base.configuration_version or 'none'}, state serial {base.state_serial}; "
                                   f"after the push both must be the same"})
    if not (ws.get("vcs-repo") or {}).get("identifier"):
        rows.append({"object": "workspace vcs link", "name": ws.id, "action": "refuse",
                     "detail": "the workspace is linked to no repository, so a push cannot start its run"})
    return rows


def plan(ctx: StepContext) -> pd.DataFrame:
    """What apply would do: rewrite and commit the backend, push, unlock, wait for the run, check it."""
    ws = ctx.tfe.find_workspace(ctx.row.new_org, ctx.row.workspace)
    rows = _prerequisites(ctx, ws)
    source = repository(ctx, ws)
    if source is None:
        if ws is None:  # step 2 links it (from the mapping, or the legacy host's configuration where it says '?')
            rows.append({"object": "repository", "name": "-", "action": "none",
                         "detail": "the workspace's VCS link names it once step 02 has run (apply refuses until then)"})
        else:
            rows.append({"object": "repository", "name": "-", "action": "refuse",
                         "detail": "neither the workspace nor the mapping names a repository"})
        return plan_frame(rows)
    record = push_record(ctx)
    try:
        with checkout(ctx, source) as co:
            branch = ctx.options.commit_branch or co.branch
            if record:
                rows.append({"object": "commit", "name": record["commit"][:12], "action": "adopt",
                             "detail": f"pushed to {record['branch']} at {record['pushed_at']} (audit trail)"})
            elif co.changed:
                where = co.root.relative_to(co.path).as_posix()
                rows.append({"object": "backend", "name": "repository root" if where == "." else f"{where}/",
                             "action": "update", "detail": co.message})
                subject = commit_message(ctx).splitlines()[0]
                rows.append({"object": "commit", "name": branch, "action": "create",
                             "detail": f"\u201c{subject}\u201d, pushed to {source.repo} {branch}"})
            else:
                rows.append({"object": "commit", "name": branch, "action": "adopt",
                             "detail": f"{co.message} The branch head is taken as the migration commit."})
    except HclError as exc:
        rows.append({"object": "backend", "name": source.repo, "action": "refuse", "detail": str(exc)})
    if ws is not None:
        rows.append({"object": "workspace lock", "name": ws.id, "action": "update" if ws.get("locked") else "none",
                     "detail": "unlock, so the run the push queues starts" if ws.get("locked") else "not locked"})
    rows.append({"object": "run", "name": ctx.row.workspace_slug, "action": "create",
                 "detail": f"the push starts it; apply waits up to {ctx.options.wait_timeout} s, and the step passes "
                           f"only if Terraform plans nothing to change and the legacy host shows no new configuration "
                           f"version and no state change"})
    return plan_frame(rows)


def commit_message(ctx: StepContext) -> str:
    """The migration commit's message (names the legacy environment and the workspace)."""
    return (f"Migrate {ctx.row.legacy_slug} to Terraform Enterprise workspace {ctx.row.workspace_slug}\n\n"
            f"tfe-runbook step {catalog.COMMIT_AND_VERIFY}: backend {ctx.options.backend_target} -> "
            f"{ctx.row.workspace_slug}. The legacy environment's VCS link was removed in step 04.")


# --- apply -----------------------------------------------------------------------------------------------

def _commit_and_push(ctx: StepContext, source: Source) -> dict[str, Any]:
    """Commit the rewrite and push it (or adopt the branch head that already has it); returns the record."""
    with checkout(ctx, source) as co:
        branch = ctx.options.commit_branch or co.branch
        record: dict[str, Any] = {"repo": source.repo, "branch": branch, "tracked_branch": co.branch,
                                  "working_directory": source.working_directory,
                                  "backend_target": ctx.options.backend_target, "remote_state": co.remote_state}
        base = recorded_baseline(ctx)
        record["legacy_baseline"] = base.to_evidence() if base else None
        if not co.changed:
            # Pushed by an earlier attempt whose record is gone (or by hand): the migration commit is the last
            # one that changed this working directory (in a monorepo, others push to the same branch after it).
            sha = git.run(["log", "-1", "--format=%H", "--", source.working_directory or "."], co.path).strip()
            record.update(commit=sha, adopted=True, diff="",
                          pushed_at=git.run(["log", "-1", "--format=%cI", sha], co.path).strip(),
                          author=git.run(["log", "-1", "--format=%an <%ae>", sha], co.path).strip())
            return record
        if branch != co.branch:
            git.run(["checkout", "--quiet", "-B", branch], co.path)
        git.commit_all(co.path, commit_message(ctx))
        pushed_at = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
        # the sha that landed: rebased when another environment of the repository pushed since the clone
        sha = git.push(co.path, branch)
        record.update(commit=sha, adopted=False, diff=str(co.diff), pushed_at=pushed_at,
                      author=git.run(["log", "-1", "--format=%an <%ae>", sha], co.path).strip())
        # The push starts the workspace's run: what was read of the new host is not the present any more. (The
        # legacy environment was unlinked in step 4; whether it reacted anyway is read afresh by verify.)
        ctx.forget_reads("tfe")
        print(f"pushed {sha[:12]} to {source.repo} {branch}")
        return record


def apply(ctx: StepContext) -> pd.DataFrame:
    """Commit and push the backend change, unlock the workspace, wait for the run the push started.

    Returns:
        A table of what was done (commit, push, unlock, the run and its status).

    Raises:
        StepError: a refusal (nothing pushed), or the run did not finish within `wait_timeout` (run the
            step again to keep waiting: the push is adopted, not repeated).
        HclError: the rewrite is refused; nothing pushed.
    """
    ws = ctx.tfe.find_workspace(ctx.row.new_org, ctx.row.workspace)
    prereq = [dict(r, action="refuse") if r["action"] == "none" else r for r in _prerequisites(ctx, ws)]
    refused = refusals(plan_frame(prereq))
    if refused:
        raise StepError("step 5 refused, nothing pushed: " + "; ".join(refused))
    assert ws is not None
    source = repository(ctx, ws)
    assert source is not None
    done = []
    record = push_record(ctx)
    if record is None:
        record = _commit_and_push(ctx, source)
        write_push_record(ctx, record)
        done.append({"object": "commit", "name": record["commit"][:12],
                     "result": ("adopted: the branch already points at the workspace" if record["adopted"]
                                else f"pushed to {record['repo']} {record['branch']}")})
    else:
        done.append({"object": "commit", "name": record["commit"][:12], "result": "adopted from the audit trail"})
    holder = lock_holder(ws)  # as read before the push (a push changes no lock)
    if holder is not None and holder[0] == "runs":
        done.append({"object": "workspace lock", "name": ws.id,
                     "result": f"held by run {holder[1]}, not by this runbook: the run releases it when it ends"})
    elif holder is not None:
        for run_id in discard_queued_before_push(ctx.tfe, ws.id, record["commit"]):
            done.append({"object": "queued run", "name": run_id, "result": "discarded (queued before the push)"})
        try:
            ctx.tfe.unlock_workspace(ws.id)
            done.append({"object": "workspace lock", "name": ws.id, "result": "unlocked"})
        except ConflictError as exc:
            fresh = lock_holder(ctx.tfe.get_workspace_by_id(ws.id, fresh=True))
            if fresh is not None and fresh[0] != "runs":
                raise StepError(f"workspace {ws.id} is locked by someone else ({exc}); the commit is pushed and its "
                                f"run waits: ask them to unlock, then run this step again.") from exc
            done.append({"object": "workspace lock", "name": ws.id,
                         "result": "already unlocked" if fresh is None else f"held by run {fresh[1]}"})
    from runbook_lib.display import live_status  # one status line updated in place in JupyterLab

    run = wait_for_run(ctx.tfe, ws.id, record["commit"], timeout=float(ctx.options.wait_timeout),
                       interval=float(ctx.options.poll_interval), max_interval=float(ctx.options.poll_max_interval),
                       progress=live_status())
    if record.get(RUN_ID) != run.id:
        write_push_record(ctx, {**record, RUN_ID: run.id})  # verify and the way back read the run by id
    done.append({"object": "run", "name": run.id, "result": run.get("status")})
    return pd.DataFrame(done, columns=["object", "name", "result"])


def legacy_reaction(ctx: StepContext, record: dict[str, Any]) -> tuple[list[str], dict[str, Any]]:
    """Whether the legacy host reacted to the push: what it shows now against step 4's baseline.

    Read afresh (never from the read memo) after the workspace's run has finished. A still-linked environment
    ingresses the push as a new configuration version, and a legacy run that applied changes the state.

    Returns:
        (what proves a reaction or leaves it unproven, one sentence each (empty: no reaction), the facts read).
    """
    if ctx.ledger.passed(ctx.row.legacy_slug, catalog.DELETE_LEGACY_ENVIRONMENT, "apply") is not None:
        # Deleted by step 6 after an earlier PASS of this step, proven there by positive signals: nothing runs.
        return [], {"deleted_by_step_6": True}
    base_doc = record.get("legacy_baseline")
    if not base_doc:
        return [f"the push record has no step 04 baseline of {ctx.row.legacy_slug} to compare with; run step 04 "
                f"(it records one), then this step again"], {}
    base = LegacyBaseline.from_evidence(base_doc, ctx.row.legacy_slug)
    read = ctx.legacy.read_state(ctx.row.legacy_org, ctx.row.legacy_env, fresh=True)
    cv = ctx.legacy.latest_configuration_version(ctx.row.legacy_org, ctx.row.legacy_env, fresh=True)
    version = (cv or {}).get("version")
    facts = {"baseline": base.to_evidence(), "configuration_version": version, "state": read.found,
             "state_serial": read.state.serial if read.state else None,
             "state_md5": read.state.md5 if read.state else None}
    problems = []
    if read.found == NOT_FOUND:
        problems.append(f"the legacy state answers 404 now (missing, or not visible to the token), so nothing proves "
                        f"the legacy environment did not run: check it in the legacy UI ({ctx.legacy_page('changes/runs')})")
    elif read.state is None:
        problems.append("the legacy state answers 204 (no state) now, unlike at step 04: check the environment in the "
                        "legacy UI")
    elif read.state.md5 != base.state_md5:
        problems.append(f"the legacy state changed after step 04 (serial {base.state_serial} -> {read.state.serial}): "
                        f"a legacy run applied")
    if version != base.configuration_version:
        if version is None:
            problems.append(f"the legacy configuration versions answer 404 now (version {base.configuration_version} "
                            f"at step 04), so nothing proves the push was not ingested there")
        else:
            problems.append(f"the legacy environment ingested a new configuration version after step 04 (version "
                            f"{base.configuration_version or 'none'} -> {version}): it is still linked to the "
                            f"repository; unlink it in the legacy UI ({ctx.legacy_page('integrations')})")
    return problems, facts


# --- verify ----------------------------------------------------------------------------------------------

def verify(ctx: StepContext) -> StepResult:
    """PASS only when the run of the pushed commit planned no changes and the legacy environment did not run."""
    try:
        record = push_record(ctx)
    except EvidenceError as exc:
        return StepResult(False, str(exc))
    if record is None:
        return StepResult(False, "nothing pushed yet for this environment (no 05_push.json in the audit trail); "
                                 "run the step in apply mode")
    ws = ctx.tfe.get_workspace(ctx.row.new_org, ctx.row.workspace)
    version = ws.get("terraform-version") or ""
    evidence: dict[str, Any] = {"workspace_id": ws.id, "commit": record["commit"], "branch": record["branch"],
                                "repo": record["repo"], "backend_target": record["backend_target"],
                                "pushed_at": record["pushed_at"], "terraform_version": version,
                                "commit_author": record.get("author"),  # who: the git author of the commit
                                "still_reads_legacy": record["remote_state"]["still_reads_legacy"]}
    run = locate_run(ctx.tfe, ws.id, record["commit"], record.get(RUN_ID))
    if run is None:
        return StepResult(False, f"the workspace has no run of the pushed commit {record['commit'][:12]}", evidence)
    evidence.update(run_id=run.id, run_status=run.get("status"), run_commit=run_commit(ctx.tfe, run))
    if run.get("status") not in DONE_STATUSES:
        return StepResult(False, f"run {run.id} is still {run.get('status')}: run the step again to keep waiting",
                          evidence)
    if run.get("status") in FAILED_STATUSES:
        what = FAILED_STATUSES[run.get("status")]
        detail = f" ({log_tail(ctx, run)})" if run.get("status") == "errored" else ""
        return StepResult(False, f"run {run.id} {what}{detail}, so its plan proves nothing; the legacy environment "
                                 f"is intact (see the way back, then run step 5 again)", evidence)
    try:
        parsed, plan_res, plan_lines = read_plan(ctx, run, version)
    except PlanError as exc:
        return StepResult(False, f"the plan of run {run.id} cannot be proven: {exc}", evidence)
    # What step 6 reads back before deleting: written through the same type it is read with.
    evidence.update(CutOver(run.id, record["commit"], parsed.has_changes,
                            PlanCounts(parsed.additions, parsed.changes_count, parsed.destructions),
                            tuple(evidence["still_reads_legacy"])).to_evidence())
    evidence.update(plan_id=plan_res.id, plan_source=parsed.source, output_changes=list(parsed.output_changes),
                    plan_lines=plan_lines)
    if evidence["run_commit"] != record["commit"]:
        return StepResult(False, f"run {run.id} plans commit {evidence['run_commit']}, not the pushed "
                                 f"{record['commit']}", evidence, table=parsed.changes)
    if parsed.has_changes:
        return StepResult(False, f"the plan of run {run.id} shows changes ({parsed.summary}); the legacy environment "
                                 f"is kept intact: take the recovery path below", evidence, table=parsed.pending)
    try:
        legacy_problems, evidence["legacy_after_push"] = legacy_reaction(ctx, record)
    except EvidenceError as exc:
        legacy_problems = [str(exc)]
    if legacy_problems:
        return StepResult(False, "the unlink of step 04 is not proven: " + "; ".join(legacy_problems), evidence,
                          table=parsed.changes)
    outputs = ""
    if parsed.output_changes:
        outputs = (f"; only output values change ({', '.join(parsed.output_changes)}): the run waits in "
                   f"{run.get('status')}; apply it to save them (no infrastructure changes) or discard it")
    evidence.update(_app_links(ctx, run.id))  # the run that proved it, on the host, for the auditor
    read = "its plan log" if parsed.source == "text" else "its JSON plan"
    return StepResult(True, f"run {run.id} of commit {record['commit'][:12]} planned no changes "
                            f"({parsed.summary.rstrip('.')}, read from {read}); the legacy host shows no new "
                            f"configuration version and no state change since step 04{outputs}", evidence,
                      table=parsed.changes)


def _app_links(ctx: StepContext, run_id: str) -> dict[str, str]:
    """The workspace's and the run's pages on the TFE host, for the auditor's summary: the paths the host's
    own run notifications link to (`run_url`, `<address>/app/<org>/workspaces/<name>/runs/<run-id>`,
    notification-configurations.mdx, "Run Notification Payload")."""
    workspace_url = (f"{ctx.settings.address('tfe')}/app/{quote(ctx.row.new_org, safe='')}/workspaces/"
                     f"{quote(ctx.row.workspace, safe='')}")
    return {"workspace_url": workspace_url, "run_url": f"{workspace_url}/runs/{quote(run_id, safe='')}"}


