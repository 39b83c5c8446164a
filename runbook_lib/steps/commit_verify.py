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

Verify, from the servers' answers: the run belongs to the pushed commit; its plan has no changes (a
Terraform 0.11 workspace's plan log is parsed with `plans.parse_plan_text`, a 1.x workspace's JSON
plan with `plans.parse_plan_json`; the plan's own has-changes flag must agree); and the legacy
environment started no run after the push (no new run id, none created after the push, none for the
pushed commit). The evidence (run id, commit, plan counts) is what step 6 requires in the ledger.

When the plan shows changes, the step fails and the legacy environment stays as it is. `recovery_plan`
shows the way back and `recover` takes it: discard the waiting run (it must never apply), re-lock the
workspace, revert the commit (pushed: the workspace queues the revert behind its lock, and the still
unlinked legacy environment does not run), then re-link the legacy environment's VCS as it was.

Re-running apply adopts an earlier push (the audit trail's record, or a branch whose backend already
points at the workspace) instead of committing again.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator
from urllib.parse import urlsplit

import pandas as pd

from runbook_lib import git, hcl, terraform
from runbook_lib.context import StepContext
from runbook_lib.errors import ApiError, ConfigError, ConflictError, HclError, PlanError, StepError
from runbook_lib.evidence import CutOver, PlanCounts
from runbook_lib.jsonapi import Resource
from runbook_lib.plans import Plan, parse_plan_json, parse_plan_text
from runbook_lib.results import StepResult
from runbook_lib.steps import plan_frame, refusals
from runbook_lib.steps.legacy_vcs import previous_link
from runbook_lib.mapping import workspace_name_for
from runbook_lib.steps.workspaces import lock_reason
from runbook_lib.steps.runs import (CANCELABLE_STATUSES, DISCARDABLE_STATUSES, DONE_STATUSES, FAILED_STATUSES,
                                   find_run, lock_holder, run_commit, wait_for_run)

DEFAULTS = {"backend_target": "atlas", "commit_branch": "", "wait_timeout": 900, "git_base_url": "",
            "tfe_hostname": "", "poll_interval": 1.0, "poll_max_interval": 15.0}
TARGETS = ("atlas", "remote", "cloud")
PUSH_RECORD = "05_push.json"
PLAN_LINES_KEPT = 40  # the tail of terraform's plan log kept as evidence (resource lines and the summary)
#: How long recovery waits for a just-discarded or canceled run to give the workspace's lock back.
RELOCK_WAIT_S = 30.0


def _opt(ctx: StepContext, name: str) -> Any:
    return ctx.option(name, DEFAULTS)


def _check_options(ctx: StepContext) -> None:
    if _opt(ctx, "backend_target") not in TARGETS:
        raise ConfigError(f"backend_target must be one of {', '.join(TARGETS)}, not {_opt(ctx, 'backend_target')!r}.")
    try:
        if float(_opt(ctx, "wait_timeout")) <= 0:
            raise ValueError
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"wait_timeout must be a positive number of seconds, not {_opt(ctx, 'wait_timeout')!r}.") from exc


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


def repository(ctx: StepContext, ws: Resource | None = None, env: dict[str, Any] | None = None) -> Source | None:
    """The repository the migration commits to: the workspace's VCS link (step 2 copied it from the
    environment), else the legacy environment's link; None when neither is linked."""
    if ws is not None and (ws.get("vcs-repo") or {}).get("identifier"):
        repo = ws.get("vcs-repo")
        return Source(repo["identifier"], repo.get("branch") or "", ws.get("working-directory") or "")
    vcs = (env or {}).get("vcs") or {}
    if vcs.get("repo"):
        return Source(vcs["repo"], vcs.get("branch") or "", vcs.get("working_directory") or "")
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
    return _opt(ctx, "tfe_hostname") or urlsplit(ctx.settings.address("tfe")).netloc


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
        path = git.clone(git.repo_url(source.repo, _opt(ctx, "git_base_url")), scratch / "repo", source.branch)
        root = path / source.working_directory
        if not root.is_dir():
            raise StepError(f"the working directory {source.working_directory!r} is not in {source.repo}.")
        legacy_ref, new_ref = ctx.row.legacy_slug, ctx.row.workspace_slug
        target = _opt(ctx, "backend_target")
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

    Raises:
        StepError: nothing is linked to a repository; HclError: the rewrite is refused.
    """
    env = ctx.legacy.find_environment(ctx.row.legacy_org, ctx.row.legacy_env)
    ws = ctx.tfe.find_workspace(ctx.row.new_org, ctx.row.workspace)
    source = repository(ctx, ws, env)
    if source is None:
        raise StepError(f"neither {ctx.row.workspace_slug} nor {ctx.row.legacy_slug} is linked to a repository: "
                        f"there is no configuration to commit to.")
    try:
        with checkout(ctx, source) as co:
            return co.diff
    except HclError as exc:
        # The plan table shows the refusal too; here it replaces the diff instead of stopping the notebook.
        return DiffText(f"# no diff: the backend rewrite is refused: {exc}")


# --- plan ------------------------------------------------------------------------------------------------

def push_record(ctx: StepContext) -> dict[str, Any] | None:
    """The push this step made (or adopted) for this environment, from the audit trail, or None."""
    path = ctx.audit_dir / PUSH_RECORD
    return json.loads(path.read_text()) if path.is_file() else None


def _write_push_record(ctx: StepContext, record: dict[str, Any]) -> None:
    path = ctx.audit_dir / PUSH_RECORD
    path.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")


def _prerequisites(ctx: StepContext, ws: Resource | None, env: dict[str, Any] | None) -> list[dict[str, Any]]:
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
    problem = _target_problem(_opt(ctx, "backend_target"), ws.get("terraform-version") or "")
    if problem:
        rows.append({"object": "backend target", "name": _opt(ctx, "backend_target"), "action": "refuse",
                     "detail": problem})
    if env is not None and env.get("vcs"):
        rows.append({"object": "legacy vcs link", "name": ctx.row.legacy_slug, "action": "none",
                     "detail": f"still linked to {env['vcs'].get('repo')}: step 04 first, or the push would run "
                               f"there too (apply refuses until then)"})
    if env is not None and env.get("current_run"):
        rows.append({"object": "legacy run", "name": env["current_run"].get("id"), "action": "refuse",
                     "detail": f"a legacy run is in progress ({env['current_run'].get('status')}); wait for it"})
    if not (ws.get("vcs-repo") or {}).get("identifier"):
        rows.append({"object": "workspace vcs link", "name": ws.id, "action": "refuse",
                     "detail": "the workspace is linked to no repository, so a push cannot start its run"})
    return rows


def plan(ctx: StepContext) -> pd.DataFrame:
    """What apply would do: rewrite and commit the backend, push, unlock, wait for the run, check it."""
    _check_options(ctx)
    env = ctx.legacy.find_environment(ctx.row.legacy_org, ctx.row.legacy_env)
    ws = ctx.tfe.find_workspace(ctx.row.new_org, ctx.row.workspace)
    rows = _prerequisites(ctx, ws, env)
    source = repository(ctx, ws, env)
    if source is None:
        rows.append({"object": "repository", "name": "-", "action": "refuse",
                     "detail": "neither the workspace nor the legacy environment is linked to a repository"})
        return plan_frame(rows)
    record = push_record(ctx)
    try:
        with checkout(ctx, source) as co:
            branch = _opt(ctx, "commit_branch") or co.branch
            if record:
                rows.append({"object": "commit", "name": record["commit"][:12], "action": "adopt",
                             "detail": f"pushed to {record['branch']} at {record['pushed_at']} (audit trail)"})
            elif co.changed:
                rows.append({"object": "backend", "name": str(co.root.relative_to(co.path)) or ".", "action": "update",
                             "detail": co.message})
                rows.append({"object": "commit", "name": branch, "action": "create",
                             "detail": f"{commit_message(ctx)!r}, pushed to {source.repo} {branch}"})
            else:
                rows.append({"object": "commit", "name": branch, "action": "adopt",
                             "detail": f"{co.message} The branch head is taken as the migration commit."})
    except HclError as exc:
        rows.append({"object": "backend", "name": source.repo, "action": "refuse", "detail": str(exc)})
    if ws is not None:
        rows.append({"object": "workspace lock", "name": ws.id, "action": "update" if ws.get("locked") else "none",
                     "detail": "unlock, so the run the push queues starts" if ws.get("locked") else "not locked"})
    rows.append({"object": "run", "name": ctx.row.workspace_slug, "action": "create",
                 "detail": f"the push starts it; wait up to {_opt(ctx, 'wait_timeout')} s; PASS only when its plan has "
                           f"no changes and the legacy environment did not run"})
    return plan_frame(rows)


def commit_message(ctx: StepContext) -> str:
    """The migration commit's message (names the legacy environment and the workspace)."""
    return (f"Migrate {ctx.row.legacy_slug} to Terraform Enterprise workspace {ctx.row.workspace_slug}\n\n"
            f"tfe-runbook step 05_commit_and_verify: backend {_opt(ctx, 'backend_target')} -> "
            f"{ctx.row.workspace_slug}. The legacy environment's VCS link was removed in step 04.")


# --- apply -----------------------------------------------------------------------------------------------

def _legacy_run_ids(ctx: StepContext) -> list[str]:
    if ctx.legacy.find_environment(ctx.row.legacy_org, ctx.row.legacy_env) is None:
        return []
    return [run["id"] for run in ctx.legacy.list_runs(ctx.row.legacy_org, ctx.row.legacy_env)]


def _commit_and_push(ctx: StepContext, source: Source) -> dict[str, Any]:
    """Commit the rewrite and push it (or adopt the branch head that already has it); returns the record."""
    with checkout(ctx, source) as co:
        branch = _opt(ctx, "commit_branch") or co.branch
        record: dict[str, Any] = {"repo": source.repo, "branch": branch, "tracked_branch": co.branch,
                                  "working_directory": source.working_directory,
                                  "backend_target": _opt(ctx, "backend_target"), "remote_state": co.remote_state}
        if not co.changed:
            # Pushed by an earlier attempt whose record is gone (or by hand): the head is the migration commit.
            sha = git.head(co.path)
            record.update(commit=sha, adopted=True, legacy_runs_before=[], diff="",
                          pushed_at=git.run(["log", "-1", "--format=%cI", sha], co.path).strip())
            return record
        before = _legacy_run_ids(ctx)
        if branch != co.branch:
            git.run(["checkout", "--quiet", "-B", branch], co.path)
        sha = git.commit_all(co.path, commit_message(ctx))
        record.update(commit=sha, adopted=False, legacy_runs_before=before, diff=str(co.diff),
                      pushed_at=datetime.now(timezone.utc).isoformat(timespec="milliseconds"))
        git.push(co.path, branch)
        # The push starts the workspace's run: what was read of the new host is not the present any more. (The
        # legacy environment was unlinked in step 4; whether it ran anyway is read from its run list, never reused.)
        ctx.forget_reads("tfe")
        print(f"pushed {sha[:12]} to {source.repo} {branch}")
        return record


def apply(ctx: StepContext) -> pd.DataFrame:
    """Commit and push the backend change, unlock the workspace, wait for the run the push started.

    Returns:
        A table of what was done (commit, push, unlock, the run and its status).

    Raises:
        ConfigError: bad parameters.
        StepError: a refusal (nothing pushed), or the run did not finish within `wait_timeout` (run the
            step again to keep waiting: the push is adopted, not repeated).
        HclError: the rewrite is refused; nothing pushed.
    """
    _check_options(ctx)
    env = ctx.legacy.find_environment(ctx.row.legacy_org, ctx.row.legacy_env)
    ws = ctx.tfe.find_workspace(ctx.row.new_org, ctx.row.workspace)
    prereq = [dict(r, action="refuse") if r["action"] == "none" else r for r in _prerequisites(ctx, ws, env)]
    refused = refusals(plan_frame(prereq))
    if refused:
        raise StepError("step 5 refused, nothing pushed: " + "; ".join(refused))
    assert ws is not None
    source = repository(ctx, ws, env)
    assert source is not None
    done = []
    record = push_record(ctx)
    if record is None:
        record = _commit_and_push(ctx, source)
        _write_push_record(ctx, record)
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

    run = wait_for_run(ctx.tfe, ws.id, record["commit"], timeout=float(_opt(ctx, "wait_timeout")),
                       interval=float(_opt(ctx, "poll_interval")), max_interval=float(_opt(ctx, "poll_max_interval")),
                       progress=live_status())
    done.append({"object": "run", "name": run.id, "result": run.get("status")})
    return pd.DataFrame(done, columns=["object", "name", "result"])


# --- reading the plan ------------------------------------------------------------------------------------

def read_plan(ctx: StepContext, run: Resource, terraform_version: str) -> tuple[Plan, Resource, list[str] | None]:
    """The run's plan as a `Plan`: 0.11 workspaces from the plan log, 1.x from the JSON plan.

    Returns:
        (parsed plan, the plan resource, terraform's own plan lines when the log was read, else None).

    Raises:
        PlanError: no plan, an unreadable plan, or one whose has-changes flag disagrees with its content.
    """
    plan_id = run.rel("plan")
    if not plan_id:
        raise PlanError(f"run {run.id} has no plan.")
    plan_res = ctx.tfe.get_plan(plan_id)
    if terraform.generation(terraform_version) == 0:
        log = ctx.tfe.plan_log(plan_res)
        parsed = parse_plan_text(log)
        # terraform's own plan lines, kept as evidence (the log is already here: no extra request)
        lines = [line.rstrip() for line in re.sub(r"\x1b\[[0-9;]*m", "", log).splitlines() if line.strip()]
        lines = lines[-PLAN_LINES_KEPT:]
    else:
        lines = None
        doc = ctx.tfe.plan_json(plan_id)
        if doc is None:
            raise PlanError(f"plan {plan_id} has no JSON output yet (status {plan_res.get('status')!r}).")
        parsed = parse_plan_json(json.dumps(doc))
    flag = plan_res.get("has-changes")
    # Terraform 1.x counts root output changes as changes (the run then waits to save them), while the
    # plans model does not: the infrastructure is unchanged. Only that one disagreement is explained.
    output_only = bool(flag) and not parsed.has_changes and bool(parsed.output_changes)
    if flag is not None and bool(flag) != parsed.has_changes and not output_only:
        raise PlanError(f"plan {plan_id} says has-changes={flag} but its content shows "
                        f"{'changes' if parsed.has_changes else 'none'}; treat the plan as not proven.")
    return parsed, plan_res, lines


def _log_tail(ctx: StepContext, run: Resource) -> str:
    """The last error line of a run's plan log, for the FAIL line (the whole log is in the workspace)."""
    try:
        log = ctx.tfe.plan_log(ctx.tfe.get_plan(run.rel("plan"))) if run.rel("plan") else ""
    except ApiError as exc:
        return f"its plan log cannot be read: {exc}"
    lines = [line.strip() for line in log.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("Error")]
    return (errors or lines or ["no plan log"])[-1][:300]


def legacy_runs_after_push(ctx: StepContext, record: dict[str, Any]) -> list[dict[str, Any]]:
    """Legacy runs started by or after the push.

    For this step's own push, every run not in the list read just before it (whatever its timestamp: one
    that started in the same second as the push is not after it). For a push adopted from an earlier
    attempt there is no such list: runs of the pushed commit, or created at or after its commit time.
    """
    if ctx.legacy.find_environment(ctx.row.legacy_org, ctx.row.legacy_env) is None:
        return []  # deleted by step 6 after an earlier PASS: it can start nothing
    before = set(record.get("legacy_runs_before") or [])
    pushed_at = datetime.fromisoformat(record["pushed_at"].replace("Z", "+00:00"))
    found = []
    for run in ctx.legacy.list_runs(ctx.row.legacy_org, ctx.row.legacy_env):
        if record.get("adopted"):
            created = run.get("created_at")
            started = run.get("commit_sha") == record["commit"] or bool(
                created and datetime.fromisoformat(created.replace("Z", "+00:00")) >= pushed_at)
        else:
            started = run["id"] not in before
        if started:
            found.append({k: run.get(k) for k in ("id", "status", "commit_sha", "created_at")})
    return found


# --- verify ----------------------------------------------------------------------------------------------

def verify(ctx: StepContext) -> StepResult:
    """PASS only when the run of the pushed commit planned no changes and the legacy environment did not run."""
    record = push_record(ctx)
    if record is None:
        return StepResult(False, "nothing pushed yet for this environment (no 05_push.json in the audit trail); "
                                 "run the step in apply mode")
    ws = ctx.tfe.get_workspace(ctx.row.new_org, ctx.row.workspace)
    version = ws.get("terraform-version") or ""
    evidence: dict[str, Any] = {"workspace_id": ws.id, "commit": record["commit"], "branch": record["branch"],
                                "repo": record["repo"], "backend_target": record["backend_target"],
                                "pushed_at": record["pushed_at"], "terraform_version": version,
                                "still_reads_legacy": (record.get("remote_state") or {}).get("still_reads_legacy", [])}
    run = find_run(ctx.tfe, ws.id, record["commit"])
    if run is None:
        return StepResult(False, f"the workspace has no run of the pushed commit {record['commit'][:12]}", evidence)
    evidence.update(run_id=run.id, run_status=run.get("status"), run_commit=run_commit(ctx.tfe, run))
    legacy_runs = legacy_runs_after_push(ctx, record)
    evidence["legacy_runs_after_push"] = legacy_runs
    if run.get("status") not in DONE_STATUSES:
        return StepResult(False, f"run {run.id} is still {run.get('status')}: run the step again to keep waiting",
                          evidence)
    if run.get("status") in FAILED_STATUSES:
        what = FAILED_STATUSES[run.get("status")]
        detail = f" ({_log_tail(ctx, run)})" if run.get("status") == "errored" else ""
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
    if legacy_runs:
        return StepResult(False, f"the legacy environment started {len(legacy_runs)} run(s) after the push "
                                 f"({', '.join(r['id'] for r in legacy_runs)}): its VCS link was not disabled",
                          evidence, table=parsed.changes)
    outputs = ""
    if parsed.output_changes:
        outputs = (f"; only output values change ({', '.join(parsed.output_changes)}): the run waits in "
                   f"{run.get('status')}; apply it to save them (no infrastructure changes) or discard it")
    return StepResult(True, f"run {run.id} of commit {record['commit'][:12]} planned no changes ({parsed.summary}, "
                            f"{parsed.source} plan); the legacy environment did not run{outputs}", evidence,
                      table=parsed.changes)


# --- recovery --------------------------------------------------------------------------------------------

def recovery_plan(ctx: StepContext) -> pd.DataFrame:
    """The way back after a failed step 5, as a plan table (reads only).

    Rows: discard the run that waits to apply, re-lock the workspace, revert the migration commit,
    re-link the legacy environment's VCS as it was before step 4.
    """
    rows: list[dict[str, Any]] = []
    record = push_record(ctx)
    ws = ctx.tfe.find_workspace(ctx.row.new_org, ctx.row.workspace)
    if ws is not None and record is not None:
        run = find_run(ctx.tfe, ws.id, record["commit"])
        if run is not None and run.get("status") in DISCARDABLE_STATUSES:
            rows.append({"object": "run", "name": run.id, "action": "update",
                         "detail": f"discard ({run.get('status')}): it must never apply"})
        elif run is not None and run.get("status") in CANCELABLE_STATUSES:
            rows.append({"object": "run", "name": run.id, "action": "update",
                         "detail": f"cancel ({run.get('status')}): it is still working and must never apply"})
        else:
            rows.append({"object": "run", "name": run.id if run else "-", "action": "none",
                         "detail": f"nothing to discard ({run.get('status') if run else 'no run'})"})
    if ws is not None:
        holder = lock_holder(ws)
        ours = holder is not None and holder[0] != "runs"  # a run's lock goes when the run is stopped
        rows.append({"object": "workspace lock", "name": ws.id, "action": "none" if ours else "update",
                     "detail": "already locked" if ours else f"lock again: {lock_reason(ctx)}"})
    if record is not None and not record.get("adopted"):
        rows.append({"object": "commit", "name": record["commit"][:12], "action": "update",
                     "detail": f"revert on {record['repo']} {record['branch']} and push (the workspace queues it "
                               f"behind its lock; the unlinked legacy environment does not run)"})
    else:
        rows.append({"object": "commit", "name": (record or {}).get("commit", "-")[:12], "action": "none",
                     "detail": "no migration commit of this runbook to revert" if record is None
                     else "adopted, not made by this runbook: revert it by hand if it must go"})
    env = ctx.legacy.find_environment(ctx.row.legacy_org, ctx.row.legacy_env)
    link = previous_link(ctx)
    if env is None:
        rows.append({"object": "legacy vcs link", "name": ctx.row.legacy_slug, "action": "refuse",
                     "detail": "the legacy environment no longer exists"})
    elif env.get("vcs"):
        rows.append({"object": "legacy vcs link", "name": ctx.row.legacy_slug, "action": "none",
                     "detail": f"linked to {env['vcs'].get('repo')}"})
    elif link is None:
        rows.append({"object": "legacy vcs link", "name": ctx.row.legacy_slug, "action": "refuse",
                     "detail": "the link before step 4 is not known (no record, no workspace link): re-link by hand"})
    else:
        rows.append({"object": "legacy vcs link", "name": ctx.row.legacy_slug, "action": "update",
                     "detail": f"re-link {link['repo']} (branch {link.get('branch')}, working directory "
                               f"{link.get('working_directory') or '(root)'})"})
    return plan_frame(rows)


def _revert(ctx: StepContext, record: dict[str, Any]) -> str:
    """Revert the migration commit on its branch and push; returns what happened."""
    scratch = Path(tempfile.mkdtemp(prefix="tfe-runbook-05-recover-"))
    try:
        path = git.clone(git.repo_url(record["repo"], _opt(ctx, "git_base_url")), scratch / "repo", record["branch"])
        sha = record["commit"]
        try:
            git.run(["merge-base", "--is-ancestor", sha, "HEAD"], path)
        except git.GitError:
            return f"{sha[:12]} is not on {record['branch']}: nothing to revert"
        if git.run(["log", "--format=%H", f"--grep=This reverts commit {sha}", f"{sha}..HEAD"], path).strip():
            return f"{sha[:12]} is already reverted on {record['branch']}"
        git.run(["revert", "--no-edit", "--no-commit", sha], path)
        git.run(["commit", "--quiet", "-m",
                 f"Revert the migration of {ctx.row.legacy_slug} to {ctx.row.workspace_slug}\n\n"
                 f"tfe-runbook step 05 recovery: the workspace's plan showed changes.\n\nThis reverts commit {sha}."],
                path)
        git.push(path, record["branch"])
        return f"reverted by {git.head(path)[:12]}, pushed to {record['branch']}"
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _relock(ctx: StepContext, workspace_id: str, *, clock: Callable[[], float] = time.monotonic,
            sleep: Callable[[float], None] = time.sleep) -> bool:
    """Lock the workspace again unless this runbook's lock is still on it; True when it locked now.

    A run that was just discarded or canceled may hold the workspace's lock a moment longer (the API
    queues those actions): wait for it, up to `RELOCK_WAIT_S`, then say which run still holds it.
    """
    deadline = clock() + RELOCK_WAIT_S
    while True:
        holder = lock_holder(ctx.tfe.get_workspace_by_id(workspace_id, fresh=True))
        if holder is not None and holder[0] != "runs":
            return False
        if holder is None:
            try:
                ctx.tfe.lock_workspace(workspace_id, lock_reason(ctx))
                return True
            except ConflictError:
                pass  # taken meanwhile (a queued run started): look again
        if clock() >= deadline:
            raise StepError(f"workspace {workspace_id} is still locked by run {holder[1] if holder else '?'} after "
                            f"{RELOCK_WAIT_S:.0f} s; cancel or discard that run, then run the recovery again.")
        sleep(1.0)


def recover(ctx: StepContext) -> pd.DataFrame:
    """Take the way back after a failed step 5 (idempotent; see `recovery_plan`).

    In order: discard the workspace's waiting run of the migration commit; lock the workspace again;
    revert the migration commit and push (before re-linking, so the legacy environment does not run
    the revert); re-link the legacy environment's VCS as it was before step 4. The push record is
    moved aside, so a later step 5 commits afresh. The outcome is recorded in the ledger.

    Returns:
        A table of what was done.

    Raises:
        StepError: in plan mode, or the legacy link cannot be restored (nothing further changed).
    """
    if not ctx.applying:
        raise StepError("recovery changes the servers: run it in apply mode (recovery_plan shows what it would do).")
    done = []
    record = push_record(ctx)
    ws = ctx.tfe.get_workspace(ctx.row.new_org, ctx.row.workspace)
    if record is not None:
        run = find_run(ctx.tfe, ws.id, record["commit"])
        comment = f"tfe-runbook: step 5 of {ctx.row.legacy_slug} failed; recovering"
        if run is not None and run.get("status") in DISCARDABLE_STATUSES:
            ctx.tfe.discard_run(run.id, comment)
            done.append({"object": "run", "name": run.id, "result": "discarded"})
        elif run is not None and run.get("status") in CANCELABLE_STATUSES:
            ctx.tfe.cancel_run(run.id, comment)
            done.append({"object": "run", "name": run.id, "result": "canceled"})
    if _relock(ctx, ws.id):
        done.append({"object": "workspace lock", "name": ws.id, "result": "locked"})
    if record is not None and not record.get("adopted"):
        done.append({"object": "commit", "name": record["commit"][:12], "result": _revert(ctx, record)})
    env = ctx.legacy.get_environment(ctx.row.legacy_org, ctx.row.legacy_env)
    if not env.get("vcs"):
        link = previous_link(ctx)
        if link is None:
            raise StepError(f"the VCS link {ctx.row.legacy_slug} had before step 4 is not known; re-link it by hand "
                            f"(legacy UI: Environment settings > Integrations).")
        ctx.legacy.link_vcs(ctx.row.legacy_org, ctx.row.legacy_env, link["repo"], branch=link.get("branch") or "master",
                            working_directory=link.get("working_directory") or "")
        done.append({"object": "legacy vcs link", "name": ctx.row.legacy_slug, "result": f"re-linked {link['repo']}"})
    if record is not None:
        aside = ctx.audit_dir / f"05_push.reverted-{record['commit'][:12]}.json"
        os.replace(ctx.audit_dir / PUSH_RECORD, aside)
    table = pd.DataFrame(done, columns=["object", "name", "result"])
    ctx.ledger.record(ctx.row.legacy_slug, f"{ctx.step}/recover", ctx.mode, "passed",
                      evidence={"done": table.to_dict("records"), "commit": (record or {}).get("commit")})
    return table


def recovery(ctx: StepContext, result: StepResult, *, run: bool = False) -> pd.DataFrame | None:
    """For the notebook after verify: nothing when the step passed; else the recovery table, executed
    first when `run` is set (the `recover` parameter) and the step runs in apply mode.

    Returns:
        None (passed), the recovery plan, or what `recover` did.
    """
    if result.passed:
        return None
    if run and ctx.applying:
        print("recovering: the plan did not prove the migration, so the way back is taken now")
        return recover(ctx)
    print("The way back (recover = True runs it, in apply mode): the legacy environment is intact until then.")
    return recovery_plan(ctx)
