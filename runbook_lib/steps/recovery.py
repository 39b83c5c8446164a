"""The way back after a failed step 5: stop the run, lock the workspace, revert the commit; the operator re-links.

Re-linking the legacy environment's VCS is a UI action (the legacy host has no API for it), so the way back
ends with the operator's instructions: the repository, branch and working directory step 4 recorded, and where
to enter them.

`recovery_plan` shows it (reads only), `recover` takes it (apply mode, idempotent, recorded in the
ledger), and `recovery` is what the step 5 notebook calls after its verify (nothing when it passed).
The legacy environment is intact until step 6, so taking the way back loses nothing.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from runbook_lib import git
from runbook_lib.catalog import RECOVER
from runbook_lib.context import StepContext
from runbook_lib.errors import ConflictError, StepError
from runbook_lib.results import StepResult, plan_frame
from runbook_lib.steps.legacy_vcs import previous_link
from runbook_lib.steps.push_record import RUN_ID, push_record, set_aside
from runbook_lib.steps.runs import CANCELABLE_STATUSES, DISCARDABLE_STATUSES, locate_run, lock_holder
from runbook_lib.steps.workspaces import lock_reason

RELOCK_WAIT_S = 30.0


def recovery_plan(ctx: StepContext) -> pd.DataFrame:
    """The way back after a failed step 5, as a plan table (reads only).

    Rows: discard the run that waits to apply, re-lock the workspace, revert the migration commit, and the
    operator's re-link of the legacy environment's VCS in the legacy UI, as it was before step 4.
    """
    rows: list[dict[str, Any]] = []
    record = push_record(ctx)
    ws = ctx.tfe.find_workspace(ctx.row.new_org, ctx.row.workspace)
    if ws is not None and record is not None:
        run = locate_run(ctx.tfe, ws.id, record["commit"], record.get(RUN_ID))
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
    if record is not None and not record["adopted"]:
        rows.append({"object": "commit", "name": record["commit"][:12], "action": "update",
                     "detail": f"revert on {record['repo']} {record['branch']} and push (the workspace queues it "
                               f"behind its lock; the unlinked legacy environment does not run)"})
    else:
        rows.append({"object": "commit", "name": (record or {}).get("commit", "-")[:12], "action": "none",
                     "detail": "no migration commit of this runbook to revert" if record is None
                     else "adopted, not made by this runbook: revert it by hand if it must go"})
    link = previous_link(ctx)
    if link is None:
        rows.append({"object": "legacy vcs link", "name": ctx.row.legacy_slug, "action": "refuse",
                     "detail": "the link before step 4 is not known (no record, no mapping, no workspace link): "
                               "re-link by hand"})
    else:
        rows.append({"object": "legacy vcs link", "name": ctx.row.legacy_slug, "action": "update",
                     "detail": f"you re-link it in the legacy UI ({ctx.legacy_page('integrations')}): "
                               f"{_describe_link(link)}"})
    return plan_frame(rows)


def _describe_link(link: dict[str, Any]) -> str:
    return (f"repository {link['repo']}, branch {link.get('branch') or '(default)'}, path to the Terraform files "
            f"{link.get('working_directory') or '(root)'}")


def _revert(ctx: StepContext, record: dict[str, Any]) -> str:
    """Revert the migration commit on its branch and push; returns what happened."""
    scratch = Path(tempfile.mkdtemp(prefix="tfe-runbook-05-recover-"))
    try:
        url = git.repo_url(record["repo"], ctx.options.git_base_url)
        path = git.clone(url, scratch / "repo", record["branch"])
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
        return f"reverted by {git.push(path, record['branch'])[:12]}, pushed to {record['branch']}"
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
    revert the migration commit and push (before the operator re-links, so the legacy environment does not
    run the revert); then the table tells the operator to re-link the legacy environment's VCS in the legacy
    UI as it was before step 4. The push record is moved aside, so a later step 5 commits afresh. The
    outcome is recorded in the ledger.

    Returns:
        A table of what was done.

    Raises:
        StepError: in plan mode.
    """
    if not ctx.applying:
        raise StepError("recovery changes the servers: run it in apply mode (recovery_plan shows what it would do).")
    done = []
    record = push_record(ctx)
    ws = ctx.tfe.get_workspace(ctx.row.new_org, ctx.row.workspace)
    if record is not None:
        run = locate_run(ctx.tfe, ws.id, record["commit"], record.get(RUN_ID))
        comment = f"tfe-runbook: step 5 of {ctx.row.legacy_slug} failed; recovering"
        if run is not None and run.get("status") in DISCARDABLE_STATUSES:
            ctx.tfe.discard_run(run.id, comment)
            done.append({"object": "run", "name": run.id, "result": "discarded"})
        elif run is not None and run.get("status") in CANCELABLE_STATUSES:
            ctx.tfe.cancel_run(run.id, comment)
            done.append({"object": "run", "name": run.id, "result": "canceled"})
    if _relock(ctx, ws.id):
        done.append({"object": "workspace lock", "name": ws.id, "result": "locked"})
    if record is not None and not record["adopted"]:
        done.append({"object": "commit", "name": record["commit"][:12], "result": _revert(ctx, record)})
    link = previous_link(ctx)
    done.append({"object": "legacy vcs link", "name": ctx.row.legacy_slug,
                 "result": (f"yours to do: re-link it in the legacy UI ({ctx.legacy_page('integrations')}): "
                            f"{_describe_link(link)}; the legacy API can neither do it nor show it"
                            if link is not None else
                            "yours to do: re-link it by hand in the legacy UI; no record says what it was linked to")})
    if record is not None:
        set_aside(ctx, record["commit"])
    table = pd.DataFrame(done, columns=["object", "name", "result"])
    ctx.ledger.record(ctx.row.legacy_slug, ctx.step, ctx.mode, "passed", action=RECOVER,
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
