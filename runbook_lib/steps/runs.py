"""Step 5's view of a workspace run: the documented statuses, who holds a lock, finding and awaiting a run.

Kept apart from `commit_verify` (the step itself) so the step reads as plan -> apply -> verify -> recover.
Facts from the API docs (run.mdx "Run States", "List Runs in a Workspace") and go-tfe `run.go`,
`workspace.go`.
"""

from __future__ import annotations

import time
from typing import Any, Callable

from runbook_lib.errors import ConflictError, StepError
from runbook_lib.jsonapi import Resource
from runbook_lib.tfe import FINAL_RUN_STATUSES

#: Run statuses at which the run waits for a person (auto-apply is off, a policy override, a run task's
#: decision, a saved plan): its plan is final (run.mdx "Run States").
WAITING_STATUSES = frozenset({"planned", "cost_estimated", "policy_checked", "policy_override",
                              "post_plan_completed", "post_plan_awaiting_decision", "planned_and_saved"})
DONE_STATUSES = FINAL_RUN_STATUSES | WAITING_STATUSES | frozenset({"policy_soft_failed"})
#: Final statuses that prove nothing about the plan: step 5 fails on them, naming what happened.
FAILED_STATUSES = {"errored": "errored", "canceled": "was canceled", "force_canceled": "was force-canceled",
                   "discarded": "was discarded", "policy_soft_failed": "failed a Sentinel policy (soft-mandatory)"}
#: Paused or still queued runs: discarded ("runs that are paused waiting for confirmation or priority. This
#: includes runs in the "pending," "needs confirmation," "policy checked," and "policy override" states":
#: run.mdx "Discard a Run").
DISCARDABLE_STATUSES = WAITING_STATUSES | frozenset({"pending"})
#: Runs working: recovery cancels them (run.mdx "Cancel a Run": a run "currently planning or applying").
CANCELABLE_STATUSES = frozenset({"fetching", "fetching_completed", "pre_plan_running", "pre_plan_completed",
                                 "queuing", "plan_queued", "planning", "cost_estimating", "policy_checking",
                                 "post_plan_running", "confirmed", "queuing_apply", "apply_queued",
                                 "pre_apply_running", "pre_apply_completed", "applying"})
#: The runs list has its own limit of 30 reads a minute per user (run.mdx "List Runs in a Workspace"), so
#: the run of a push is looked for as the workspace's current run first (one workspace read, no list
#: budget). A run queued behind another one is not current yet (run-states.mdx `pending`): only after
#: `LIST_AFTER` seconds without it does the wait read the runs list too, at most every `LIST_INTERVAL`
#: seconds. Once found, the run is read by id.
LIST_AFTER = 10.0
LIST_INTERVAL = 15.0
#: A poll's pause is at most this share of the time spent in the current status (never below `interval`).
LATE_FRACTION = 0.4


def lock_holder(ws: Resource) -> tuple[str, str] | None:
    """Who holds a workspace's lock: ``("runs" | "users" | "teams", id)``, or None when it is unlocked.

    `locked: true` alone does not make the lock ours: a run locks its workspace while it works, and
    ``locked-by`` names a run, a user or a team (go-tfe `workspace.go` LockedBy; workspaces.mdx).
    """
    if not ws.get("locked"):
        return None
    data = ((ws.raw.get("relationships") or {}).get("locked-by") or {}).get("data") or {}
    ident = data.get("id") or ws.rel("locked-by") or ""
    kind = data.get("type") or ("runs" if str(ident).startswith("run-") else "users")
    return kind, str(ident)


def run_commit(tfe: Any, run: Resource, cache: dict[str, str | None] | None = None) -> str | None:
    """The commit a run plans: its configuration version's ingress `commit-sha` (None for uploads)."""
    cv_id = run.rel("configuration-version")
    if not cv_id:
        return None
    if cache is not None and cv_id in cache:
        return cache[cv_id]
    ingress = tfe.ingress_attributes(cv_id)
    sha = ingress.get("commit-sha") if ingress is not None else None
    if cache is not None:
        cache[cv_id] = sha
    return sha


def find_run(tfe: Any, workspace_id: str, commit: str, cache: dict[str, str | None] | None = None,
             scan: int = 20) -> Resource | None:
    """The workspace's newest run of `commit` among its `scan` newest runs, or None (reads the runs list)."""
    for i, run in enumerate(tfe.list_runs(workspace_id)):
        if i >= scan:
            break
        if run_commit(tfe, run, cache) == commit:
            return run
    return None


def current_run_of(tfe: Any, workspace_id: str, commit: str) -> Resource | None:
    """The workspace's current run when it plans `commit`, else None (one workspace read, no list)."""
    run, sha = tfe.current_run(workspace_id)
    return run if run is not None and sha == commit else None


def current_run_or_clear(tfe: Any, workspace_id: str, commit: str, discarded: set[str],
                         progress: Callable[[str], None] = print) -> Resource | None:
    """The workspace's current run when it plans `commit`; else, when the current run is another commit's run
    paused for confirmation, discard it so the push's run can start (one workspace read per call).

    Linking a repository with `queue-all-runs` makes TFE ingest the branch head and queue a run at once
    (workspaces.mdx `queue-all-runs`); step 2 links a locked workspace, so that run waits behind the lock and
    goes first when step 5 unlocks. It plans the configuration before the backend change: if it has changes it
    waits for confirmation and holds the queue ahead of the push's run (run-states.mdx: one run at a time),
    and step 5 would wait for nothing. Such a run is discarded (run.mdx "Discard a Run": it can never apply);
    one still working is waited for (discard answers 409 while it plans); none is ever taken as the proof,
    which is only a run of the pushed commit. A run of the pushed commit itself is never touched.
    """
    run, sha = tfe.current_run(workspace_id)
    if run is None or sha == commit:
        return run
    if run.get("status") in DISCARDABLE_STATUSES and run.id not in discarded:
        discarded.add(run.id)
        try:
            tfe.discard_run(run.id, comment=f"tfe-runbook step 5: a run of {str(sha)[:12]} queued before the push "
                                            f"of {commit[:12]}; it held the queue ahead of the push's run")
            progress(f"discarded run {run.id} of commit {str(sha)[:12]} ({run.get('status')}): it was queued before "
                     f"the push and held the queue ahead of the push's run")
        except ConflictError:
            pass  # it moved on meanwhile (applied by someone, or already discarded): the next read shows it
    return None


def discard_queued_before_push(tfe: Any, workspace_id: str, commit: str,
                               progress: Callable[[str], None] = print) -> list[str]:
    """Discard the runs of other commits queued in the workspace while it is still locked, before step 5
    unlocks it; returns their ids (one runs-list read, one discard each).

    The run of the branch head that linking queued (`current_run_or_clear`) waits behind step 2's lock; left
    there it goes first after the unlock and holds a run slot of the host for a whole plan that proves
    nothing. Queued, it can be discarded (run.mdx "Discard a Run": "pending" runs). A run of the pushed
    commit is never touched.
    """
    discarded = []
    for run, sha in tfe.queued_runs(workspace_id):
        if sha == commit:
            continue
        try:
            tfe.discard_run(run.id, comment=f"tfe-runbook step 5: a run of {str(sha)[:12]} queued before the push "
                                            f"of {commit[:12]}; only the push's run proves the cut-over")
        except ConflictError:
            continue  # it started or ended meanwhile: the wait handles a run that holds the queue
        discarded.append(run.id)
        progress(f"discarded queued run {run.id} of commit {str(sha)[:12]}: it was queued before the push")
    return discarded


def locate_run(tfe: Any, workspace_id: str, commit: str, run_id: str | None = None) -> Resource | None:
    """The run of `commit`: by its recorded id, else the workspace's current run, else from the runs list.

    A recorded id whose run plans another commit (a record changed by hand) is not trusted: the run is
    looked for afresh. A recorded run that has ended gives way to a newer current run of the same commit
    (started again by hand after it failed): that one is what verify judges and the way back discards.
    """
    if run_id:
        run = tfe.get_run(run_id)
        if run_commit(tfe, run) == commit:
            if run.get("status") not in FINAL_RUN_STATUSES:
                return run
            newer = current_run_of(tfe, workspace_id, commit)
            return newer if newer is not None else run
    return current_run_of(tfe, workspace_id, commit) or find_run(tfe, workspace_id, commit)


def wait_for_run(tfe: Any, workspace_id: str, commit: str, *, timeout: float, interval: float = 1.0,
                 max_interval: float = 15.0, progress: Callable[[str], None] = print,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> Resource:
    """Wait until the workspace's run of `commit` exists and its plan is done.

    Polls with exponential backoff (x1.6 from `interval` up to `max_interval`; back to `interval` when
    the status changes), sleeping between polls (no busy loop), and prints a progress line per change.
    A pause is also never longer than `LATE_FRACTION` of the time the run has spent in its status, so
    the end of a plan is seen at most 0.4x its duration late, about 2.6 s for a 20 s plan with 9 polls
    (plain x1.6 backoff: 6.3 s with 6 polls; over the waits of a batch that is a run slot of the host left
    idle). A smaller share polls more without seeing the end sooner (0.25: 12 polls, 2.5 s).
    Until the run appears it reads the workspace's current run, and discards a run of another commit that
    waits for confirmation ahead of it (`current_run_or_clear`); after `LIST_AFTER` seconds also the runs
    list (at most every `LIST_INTERVAL` seconds: that list has a limit of its own); then it polls the run
    by id. It waits through every documented intermediate status (run.mdx) and returns at a final or
    paused one.

    Args:
        tfe: the TfeClient.
        workspace_id: ``ws-...``.
        commit: the pushed commit sha.
        timeout: seconds before giving up.
        interval, max_interval: first and longest pause between polls.
        progress: where progress lines go.
        clock, sleep: time sources (tests pass fakes).

    Returns:
        The run, in a status in `DONE_STATUSES` (final, or waiting for a person to apply).

    Raises:
        StepError: no run for the commit, or the run still not done, after `timeout` seconds.
    """
    start = clock()
    deadline = start + timeout
    cache: dict[str, str | None] = {}
    discarded: set[str] = set()
    pause, seen, run, seen_at = interval, None, None, start
    listed_at: float | None = None
    progress(f"waiting for the run of commit {commit[:12]} in {workspace_id} (up to {timeout:.0f} s)")
    while True:
        if run is not None:
            run = tfe.get_run(run.id)  # by id: the runs list has a budget of its own
        else:
            run = current_run_or_clear(tfe, workspace_id, commit, discarded, progress)
            now = clock()
            if run is None and now - start >= LIST_AFTER and (listed_at is None or now - listed_at >= LIST_INTERVAL):
                listed_at = now  # queued behind another run, perhaps: not current yet, but in the list
                run = find_run(tfe, workspace_id, commit, cache)
        status = run.get("status") if run is not None else "no run yet"
        if status != seen:
            progress(f"[{clock() - start:5.0f} s] {run.id if run is not None else workspace_id}: {status}")
            seen, pause, seen_at = status, interval, clock()
        if run is not None and status in DONE_STATUSES:
            return run
        now = clock()
        if now >= deadline:
            what = (f"run {run.id} is still {status}" if run is not None
                    else f"no run of commit {commit[:12]} appeared (check the workspace's VCS connection and trigger settings)")
            raise StepError(f"{what} after {timeout:.0f} s; run the step again to keep waiting "
                            f"(the push is adopted, not repeated), or raise wait_timeout.")
        sleep(min(pause, max(deadline - now, 0.05)))
        pause = min(pause * 1.6, max_interval, max(interval, LATE_FRACTION * (clock() - seen_at)))
